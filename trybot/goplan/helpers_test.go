package goplan_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/trybot/goplan"
	"github.com/tryd-ci/tryd/worker"
)

// TestMain lets the test binary stand in for the tryd binary on a
// worker's PATH: invoked as "tryd goplan ...", it plans like
// `tryd goplan` does (a real subprocess of the worker).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "tryd" {
		if err := fakeTryd(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func fakeTryd(args []string) error {
	if len(args) == 0 || args[0] != "goplan" {
		return errors.New("fake tryd: only goplan")
	}
	fs := flag.NewFlagSet("goplan", flag.ContinueOnError)
	source := fs.String("source", "", "")
	out := fs.String("out", "", "")
	timeout := fs.Duration("timeout", 0, "")
	var labels, testFlags multi
	fs.Var(&labels, "label", "")
	fs.Var(&testFlags, "test-flag", "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	lm := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		lm[k] = v
	}
	g, err := goplan.Run(context.Background(), *source, "go", nil, goplan.Options{Labels: lm, Timeout: *timeout, TestFlags: testFlags})
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	return goplan.Write(f, g)
}

const (
	workerToken = "worker-token-0123456789"
	clientToken = "client-token-0123456789"
)

// startStack runs a real coordinator (in-process, behind HTTP on
// loopback) and one worker whose PATH starts with a directory holding
// "tryd" (this test binary). It returns the client API.
func startStack(t *testing.T, slots int) *api.Client {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(dir, "artifacts")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(ctx, coordinator.Options{Store: st, Artifacts: arts, Dir: dir,
		WorkerTokens: map[string]string{"w1": workerToken}, ClientToken: clientToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "tryd")); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GOFLAGS=-mod=mod", "GOPROXY=off"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	wc, _ := api.NewClient(srv.URL, workerToken, nil)
	w, err := worker.New(worker.Options{Client: wc, Dir: filepath.Join(dir, "worker"), Slots: slots, BaseEnv: env, DrainTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
		w.Close()
		srv.Close()
		c.Close()
		st.Close()
	})
	cc, _ := api.NewClient(srv.URL, clientToken, nil)
	return cc
}

// gitRepo is a real git repository in a temporary directory.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (path → contents) and commits them, returning the
// new revision.
func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for p, content := range files {
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func (r *gitRepo) url() string { return "file://" + r.dir }
