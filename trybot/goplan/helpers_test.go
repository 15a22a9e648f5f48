package goplan_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/tryd-ci/tryd/internal/testenv"
	"net/http/httptest"
	"os"
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

// newRepo makes a real git repository for the test.
func newRepo(t *testing.T) *testenv.GitRepo { return testenv.NewGitRepo(t) }
