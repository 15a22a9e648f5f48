package trybot

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot/client"
)

// TestAPIToken checks that with Options.APITokens the try run API
// answers only requests with one of the tokens (compared whole: a
// prefix or a longer token is wrong), that the App webhook and the index
// stay open, and that the client sends its token and maps 401 to
// ErrUnauthorized.
func TestAPIToken(t *testing.T) {
	const token, rotated = "trybot-api-token-0123456789", "trybot-api-token-rotated-0123"
	dir := t.TempDir()
	cc, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	gm, _ := gmclient.New("http://127.0.0.1:1", nil)
	tb, err := New(context.Background(), Options{Config: &config.Config{}, LogsURL: "http://127.0.0.1:1/logs",
		Coordinator: cc, Gitmirror: gm, Dir: filepath.Join(dir, "state"), APITokens: []string{token, rotated}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	srv := httptest.NewServer(tb.Handler())
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, method, path, auth string
		want                     int
	}{
		{"runs without a token", "GET", "/api/runs", "", http.StatusUnauthorized},
		{"runs with a wrong token", "GET", "/api/runs", "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"runs with a prefix of the token", "GET", "/api/runs", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"runs with a longer token", "GET", "/api/runs", "Bearer " + token + "x", http.StatusUnauthorized},
		{"runs with the token as basic auth", "GET", "/api/runs", "Basic " + token, http.StatusUnauthorized},
		{"runs with the token", "GET", "/api/runs", "Bearer " + token, http.StatusOK},
		{"runs with the rotated token", "GET", "/api/runs", "Bearer " + rotated, http.StatusOK},
		{"one run without a token", "GET", "/api/runs/1", "", http.StatusUnauthorized},
		{"one run with the token", "GET", "/api/runs/1", "Bearer " + token, http.StatusNotFound},
		{"index without a token", "GET", "/", "", http.StatusOK},
		// An unsigned delivery is refused by the webhook's own check
		// (401 without a Bearer challenge), not for want of a token.
		{"app webhook without a token", "POST", "/github-app-webhook", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader("{}"))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
			isAPI := strings.HasPrefix(tc.path, "/api/")
			if challenged := strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer "); challenged != (isAPI && tc.want == http.StatusUnauthorized) {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	c, err := client.New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Runs(t.Context(), client.ListOptions{}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("client without a token: %v, want ErrUnauthorized", err)
	}
	if _, err := c.WithToken("wrong-token-0123456789").Run(t.Context(), 1); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("client with a wrong token: %v, want ErrUnauthorized", err)
	}
	if runs, err := c.WithToken(token).Runs(t.Context(), client.ListOptions{}); err != nil || len(runs) != 0 {
		t.Errorf("client with the token: %v, %v", runs, err)
	}
}

func TestAPITokenRefusesWeakTokens(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"short", "short"},
		{"white space", "token with spaces 0123456789"},
		{"newline", "token-0123456789\nsecond"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newAPIAuth([]string{tc.token}); err == nil {
				t.Errorf("accepted %q", tc.token)
			}
		})
	}
}
