package trybot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
)

// newIdle returns a Trybot that is not running, with a GitHub server
// whose webhook secret is "s3cret".
func newIdle(t testing.TB) *Trybot {
	return newIdleWith(t, 0, "s3cret")
}

// newIdleWith returns a Trybot that is not running, with one GitHub
// server per secret (an empty one has no webhook secret), all serving
// the repository o/r, and the given WebhookBodyTimeout.
func newIdleWith(t testing.TB, bodyTimeout time.Duration, secrets ...string) *Trybot {
	dir := t.TempDir()
	cfg := &config.Config{Builders: []config.Builder{{Name: "b", Planner: "go"}}}
	for i, s := range secrets {
		name := fmt.Sprintf("gh%d", i)
		srv := config.GitHubServer{Name: name, APIURL: "http://127.0.0.1:1/api/v3/"}
		if s != "" {
			file := filepath.Join(dir, name+".secret")
			if err := os.WriteFile(file, []byte(s+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			srv.WebhookSecret = config.FileSecret(file)
		}
		cfg.GitHub = append(cfg.GitHub, srv)
		cfg.Repos = append(cfg.Repos, config.Repo{Name: "r" + name, GitHub: name, Slug: "o/r" + name})
	}
	cc, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	gm, _ := gmclient.New("http://127.0.0.1:1", nil)
	tb, err := New(context.Background(), Options{
		Config:  cfg,
		LogsURL: "http://127.0.0.1:1/logs", Coordinator: cc, Gitmirror: gm, Dir: filepath.Join(dir, "state"),
		WebhookBodyTimeout: bodyTimeout,
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

// TestAppWebhookSecrets checks that a delivery signed with the webhook
// secret of any configured GitHub server verifies, not only the first's.
func TestAppWebhookSecrets(t *testing.T) {
	rerun := []byte(`{"action":"rerequested","check_run":{"name":"tryd/b","head_sha":"0123456789012345678901234567890123456789"},"repository":{"full_name":"o/rgh1"},"sender":{"login":"m"}}`)
	form := []byte("payload=" + url.QueryEscape(string(rerun)))
	sha1Sig := func(body []byte, secret string) string {
		m := hmac.New(sha1.New, []byte(secret))
		m.Write(body)
		return "sha1=" + hex.EncodeToString(m.Sum(nil))
	}
	// Verified deliveries reach the run logic, which answers 503 since
	// this trybot is not running; refused ones get 401.
	const verified = http.StatusServiceUnavailable
	tests := []struct {
		name        string
		secrets     []string // one GitHub server each
		contentType string
		header      string // signature header name
		sig         string
		body        []byte
		want        int
	}{
		{"first of two", []string{"one", "two"}, "application/json", "X-Hub-Signature-256", sign(rerun, "one"), rerun, verified},
		{"second of two", []string{"one", "two"}, "application/json", "X-Hub-Signature-256", sign(rerun, "two"), rerun, verified},
		{"after a server without secret", []string{"", "two"}, "application/json", "X-Hub-Signature-256", sign(rerun, "two"), rerun, verified},
		{"neither", []string{"one", "two"}, "application/json", "X-Hub-Signature-256", sign(rerun, "three"), rerun, http.StatusUnauthorized},
		{"form encoded, second", []string{"one", "two"}, "application/x-www-form-urlencoded", "X-Hub-Signature-256", sign(form, "two"), form, verified},
		{"SHA-1 signature only", []string{"one", "two"}, "application/json", "X-Hub-Signature", sha1Sig(rerun, "two"), rerun, http.StatusUnauthorized},
		{"malformed signature", []string{"one"}, "application/json", "X-Hub-Signature-256", "sha256=zz", rerun, http.StatusUnauthorized},
		{"no secret configured", []string{""}, "application/json", "X-Hub-Signature-256", sign(rerun, ""), rerun, http.StatusUnauthorized},
		{"unsupported content type", []string{"one"}, "text/plain", "X-Hub-Signature-256", sign(rerun, "one"), rerun, http.StatusUnsupportedMediaType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newIdleWith(t, 0, tc.secrets...).Handler()
			r := httptest.NewRequest(http.MethodPost, "/github-app-webhook", bytes.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.contentType)
			r.Header.Set("X-GitHub-Event", "check_run")
			r.Header.Set("X-GitHub-Delivery", "d-1")
			r.Header.Set(tc.header, tc.sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.want)
			}
		})
	}
}

// rawRequest writes head (request line and headers, without the blank
// line) and then body to a new connection to srv, and returns the
// response status line, or the error that ended the connection, within
// five seconds.
func rawRequest(t *testing.T, srv *httptest.Server, head, body string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, strings.ReplaceAll(head, "\n", "\r\n")+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestAppWebhookRefusedBeforeBody checks that what can be refused from
// the headers alone is refused at once, without waiting for a body the
// sender never sends (the body timeout here is far longer than the
// client's patience).
func TestAppWebhookRefusedBeforeBody(t *testing.T) {
	srv := httptest.NewServer(newIdleWith(t, time.Minute, "s3cret").Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name, headers, want string
	}{
		{"unsigned", "Content-Length: 10000000", "HTTP/1.1 401 Unauthorized"},
		{"declared too large", "Content-Length: 30000000\nX-Hub-Signature-256: sha256=00", "HTTP/1.1 413 Request Entity Too Large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			line, err := rawRequest(t, srv, "POST /github-app-webhook HTTP/1.1\nHost: x\nContent-Type: application/json\nX-GitHub-Event: check_run\n"+tc.headers, "")
			if err != nil || line != tc.want {
				t.Fatalf("after %v: status line %q, %v; want %q", time.Since(start), line, err, tc.want)
			}
		})
	}
}

// TestAppWebhookBodyDeadline checks that a signed delivery whose body
// stalls loses its connection after WebhookBodyTimeout rather than
// holding it (and its buffer) for as long as the sender likes.
func TestAppWebhookBodyDeadline(t *testing.T) {
	srv := httptest.NewServer(newIdleWith(t, 200*time.Millisecond, "s3cret").Handler())
	t.Cleanup(srv.Close)
	start := time.Now()
	line, err := rawRequest(t, srv, "POST /github-app-webhook HTTP/1.1\nHost: x\nContent-Type: application/json\nX-GitHub-Event: check_run\nX-GitHub-Delivery: d\nX-Hub-Signature-256: sha256=00\nContent-Length: 1000", `{"action":`)
	elapsed := time.Since(start)
	// The server answers 400 (reading the body failed) or just closes
	// the connection (EOF); a client deadline means it waited on.
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (status line %q)", elapsed, line)
	}
	if line != "" && line != "HTTP/1.1 400 Bad Request" {
		t.Errorf("status line %q, want a 400 or a closed connection", line)
	}
	if elapsed < 200*time.Millisecond {
		t.Errorf("answered after %v, before the body timeout", elapsed)
	}
}

func FuzzAppWebhook(f *testing.F) {
	f.Add("check_run", []byte(`{"action":"rerequested","check_run":{"name":"tryd/b","head_sha":"x"},"repository":{"full_name":"o/r"}}`))
	f.Add("check_suite", []byte(`{"action":"rerequested","check_suite":{"head_sha":"x"}}`))
	f.Add("issues", []byte(`[]`))
	f.Add("installation", []byte(`{"action":"created","installation":{"id":7,"app_id":1,"account":{"login":"o"},"created_at":1557933591,"suspended_at":null},"repositories":[{"full_name":"o/r"}]}`))
	f.Add("installation", []byte(`{"action":"suspend","installation":{"id":7,"account":null,"suspended_at":"2026-01-02T03:04:05Z"},"repositories":null}`))
	f.Add("installation", []byte(`{"action":"deleted","installation":null}`))
	f.Add("installation_repositories", []byte(`{"action":"added","repositories_added":[{"full_name":"o/r"},null]}`))
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
