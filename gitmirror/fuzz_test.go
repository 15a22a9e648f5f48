package gitmirror

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"Time":"2026-01-02T03:04:05.123456789Z","LongPollTimeout":true}`,
		`{"Time":"2026-01-02T03:04:05Z","Gerrit":{"URL":"https://go-review.googlesource.com/39551","Project":"go","CommitHash":"abc","ChangeNumber":39551}}`,
		`{"Time":"2026-01-02T03:04:05Z","GitHub":{"Action":"opened","RepoOwner":"golang","Repo":"go","IssueNumber":1,"PullRequestNumber":2}}`,
		`{"Time":"not a time"}`,
		`{}`,
		`[]`,
		`{"Time":"2026-01-02T03:04:05Z","Gerrit":null,"GitHub":{"RepoOwner":7}}`,
	} {
		f.Add([]byte(s))
	}
	m, err := New(Options{Dir: f.TempDir(), Repos: []Repo{
		{Name: "go", URL: "https://x/go"},
		{Name: "w", URL: "https://x/w", GitHubSlug: "golang/go"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := parseEvent(data)
		if err != nil {
			return
		}
		if ev.Time.IsZero() {
			t.Fatalf("accepted an event without time: %q", data)
		}
		for _, r := range m.reposFor(ev) {
			if r == nil {
				t.Fatal("nil repo")
			}
		}
	})
}

func FuzzParseBatchCheck(f *testing.F) {
	f.Add([]byte("83d9e67e6905288eddbcaf39197c6b22cd62b503 commit\naaff74984cccd156a469afa7d9ab10e4777beb24 tree\n"))
	f.Add([]byte("x^{commit} missing\nx^{tree} missing\n"))
	f.Add([]byte("abcd^{commit} ambiguous\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ct, err := parseBatchCheck(data)
		if err == nil && (len(ct[0]) != 40 && len(ct[0]) != 64 || len(ct[1]) != 40 && len(ct[1]) != 64) {
			t.Fatalf("accepted %q as %q", data, ct)
		}
	})
}

func FuzzParseRefs(f *testing.F) {
	f.Add([]byte("83d9e67e6905288eddbcaf39197c6b22cd62b503 refs/heads/main\naaff74984cccd156a469afa7d9ab10e4777beb24 refs/tags/v1\n"))
	f.Add([]byte("bogus\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := parseRefs(data)
		if err != nil {
			return
		}
		for ref, hash := range refs {
			if ref == "" || len(hash) != 40 && len(hash) != 64 {
				t.Fatalf("accepted %q -> %q", ref, hash)
			}
		}
	})
}

// FuzzHandler sends arbitrary methods, paths and queries to the handler
// of a running mirror whose upstream is missing (so it is never cloned and
// backs off for an hour): it must answer without panicking, without a
// 500, and, except on /debug, without showing its directory.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"GET /proj.tar.gz?rev=refs/heads/main", "GET /../../etc/passwd", "POST /proj/nudge",
		"GET /proj.git/info/refs?service=git-upload-pack", "GET /proj.git/info/refs?service=git-receive-pack",
		"GET /proj/refs?prefix=refs/heads/", "GET /debug?format=json", "GET /-x.tar.gz?rev=--exec=x",
		"GET /a/b/c.git/objects/info/packs", "HEAD /proj.tar.gz?rev=abcd", "GET /", "DELETE /proj/refs",
		"POST /proj/nudge?wait=1",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	missing := filepath.Join(dir, "missing.git")
	m, err := New(Options{Dir: dir, Poll: -1, BackoffMin: time.Hour, BackoffMax: time.Hour,
		Repos: []Repo{{Name: "proj", URL: missing}, {Name: "a/b/c", URL: missing}}})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	f.Cleanup(func() { cancel(); <-done })
	for _, name := range []string{"proj", "a/b/c"} {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		if err := m.Sync(sctx, name); !errors.Is(err, ErrUpstream) {
			f.Fatalf("first fetch of %s: %v, want ErrUpstream", name, err)
		}
		scancel()
	}
	h := m.Handler()
	f.Fuzz(func(t *testing.T, line string) {
		method, target, ok := strings.Cut(line, " ")
		if !ok || method == "" || !strings.HasPrefix(target, "/") {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		req := (&http.Request{Method: method, URL: u, Header: http.Header{}, Body: http.NoBody, RemoteAddr: "127.0.0.1:1"}).WithContext(rctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rctx.Err() != nil {
			t.Fatalf("%s: took more than 10s", line)
		}
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusBadGateway {
			t.Fatalf("%s: status %d: %s", line, rec.Code, rec.Body)
		}
		// /debug is the operators' page: it shows the configured upstream
		// URL (here a path under dir) and git's errors on purpose.
		if u.Path != "/debug" && strings.Contains(rec.Body.String(), dir) {
			t.Fatalf("%s: body shows the directory: %s", line, rec.Body)
		}
	})
}
