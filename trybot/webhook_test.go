package trybot

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
)

// newIdle returns a Trybot that is not running, with a GitHub server
// whose webhook secret is "s3cret".
func newIdle(t testing.TB) *Trybot {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cc, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	gm, _ := gmclient.New("http://127.0.0.1:1", nil)
	tb, err := New(context.Background(), Options{
		Config: &config.Config{
			GitHub:   []config.GitHubServer{{Name: "gh", APIURL: "http://127.0.0.1:1/api/v3/", WebhookSecret: config.FileSecret(secret)}},
			Repos:    []config.Repo{{Name: "r", GitHub: "gh", Slug: "o/r"}},
			Builders: []config.Builder{{Name: "b", Planner: "go"}},
		},
		LogsURL: "http://127.0.0.1:1/logs", Coordinator: cc, Gitmirror: gm, Dir: filepath.Join(dir, "state"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	return tb
}

func sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func post(h http.Handler, event, sig string, body []byte) int {
	r := httptest.NewRequest(http.MethodPost, "/github-app-webhook", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-GitHub-Event", event)
	r.Header.Set("X-GitHub-Delivery", "d-1")
	if sig != "" {
		r.Header.Set("X-Hub-Signature-256", sig)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func TestAppWebhook(t *testing.T) {
	h := newIdle(t).Handler()
	rerun := []byte(`{"action":"rerequested","check_run":{"name":"tryd/b","head_sha":"0123456789012345678901234567890123456789"},"repository":{"full_name":"o/r"},"sender":{"login":"m"}}`)
	for _, tc := range []struct {
		name, event, sig string
		body             []byte
		want             int
	}{
		{"unsigned", "check_run", "", rerun, http.StatusUnauthorized},
		{"wrong secret", "check_run", sign(rerun, "other"), rerun, http.StatusUnauthorized},
		{"other event ignored", "ping", sign([]byte(`{"zen":"x"}`), "s3cret"), []byte(`{"zen":"x"}`), http.StatusNoContent},
		{"other action ignored", "check_run", sign([]byte(`{"action":"created"}`), "s3cret"), []byte(`{"action":"created"}`), http.StatusNoContent},
		{"bad JSON", "check_run", sign([]byte(`{`), "s3cret"), []byte(`{`), http.StatusBadRequest},
		// Not running: the request cannot be recorded, so GitHub must
		// redeliver it.
		{"rerequest while stopped", "check_run", sign(rerun, "s3cret"), rerun, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(h, tc.event, tc.sig, tc.body); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

func FuzzAppWebhook(f *testing.F) {
	f.Add("check_run", []byte(`{"action":"rerequested","check_run":{"name":"tryd/b","head_sha":"x"},"repository":{"full_name":"o/r"}}`))
	f.Add("check_suite", []byte(`{"action":"rerequested","check_suite":{"head_sha":"x"}}`))
	f.Add("issues", []byte(`[]`))
	tb := newIdle(f)
	h := tb.Handler()
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		code := post(h, event, sign(body, "s3cret"), body)
		if code < 200 || code >= 600 || code == http.StatusInternalServerError {
			t.Fatalf("status %d", code)
		}
	})
}

func TestRunsAPIErrors(t *testing.T) {
	h := newIdle(t).Handler()
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/api/runs?limit=x", http.StatusBadRequest},
		{"/api/runs?state=bogus", http.StatusBadRequest},
		{"/api/runs/abc", http.StatusBadRequest},
		{"/api/runs/7", http.StatusNotFound},
		{"/api/runs", http.StatusOK},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if w.Code != tc.want {
			t.Errorf("GET %s: %d %s, want %d", tc.path, w.Code, w.Body, tc.want)
		}
	}
}
