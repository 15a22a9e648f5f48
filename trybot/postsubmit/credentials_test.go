package postsubmit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot/postsubmit"
)

// serveGitWithToken serves the bare repositories under root over git's
// smart HTTP (git http-backend as CGI, as gitmirror serves its mirrors)
// to requests with "Authorization: Bearer token" only, and records the
// Authorization headers it saw.
func serveGitWithToken(t *testing.T, root, token string) (base string, seen func() []string) {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	var mu sync.Mutex
	var headers []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), headers...)
	}
}

// recordingGit writes a git wrapper that appends its arguments to a
// file, so that the test can check that no credential is on git's
// command line.
func recordingGit(t *testing.T) (git, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	git, argsFile = filepath.Join(dir, "git"), filepath.Join(dir, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '" + argsFile + "'\nexec git \"$@\"\n"
	if err := os.WriteFile(git, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return git, argsFile
}

// TestCredentialsReachGitmirror checks that Options.Credentials let
// postsubmit fetch from a token-protected git server, with the token in
// a header (never on git's command line or in an error), and that
// without them the fetch is refused.
func TestCredentialsReachGitmirror(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	const token = "gitmirror-token-0123456789"
	repo := newRepo(t)
	rev := repo.Commit("first", map[string]string{"a": "1"})
	root := t.TempDir()
	if out, err := exec.Command("git", "clone", "--quiet", "--bare", repo.Dir, filepath.Join(root, "r.git")).CombinedOutput(); err != nil {
		t.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	base, seen := serveGitWithToken(t, root, token)
	cc := startStack(t)
	bs, p := builders(config.Builder{Name: "linux-amd64", PostSubmit: true, Steps: []config.Step{{Name: "x", Shell: "true"}}})
	git, argsFile := recordingGit(t)
	newB := func(creds []postsubmit.Credential) *postsubmit.Builder {
		b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(), Builders: bs, Git: git,
			Credentials: creds, Repos: []postsubmit.Repo{{Name: "r", URL: base + "/r.git", Branches: []string{"main"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx := context.Background()

	t.Run("without credentials", func(t *testing.T) {
		_, err := newB(nil).Update(ctx, "r", "main", "")
		if err == nil {
			t.Fatal("fetch from a token-protected server without a token succeeded")
		}
	})
	t.Run("with credentials", func(t *testing.T) {
		b := newB([]postsubmit.Credential{{URLPrefix: base + "/", Token: token}})
		ids, err := b.Update(ctx, "r", "main", "")
		if err != nil || len(ids) != 1 {
			t.Fatalf("Update = %v, %v", ids, err)
		}
		bl, err := cc.Build(ctx, ids[0])
		if err != nil || bl.Labels["revision"] != rev {
			t.Errorf("build %+v, %v; want revision %s", bl, err, rev)
		}
		// A forced build of a commit fetched by hash, too.
		if _, err := b.Force(ctx, postsubmit.ForceRequest{Repo: "r", Revision: rev, Builder: "linux-amd64", Branch: "main"}); err != nil {
			t.Errorf("Force: %v", err)
		}
	})
	t.Run("credentials for another server", func(t *testing.T) {
		b := newB([]postsubmit.Credential{{URLPrefix: "http://elsewhere.invalid:8083/", Token: token}})
		if _, err := b.Update(ctx, "r", "main", ""); err == nil {
			t.Error("a token for another URL prefix was sent to this server")
		}
	})
	var sent bool
	for _, h := range seen() {
		sent = sent || h == "Bearer "+token
	}
	if !sent {
		t.Errorf("the server never saw the token; Authorization headers: %q", seen())
	}
	args, err := os.ReadFile(argsFile)
	if err != nil || len(args) == 0 {
		t.Fatalf("git wrapper recorded nothing: %v", err)
	}
	if bytes.Contains(args, []byte(token)) {
		t.Errorf("the token is on git's command line:\n%s", args)
	}
}

// TestCredentialsValidated checks that New refuses what
// gitexec.Credential.Validate refuses (its own test has the full table),
// without showing the token.
func TestCredentialsValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    postsubmit.Credential
	}{
		{"no trailing slash", postsubmit.Credential{URLPrefix: "http://gm:8083", Token: "t0123456789abcdef"}},
		{"token with a newline", postsubmit.Credential{URLPrefix: "http://gm:8083/", Token: "t0123\nX-Evil: 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, _ := api.NewClient("http://127.0.0.1:1", "client-token-0123456789", nil)
			_, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: stepPlanner{}, Dir: t.TempDir(), Credentials: []postsubmit.Credential{tc.c}})
			if err == nil || !strings.HasPrefix(err.Error(), "postsubmit: ") {
				t.Fatalf("New = %v, want a postsubmit: error", err)
			}
			if strings.Contains(err.Error(), tc.c.Token) {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

// TestForceAPIUpstreamFailure checks that a force request failing
// upstream (here: the coordinator is unreachable) answers 502 with a
// generic message and a request ID, while the log has the cause under
// that ID; and that the admin token is checked exactly.
func TestForceAPIUpstreamFailure(t *testing.T) {
	testenv.NeedTool(t, "git")
	repo := newRepo(t)
	rev := repo.Commit("first", map[string]string{"a": "1"})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	cc, _ := api.NewClient(deadURL, "client-token-0123456789", nil)
	bs, p := builders(config.Builder{Name: "linux-amd64", PostSubmit: true, Steps: []config.Step{{Name: "x", Shell: "true"}}})
	log, hook := logtest.NewNullLogger()
	b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(), Builders: bs, Log: log,
		Repos: []postsubmit.Repo{{Name: "r", URL: repo.URL(), Branches: []string{"main"}}}})
	if err != nil {
		t.Fatal(err)
	}
	const admin = "admin-token-0123456789"
	srv := httptest.NewServer(b.Handler(admin))
	t.Cleanup(srv.Close)
	body := `{"repo":"r","revision":"` + rev + `","builder":"linux-amd64"}`
	post := func(auth string) (*http.Response, map[string]string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/force", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("body: %v", err)
		}
		return resp, out
	}
	for _, tc := range []struct{ name, auth string }{
		{"prefix of the token", "Bearer " + admin[:len(admin)-1]},
		{"token with a suffix", "Bearer " + admin + "0"},
		{"basic auth", "Basic " + admin},
		{"empty bearer", "Bearer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, out := post(tc.auth); resp.StatusCode != http.StatusUnauthorized || out["code"] != "unauthorized" {
				t.Errorf("%d %v, want 401", resp.StatusCode, out)
			}
		})
	}
	// The scheme is case-insensitive (RFC 7235), as everywhere in tryd
	// (internal/bearer): past the token check, the dead coordinator
	// answers.
	if resp, out := post("bearer " + admin); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("lower-case scheme: %d %v, want 502", resp.StatusCode, out)
	}
	resp, out := post("Bearer " + admin)
	rid := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusBadGateway || out["code"] != "unavailable" || rid == "" || !strings.Contains(out["message"], rid) {
		t.Fatalf("%d %v (X-Request-Id %q), want 502 naming the request ID", resp.StatusCode, out, rid)
	}
	host := strings.TrimPrefix(deadURL, "http://")
	for _, leak := range []string{host, "connection refused", "dial", repo.Dir} {
		if strings.Contains(out["message"], leak) {
			t.Errorf("the 502 message shows %q: %s", leak, out["message"])
		}
	}
	var logged bool
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.ErrorLevel && e.Data["request_id"] == rid {
			err, _ := e.Data[logrus.ErrorKey].(error)
			logged = err != nil && !errors.Is(err, postsubmit.ErrUnknown) && strings.Contains(err.Error(), host)
		}
	}
	if !logged {
		t.Errorf("no error logged under request ID %s with the upstream cause", rid)
	}
}
