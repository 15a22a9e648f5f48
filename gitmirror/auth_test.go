package gitmirror

import (
	"encoding/base64"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

const testToken = "0123456789abcdef-mirror-token"

// TestTokensRequired checks that a mirror with tokens serves nothing,
// git included, without one, and everything with one (bearer or basic).
func TestTokensRequired(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}, Tokens: []string{"an-old-token-being-rotated", testToken}})
	head := gitT(t, up.bare, "rev-parse", "main")

	t.Run("client", func(t *testing.T) {
		if _, err := tm.client.Refs(ctxT(t), "proj", ""); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("Refs without token: err = %v, want ErrUnauthorized", err)
		}
		if _, err := tm.client.WithToken("0123456789abcdef-wrong").Refs(ctxT(t), "proj", ""); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("Refs with a wrong token: err = %v, want ErrUnauthorized", err)
		}
		refs, err := tm.client.WithToken(testToken).Refs(ctxT(t), "proj", "")
		if err != nil || refs["refs/heads/main"] != head {
			t.Errorf("Refs with the token = %v, %v; want main at %s", refs, err, head)
		}
		if _, err := tm.client.WithToken(testToken).Download(ctxT(t), "proj", head, t.TempDir()); err != nil {
			t.Errorf("Download with the token: %v", err)
		}
	})

	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		name, method, path, auth string
		want                     int
	}{
		{"debug without token", "GET", "/debug", "", http.StatusUnauthorized},
		{"index without token", "GET", "/", "", http.StatusUnauthorized},
		{"nudge without token", "POST", "/proj/nudge", "", http.StatusUnauthorized},
		{"unknown revision without token", "GET", "/proj.tar.gz?rev=" + strings.Repeat("a", 40), "", http.StatusUnauthorized},
		{"smart HTTP without token", "GET", "/proj.git/info/refs?service=git-upload-pack", "", http.StatusUnauthorized},
		{"empty bearer", "GET", "/proj/refs", "Bearer ", http.StatusUnauthorized},
		{"token as basic user name", "GET", "/proj/refs", basic(testToken, ""), http.StatusUnauthorized},
		{"token prefix", "GET", "/proj/refs", "Bearer " + testToken[:20], http.StatusUnauthorized},
		{"bearer", "GET", "/proj/refs", "Bearer " + testToken, http.StatusOK},
		{"lower-case bearer", "GET", "/proj/refs", "bearer " + testToken, http.StatusOK},
		{"basic password", "GET", "/proj/refs", basic("git", testToken), http.StatusOK},
		{"older token", "GET", "/debug", "Bearer an-old-token-being-rotated", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctxT(t), tc.method, tm.url+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a Basic challenge: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("git", func(t *testing.T) {
		work := t.TempDir()
		if out, err := gitRaw(work, "clone", "-q", tm.client.RepoURL("proj"), filepath.Join(work, "anon")); err == nil {
			t.Errorf("git clone without a token succeeded: %s", out)
		}
		gitT(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken, "clone", "-q", tm.client.RepoURL("proj"), filepath.Join(work, "ok"))
		if got := gitT(t, filepath.Join(work, "ok"), "rev-parse", "HEAD"); got != head {
			t.Errorf("cloned HEAD %s, want %s", got, head)
		}
	})
}

// TestShortTokensRefused checks that a guessable token is refused.
func TestShortTokensRefused(t *testing.T) {
	_, err := New(Options{Dir: t.TempDir(), Repos: []Repo{{Name: "proj", URL: "/nonexistent"}}, Tokens: []string{"short"}})
	if err == nil || !strings.Contains(err.Error(), "Tokens[0]") {
		t.Errorf("New with a 5-character token: err = %v", err)
	}
}
