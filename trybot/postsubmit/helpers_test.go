package postsubmit_test

import (
	"context"
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

// gitRepo is a real git repository in a temporary directory.
type gitRepo struct {
	t   *testing.T
	dir string
	n   int
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
	when := time.Date(2026, 1, 1, 0, r.n, 0, 0, time.UTC).Format(time.RFC3339)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ann Author", "GIT_AUTHOR_EMAIL=ann@example.com",
		"GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir,
		"GIT_AUTHOR_DATE="+when, "GIT_COMMITTER_DATE="+when)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (path → contents; empty contents removes the file)
// and commits them, returning the new revision.
func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.n++
	for p, content := range files {
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if content == "" {
			os.Remove(full)
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func (r *gitRepo) url() string { return "file://" + r.dir }

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
