package worker_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker"
)

const (
	workerToken = "worker-token-0123456789"
	clientToken = "client-token-0123456789"
)

// startCoordinator runs the real coordinator in-process behind a real
// HTTP server on loopback, so that the worker's Run loop is exercised
// under the race detector (the end-to-end tests run separate processes).
func startCoordinator(t *testing.T) string {
	t.Helper()
	return startCoordinatorWith(t, coordinator.Options{})
}

// startCoordinatorWith is startCoordinator with more options (its store,
// artifacts, directory and tokens are set here).
func startCoordinatorWith(t *testing.T, o coordinator.Options) string {
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
	o.Store, o.Artifacts, o.Dir = st, arts, dir
	if o.WorkerTokens == nil {
		o.WorkerTokens = map[string]string{}
	}
	o.WorkerTokens["w1"], o.ClientToken = workerToken, clientToken
	c, err := coordinator.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		srv.Close()
		c.Close()
		st.Close()
	})
	return srv.URL
}

func TestRunUnderRace(t *testing.T) {
	testenv.NeedTool(t, "sh")
	url := startCoordinator(t)
	wc, _ := api.NewClient(url, workerToken, nil)
	cc, _ := api.NewClient(url, clientToken, nil)
	w, err := worker.New(worker.Options{Client: wc, Dir: t.TempDir(), Slots: 3, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	g := &graph.Graph{}
	for i := 0; i < 100; i++ {
		g.Jobs = append(g.Jobs, &graph.Job{Name: "w" + strconv.Itoa(i), SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `echo out-$0; echo $0 > "$1/o"`, strconv.Itoa(i), "{{OUTPUT_DIR}}"}}}})
	}
	for i := 0; i < 30; i++ {
		j := &graph.Job{Name: "d" + strconv.Itoa(i), SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `echo x > "$0/o"`, "{{OUTPUT_DIR}}"}}}}
		if i > 0 {
			prev := "d" + strconv.Itoa(i-1)
			j.Deps = []string{prev}
			j.Commands[0].Argv = []string{"sh", "-c", `cat "$0/o" > "$1/o"; echo x >> "$1/o"`, "{{DEP:" + prev + "}}", "{{OUTPUT_DIR}}"}
		}
		g.Jobs = append(g.Jobs, j)
	}
	sub, err := cc.Submit(context.Background(), api.SubmitRequest{Graph: *g})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer wcancel()
	b, err := cc.Wait(wctx, sub.BuildID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	rc, err := cc.JobOutput(context.Background(), sub.Jobs["d29"])
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := graph.ReadOutputs(rc, out, graph.OutputLimits{}); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if got, _ := readAll(filepath.Join(out, "o")); strings.Count(got, "x") != 30 {
		t.Errorf("end of the chain has %q, want 30 lines", got)
	}

	// A running job is cancelled with its build; then shutdown drains.
	slow := &graph.Graph{Jobs: []*graph.Job{{Name: "slow", SourceMode: graph.SourceNone,
		Commands: []graph.Command{{Argv: []string{"sleep", "60"}}}}}}
	sub2, err := cc.Submit(context.Background(), api.SubmitRequest{Graph: *slow})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ := cc.Build(context.Background(), sub2.BuildID)
		if b != nil && b.Counts[api.JobRunning] == 1 {
			break
		}
	}
	if err := cc.Cancel(context.Background(), sub2.BuildID); err != nil {
		t.Fatal(err)
	}
	if b, err := cc.Wait(wctx, sub2.BuildID, nil); err != nil || b.State != api.BuildCancelled {
		t.Fatalf("cancelled build: %v, %v", b, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
