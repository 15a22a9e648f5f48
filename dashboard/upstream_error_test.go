package dashboard_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/dashboard"
)

// TestUpstreamErrorsHideCauses checks that when the coordinator cannot be
// reached, pages answer 502 with a request ID, not the error (which
// names internal hosts), and that the cause is logged under that ID.
func TestUpstreamErrorsHideCauses(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	cc, err := api.NewClient(deadURL, "client-token-0123456789", nil)
	if err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	d, err := dashboard.New(dashboard.Options{Coordinator: cc, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, d.Handler(), "dashboard")
	host := strings.TrimPrefix(deadURL, "http://")
	for _, path := range []string{"/builds/1?format=json", "/builds/1", "/workers?format=json"} {
		t.Run(path, func(t *testing.T) {
			hook.Reset()
			resp, err := http.Get(url + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body strings.Builder
			var v struct {
				Status int    `json:"status"`
				Error  string `json:"error"`
			}
			if strings.Contains(path, "format=json") {
				if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
					t.Fatal(err)
				}
				body.WriteString(v.Error)
			} else {
				b := make([]byte, 64<<10)
				n, _ := resp.Body.Read(b)
				body.Write(b[:n])
			}
			rid := resp.Header.Get("X-Request-Id")
			if resp.StatusCode != http.StatusBadGateway || rid == "" || !strings.Contains(body.String(), rid) {
				t.Fatalf("%d %q (X-Request-Id %q), want 502 naming the request ID", resp.StatusCode, body.String(), rid)
			}
			for _, leak := range []string{host, "connection refused", "dial"} {
				if strings.Contains(body.String(), leak) {
					t.Errorf("the page shows %q: %s", leak, body.String())
				}
			}
			logged := false
			for _, e := range hook.AllEntries() {
				if e.Data["request_id"] == rid {
					err, _ := e.Data[logrus.ErrorKey].(error)
					logged = err != nil && strings.Contains(err.Error(), host)
				}
			}
			if !logged {
				t.Errorf("the cause was not logged under request ID %s", rid)
			}
		})
	}
}
