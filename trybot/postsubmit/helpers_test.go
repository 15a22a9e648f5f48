package postsubmit_test

import (
	"context"
	"github.com/tryd-ci/tryd/internal/testenv"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/worker"
)

const (
	workerToken = "worker-token-0123456789"
	clientToken = "client-token-0123456789"
)

// startStack runs a real coordinator (in-process, behind HTTP on
// loopback) and one real worker, and returns the client API.
func startStack(t *testing.T) *api.Client {
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
	wc, _ := api.NewClient(srv.URL, workerToken, nil)
	w, err := worker.New(worker.Options{Client: wc, Dir: filepath.Join(dir, "worker"), Slots: 4, DrainTimeout: -1})
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

// stepPlanner plans a builder's steps (shell lines) as independent jobs,
// so that one failing step does not hide the others.
type stepPlanner map[string]config.Builder

func (p stepPlanner) Plan(builder string, src graph.Source) (*graph.Graph, error) {
	g := &graph.Graph{Source: src}
	for _, s := range p[builder].Steps {
		g.Jobs = append(g.Jobs, &graph.Job{Name: s.Name, Commands: []graph.Command{{Argv: []string{"sh", "-c", s.Shell}}}, Cacheable: true})
	}
	return g, nil
}

func builders(bs ...config.Builder) ([]config.Builder, stepPlanner) {
	p := stepPlanner{}
	for _, b := range bs {
		p[b.Name] = b
	}
	return bs, p
}

// newRepo makes a real git repository for the test.
func newRepo(t *testing.T) *testenv.GitRepo { return testenv.NewGitRepo(t) }

// waitAll waits for builds to finish and returns them.
func waitAll(t *testing.T, cc *api.Client, ids []int64) []*api.Build {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*api.Build
	for _, id := range ids {
		b, err := cc.Wait(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
