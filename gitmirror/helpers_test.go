package gitmirror

import (
	"context"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// gitT runs git in dir with a fixed identity and dates, failing the test
// on error, and returns its trimmed output.
func gitT(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitRaw(dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitRaw(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(),
		"GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_AUTHOR_DATE=2024-01-02T03:04:05Z",
		"GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_COMMITTER_DATE=2024-01-02T03:04:05Z",
		"HOME="+os.TempDir(),
	)
	return cmd.CombinedOutput()
}

// upstream is a bare repository with a work tree that pushes to it.
type upstream struct {
	t    testing.TB
	bare string // the bare repository
	work string // a clone used to make commits
	n    int
}

// newUpstream makes a bare repository with one commit on main holding a
// small tree: a file, an executable, a symlink and a subdirectory.
func newUpstream(t testing.TB) *upstream {
	t.Helper()
	testenv.NeedTool(t, "git")
	dir := t.TempDir()
	u := &upstream{t: t, bare: filepath.Join(dir, "up.git"), work: filepath.Join(dir, "work")}
	gitT(t, dir, "init", "-q", "--bare", "-b", "main", u.bare)
	gitT(t, dir, "init", "-q", "-b", "main", u.work)
	gitT(t, u.work, "remote", "add", "origin", u.bare)
	writeFile(t, filepath.Join(u.work, "README"), "hello\n", 0o644)
	writeFile(t, filepath.Join(u.work, "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	writeFile(t, filepath.Join(u.work, "sub", "dir", "x.go"), "package x\n", 0o644)
	if err := os.Symlink("README", filepath.Join(u.work, "link")); err != nil {
		t.Fatal(err)
	}
	u.commit("initial")
	gitT(t, u.work, "push", "-q", "origin", "main")
	return u
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// commit commits everything in the work tree (plus a changed file, so
// each commit has a new tree) and returns the commit hash.
func (u *upstream) commit(msg string) string {
	u.n++
	writeFile(u.t, filepath.Join(u.work, "counter"), strings.Repeat("x", u.n)+"\n", 0o644)
	gitT(u.t, u.work, "add", "-A")
	gitT(u.t, u.work, "commit", "-q", "-m", msg)
	return gitT(u.t, u.work, "rev-parse", "HEAD")
}

// push commits and pushes to main, returning the new commit.
func (u *upstream) push(msg string) string {
	c := u.commit(msg)
	gitT(u.t, u.work, "push", "-q", "origin", "main")
	return c
}

// gitHTTP serves the bare repositories under root with git http-backend,
// like a Gerrit or GitHub server's git endpoint. With receive set, pushes
// are allowed (for push mirror targets).
func gitHTTP(root string, receive bool) http.Handler {
	env := []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}
	if receive {
		env = append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true")
	}
	git, _ := exec.LookPath("git")
	return &cgi.Handler{Path: git, Args: []string{"http-backend"}, Env: env}
}

// serve starts h on 127.0.0.1:0 and returns its URL.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	srv, err := httpserver.New(httpserver.Options{Handler: h, Component: "test", ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return srv.URL()
}

// testMirror is a running Mirror with its HTTP server and a client.
type testMirror struct {
	*Mirror
	url    string
	client *client.Client
	logs   *testenv.Buffer
}

// startMirror creates a Mirror from opts (Dir defaults to a temporary
// directory, Poll to disabled so that only nudges fetch), runs it and
// serves it until the test ends. Unless opts.Clock is set (then the test
// drives time itself), it waits for the first fetch of every repository.
func startMirror(t testing.TB, opts Options) *testMirror {
	t.Helper()
	testenv.NeedTool(t, "git")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Poll == 0 {
		opts.Poll = -1
	}
	if opts.BackoffMin == 0 {
		opts.BackoffMin = 10 * time.Millisecond
		opts.BackoffMax = 50 * time.Millisecond
	}
	logs := &testenv.Buffer{}
	l := logrus.New()
	l.SetOutput(logs)
	l.SetLevel(logrus.DebugLevel)
	opts.Log = l
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	url := serve(t, m.Handler())
	c, err := client.New(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range opts.Repos {
		if opts.Clock != nil {
			break
		}
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := m.Sync(sctx, r.Name)
		scancel()
		if err != nil {
			t.Fatalf("first sync of %s: %v", r.Name, err)
		}
	}
	return &testMirror{Mirror: m, url: url, client: c, logs: logs}
}

// eventually calls check until it returns nil and fails the test with its
// last error if that takes more than 20 seconds.
func eventually(t testing.TB, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
