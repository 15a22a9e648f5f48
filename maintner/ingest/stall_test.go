package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// stallingServer answers no request until the test ends: a review server
// that accepted the connection and went silent.
func stallingServer(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL + "/"
}

// TestStalledServerTimesOut checks that a server that never answers
// fails a sync after the configured timeout rather than holding the
// worker (and every nudge queued behind it) forever.
func TestStalledServerTimesOut(t *testing.T) {
	tests := []struct {
		name string
		sync func(t *testing.T, url string) error
	}{
		{"github", func(t *testing.T, url string) error {
			c, _ := newCorpus(t)
			g, err := NewGitHub(GitHubOptions{Corpus: c, APIURL: url, Repos: []string{"a/b"}, RequestTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return g.Sync(context.Background(), "a/b", 1)
		}},
		{"gerrit", func(t *testing.T, url string) error {
			testenv.NeedTool(t, "git")
			c, _ := newCorpus(t)
			g, err := NewGerrit(GerritOptions{Corpus: c, URL: url, Projects: []string{"p"}, Dir: t.TempDir(), CommandTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return g.Sync(context.Background(), "p", 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := stallingServer(t)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- tc.sync(t, url) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("sync against a silent server succeeded")
				}
				t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			case <-time.After(30 * time.Second):
				t.Fatal("sync still blocked 30s after its 300ms timeout")
			}
		})
	}
}

// TestNegativeTimeoutsRefused checks the new options' validation.
func TestNegativeTimeoutsRefused(t *testing.T) {
	c, _ := newCorpus(t)
	if _, err := NewGitHub(GitHubOptions{Corpus: c, Repos: []string{"a/b"}, RequestTimeout: -1}); err == nil {
		t.Error("NewGitHub accepted a negative RequestTimeout")
	}
	if _, err := NewGerrit(GerritOptions{Corpus: c, URL: "http://127.0.0.1/", Projects: []string{"p"}, Dir: t.TempDir(), CommandTimeout: -1}); err == nil {
		t.Error("NewGerrit accepted a negative CommandTimeout")
	}
}
