package source

import (
	"context"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// upstream is a real git repository served over smart HTTP by
// git http-backend, with gitmirror's tarball path beside it.
type upstream struct {
	t       *testing.T
	dir     string      // work tree of <root>/proj (non-bare; served via its .git)
	url     string      // <srv>/proj.git
	gitFail atomic.Bool // make smart HTTP answer 500, to force the tarball path
	tarFail atomic.Bool // make the tarball answer 503
	// token, if set, is required as a bearer token (as a gitmirror with
	// tokens does); auths records every Authorization header received.
	token atomic.Pointer[string]
	auths chan string
}

func newUpstream(t *testing.T) *upstream {
	git := testenv.NeedTool(t, "git")
	root := t.TempDir()
	u := &upstream{t: t, dir: filepath.Join(root, "proj"), auths: make(chan string, 1000)}
	u.run("init", "--quiet", "-b", "main", u.dir)
	u.run("-C", u.dir, "config", "user.email", "t@example.com")
	u.run("-C", u.dir, "config", "user.name", "T")
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			select {
			case u.auths <- a:
			default:
			}
		}
		if tok := u.token.Load(); tok != nil && r.Header.Get("Authorization") != "Bearer "+*tok {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "missing or bad token", http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			if u.tarFail.Load() {
				http.Error(w, "restarting", http.StatusServiceUnavailable)
				return
			}
			rev := r.URL.Query().Get("rev")
			if CheckRevision(rev) != nil {
				http.Error(w, "bad rev", 400)
				return
			}
			commit, err := exec.Command(git, "-C", u.dir, "rev-parse", "--verify", rev+"^{commit}").Output()
			if err != nil {
				http.Error(w, "not found", 404)
				return
			}
			w.Header().Set("X-Tryd-Commit", strings.TrimSpace(string(commit)))
			cmd := exec.Command(git, "-C", u.dir, "archive", "--format=tar.gz", strings.TrimSpace(string(commit)))
			cmd.Stdout = w
			if err := cmd.Run(); err != nil {
				t.Errorf("git archive: %v", err)
			}
			return
		}
		if u.gitFail.Load() {
			http.Error(w, "broken", 500)
			return
		}
		// /proj.git/... → the repository's .git directory.
		r.URL.Path = strings.Replace(r.URL.Path, "/proj.git/", "/proj/.git/", 1)
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.url = srv.URL + "/proj.git"
	return u
}

func (u *upstream) run(args ...string) string {
	u.t.Helper()
	out, err := exec.Command("git", args...).CombinedOutput()
	if err != nil {
		u.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files and commits them, returning the commit hash.
func (u *upstream) commit(files map[string]string) string {
	u.t.Helper()
	for name, content := range files {
		p := filepath.Join(u.dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	u.run("-C", u.dir, "add", "-A")
	u.run("-C", u.dir, "commit", "--quiet", "-m", "change")
	return u.run("-C", u.dir, "rev-parse", "HEAD")
}

func newStore(t *testing.T) *Store {
	s, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckoutIncremental(t *testing.T) {
	u := newUpstream(t)
	c1 := u.commit(map[string]string{"a.txt": "one", "dir/b.txt": "bee"})
	s := newStore(t)
	ctx := context.Background()

	dst1 := filepath.Join(t.TempDir(), "src")
	got, release1, err := s.Checkout(ctx, u.url, c1, dst1)
	if err != nil {
		t.Fatal(err)
	}
	if got != c1 {
		t.Errorf("commit = %s, want %s", got, c1)
	}
	if readFile(t, filepath.Join(dst1, "a.txt")) != "one" || readFile(t, filepath.Join(dst1, "dir/b.txt")) != "bee" {
		t.Error("checkout has wrong contents")
	}

	// A second revision arrives by incremental fetch; both checkouts
	// coexist, each exactly its revision.
	c2 := u.commit(map[string]string{"a.txt": "two"})
	dst2 := filepath.Join(t.TempDir(), "src")
	_, release2, err := s.Checkout(ctx, u.url, c2, dst2)
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dst2, "a.txt")) != "two" || readFile(t, filepath.Join(dst1, "a.txt")) != "one" {
		t.Error("second checkout wrong or first disturbed")
	}

	// A ref is fetched every time (it moves).
	dst3 := filepath.Join(t.TempDir(), "src")
	got, release3, err := s.Checkout(ctx, u.url, "refs/heads/main", dst3)
	if err != nil || got != c2 {
		t.Fatalf("ref checkout = %s, %v; want %s", got, err, c2)
	}

	// A revision the upstream does not have fails clearly.
	_, _, err = s.Checkout(ctx, u.url, strings.Repeat("ab", 20), filepath.Join(t.TempDir(), "src"))
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown revision: err = %v, want ErrNotFound", err)
	}

	for _, r := range []func(){release1, release2, release3} {
		r()
	}
	for _, d := range []string{dst1, dst2, dst3} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s not removed by release", d)
		}
	}
	wt := u.run("--git-dir="+s.clonePath(u.url), "worktree", "list")
	if strings.Count(wt, "\n") != 0 {
		t.Errorf("worktrees left registered:\n%s", wt)
	}
}

