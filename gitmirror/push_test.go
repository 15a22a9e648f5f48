package gitmirror

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
)

// authGitHTTP serves bare repositories under root for push, requiring
// the Authorization header GitHub expects for a token.
func authGitHTTP(t testing.TB, root, token string) string {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	backend := gitHTTP(root, true)
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
}

func refNames(t testing.TB, dir string) []string {
	t.Helper()
	out := gitT(t, dir, "for-each-ref", "--format=%(refname)")
	names := strings.Fields(out)
	sort.Strings(names)
	return names
}

func waitPushes(t testing.TB, tm *testMirror, n int64) {
	t.Helper()
	eventually(t, func() error {
		if p := tm.Status().Repos[0].Push; p.Pushes < n {
			return fmt.Errorf("push mirror: %d pushes, want %d (%+v)", p.Pushes, n, p)
		}
		return nil
	})
}

func TestPushMirrorHeadsAndTagsOnly(t *testing.T) {
	const token = "s3cret-t0ken-value"
	up := newUpstream(t)
	c := up.commit("feature")
	gitT(t, up.work, "tag", "-a", "-m", "release", "v1")
	gitT(t, up.work, "push", "-q", "origin", c+":refs/heads/feature", "v1", c+":refs/changes/01/1/1", c+":refs/changes/01/1/meta", c+":refs/pull/3/head")

	targetRoot := t.TempDir()
	target := filepath.Join(targetRoot, "mirror.git")
	gitT(t, targetRoot, "init", "-q", "--bare", target)
	targetURL := authGitHTTP(t, targetRoot, token) + "/mirror.git"

	var secret atomic.Value
	secret.Store("wrong-token")
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare, Push: &PushMirror{
		URL:         targetURL,
		Credentials: func() (string, error) { return secret.Load().(string), nil },
	}}}})
	ctx := ctxT(t)

	// A wrong token fails; the failure is shown without the secret and
	// the push stays owed.
	waitPushes(t, tm, 1)
	st := tm.Status().Repos[0].Push
	if st.LastError == "" || !st.LastSuccess.IsZero() {
		t.Fatalf("push with wrong token: %+v", st)
	}
	// The next fetch retries the owed push, though nothing changed.
	secret.Store(token)
	eventually(t, func() error {
		if tm.Status().Repos[0].Push.LastSuccess.IsZero() {
			if err := tm.Sync(ctx, "proj"); err != nil {
				t.Fatal(err)
			}
			return fmt.Errorf("push never succeeded: %+v", tm.Status().Repos[0].Push)
		}
		return nil
	})
	pushes := tm.Status().Repos[0].Push.Pushes
	want := []string{"refs/heads/feature", "refs/heads/main", "refs/tags/v1"}
	if got := refNames(t, target); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("push mirror refs %q, want %q", got, want)
	}
	if got, want := gitT(t, target, "rev-parse", "v1^{commit}"), c; got != want {
		t.Errorf("v1 = %s, want %s", got, want)
	}

	// A deleted branch and a new tag follow with the next fetch.
	gitT(t, up.work, "tag", "v2")
	gitT(t, up.work, "push", "-q", "origin", ":refs/heads/feature", "v2")
	if err := tm.Sync(ctx, "proj"); err != nil {
		t.Fatal(err)
	}
	waitPushes(t, tm, pushes+1)
	want = []string{"refs/heads/main", "refs/tags/v1", "refs/tags/v2"}
	if got := refNames(t, target); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("push mirror refs %q, want %q", got, want)
	}

	// A fetch that changes only refs/changes does not push.
	gitT(t, up.work, "push", "-q", "origin", up.commit("ps2")+":refs/changes/01/1/2")
	if err := tm.Sync(ctx, "proj"); err != nil {
		t.Fatal(err)
	}
	if n := tm.Status().Repos[0].Push.Pushes; n != pushes+1 {
		t.Errorf("%d pushes after a change-only fetch, want %d", n, pushes+1)
	}

	// The secret appears nowhere a person or scraper can see.
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
	var seen []string
	for _, p := range []string{"/debug", "/debug?format=json", "/metrics"} {
		resp, err := http.Get(tm.url + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen = append(seen, string(b))
	}
	seen = append(seen, tm.logs.String())
	for i, s := range seen {
		if strings.Contains(s, token) || strings.Contains(s, basic) || strings.Contains(s, "wrong-token") {
			t.Errorf("secret leaked in output %d", i)
		}
	}
	if !strings.Contains(seen[1], `"push"`) {
		t.Errorf("/debug JSON lacks push state: %s", seen[1])
	}
}

func TestOptionsValidation(t *testing.T) {
	ok := Repo{Name: "proj", URL: "https://example.com/proj"}
	for _, tc := range []struct {
		name string
		repo Repo
		want string
	}{
		{"good", ok, ""},
		{"dotdot", Repo{Name: "a/../b", URL: ok.URL}, "contains"},
		{"git suffix", Repo{Name: "a.git", URL: ok.URL}, ".git"},
		{"reserved", Repo{Name: "a/refs", URL: ok.URL}, "reserved"},
		{"option url", Repo{Name: "a", URL: "--upload-pack=evil"}, "bad URL"},
		{"password in push url", Repo{Name: "a", URL: ok.URL, Push: &PushMirror{URL: "https://u:pw@example.com/x"}}, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Dir: t.TempDir(), Repos: []Repo{tc.repo}})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// basicAuthGit serves bare repositories under root for fetch, requiring
// HTTP basic authentication as Gerrit's /a/ paths do.
func basicAuthGit(t testing.TB, root, user, password string) string {
	backend := gitHTTP(root, false)
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
}

func TestFetchAuth(t *testing.T) {
	const password = "gerrit-http-pa55word"
	up := newUpstream(t)
	base := basicAuthGit(t, filepath.Dir(up.bare), "bot", password)
	var pw atomic.Value
	pw.Store(password)
	tm := startMirror(t, Options{Repos: []Repo{{
		Name: "proj", URL: base + "/" + filepath.Base(up.bare),
		FetchAuth: func() (string, string, error) { return "bot", pw.Load().(string), nil },
	}}})
	ctx := ctxT(t)
	c := up.push("private")
	if err := tm.Sync(ctx, "proj"); err != nil {
		t.Fatal(err)
	}
	if resp, body := getTarball(t, tm.url, "proj", c); resp.StatusCode != 200 {
		t.Fatalf("tarball: %s %s", resp.Status, body)
	}
	pw.Store("wrong-password")
	if err := tm.Sync(ctx, "proj"); !errors.Is(err, ErrUpstream) {
		t.Fatalf("fetch with a wrong password: %v", err)
	}
	resp, err := http.Get(tm.url + "/debug?format=json")
	if err != nil {
		t.Fatal(err)
	}
	dbg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{string(dbg), tm.logs.String()} {
		if strings.Contains(s, password) || strings.Contains(s, "wrong-password") {
			t.Errorf("password leaked: %s", s)
		}
	}
	if _, err := New(Options{Dir: t.TempDir(), Repos: []Repo{{Name: "x", URL: up.bare, FetchAuth: func() (string, string, error) { return "", "", nil }}}}); err == nil {
		t.Errorf("FetchAuth accepted for a path URL")
	}
}
