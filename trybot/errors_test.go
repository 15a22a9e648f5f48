package trybot

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestServerErrorsHideCauses checks that 5xx answers of the trybot's API
// and App webhook carry a request ID, not the cause (database errors,
// file paths), and that the cause is logged under that ID.
func TestServerErrorsHideCauses(t *testing.T) {
	tb := newIdle(t)
	log, hook := logtest.NewNullLogger()
	tb.log = log
	h := tb.Handler()
	// A closed store makes every query fail.
	tb.store.Close()
	rerun := []byte(`{"action":"rerequested","check_run":{"name":"tryd/b","head_sha":"0123456789012345678901234567890123456789"},"repository":{"full_name":"o/rgh0"},"sender":{"login":"m"}}`)
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"list runs", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/api/runs", nil) }, http.StatusInternalServerError},
		{"one run", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/api/runs/7", nil) }, http.StatusInternalServerError},
		{"app webhook", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/github-app-webhook", bytes.NewReader(rerun))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-GitHub-Event", "check_run")
			r.Header.Set("X-GitHub-Delivery", "d-1")
			r.Header.Set("X-Hub-Signature-256", sign(rerun, "s3cret"))
			return r
		}, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hook.Reset()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.req())
			rid := w.Header().Get("X-Request-Id")
			body := w.Body.String()
			if w.Code != tc.want || rid == "" || !strings.Contains(body, rid) {
				t.Fatalf("%d %q (X-Request-Id %q), want %d naming the request ID", w.Code, body, rid, tc.want)
			}
			for _, leak := range []string{"sql", "database", tb.opts.Dir} {
				if strings.Contains(body, leak) {
					t.Errorf("the answer shows %q: %s", leak, body)
				}
			}
			logged := false
			for _, e := range hook.AllEntries() {
				if e.Data["request_id"] == rid && e.Data["error"] != nil {
					logged = true
				}
			}
			if !logged {
				t.Errorf("no log entry with the cause under request ID %s", rid)
			}
		})
	}
}