func TestCheckoutTarballFallback(t *testing.T) {
	u := newUpstream(t)
	c1 := u.commit(map[string]string{"x/y.txt": "why"})
	u.gitFail.Store(true)
	s := newStore(t)
	dst := filepath.Join(t.TempDir(), "src")
	got, release, err := s.Checkout(context.Background(), u.url, c1, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got != c1 {
		t.Errorf("commit = %q, want %s", got, c1)
	}
	if readFile(t, filepath.Join(dst, "x/y.txt")) != "why" {
		t.Error("tarball checkout has wrong contents")
	}
}

func TestCheckoutRejectsBadInput(t *testing.T) {
	s := newStore(t)
	tests := []struct{ name, repo, rev string }{
		{"option as revision", "http://h/r.git", "--upload-pack=evil"},
		{"revision expression", "http://h/r.git", "HEAD~1"},
		{"dotdot ref", "http://h/r.git", "refs/heads/../x"},
		{"ref with space", "http://h/r.git", "refs/heads/a b"},
		{"short hex", "http://h/r.git", "abc"},
		{"ext transport", "ext::sh -c evil", "abcdef12"},
		{"ssh url", "ssh://h/r.git", "abcdef12"},
		{"token in url", "https://user:tok@h/r.git", "abcdef12"},
		{"option as repo", "-uevil", "abcdef12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.Checkout(context.Background(), tt.repo, tt.rev, filepath.Join(t.TempDir(), "d"))
			if !errors.Is(err, ErrBadRevision) {
				t.Fatalf("err = %v, want ErrBadRevision", err)
			}
		})
	}
}

func TestTarballURL(t *testing.T) {
	tests := []struct{ repo, want string }{
		{"http://m:8080/go/net.git", "http://m:8080/go/net.tar.gz?rev=abcd"},
		{"file:///x/y.git", ""},
		{"http://m/noext", ""},
	}
	for _, tt := range tests {
		if got := TarballURL(tt.repo, "abcd"); got != tt.want {
			t.Errorf("TarballURL(%q) = %q, want %q", tt.repo, got, tt.want)
		}
	}
}

func FuzzCheckRevision(f *testing.F) {
	for _, s := range []string{"abcd", "refs/heads/main", "refs/changes/01/1/1", "--x", "refs/../x", "HEAD", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rev string) {
		if CheckRevision(rev) != nil {
			return
		}
		if strings.HasPrefix(rev, "-") || strings.Contains(rev, "..") || strings.ContainsAny(rev, " \t\n:~^@{\\*?[") {
			t.Fatalf("accepted unsafe revision %q", rev)
		}
	})
}
