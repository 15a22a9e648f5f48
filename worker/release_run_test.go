package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker"
)

// runWorker runs a worker with opts until the test ends, then checks
// that it stopped cleanly.
func runWorker(t *testing.T, opts worker.Options) {
	t.Helper()
	w, err := worker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		w.Close()
	})
}

// metricValue is the value of the series name with label value label
// in reg (0 if absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// TestReleaseOnRequest: a worker holding prefetched assignments behind
// a long job is asked to release one for an idle worker (the
// coordinator's two-phase steal): it drops it unstarted and says so at
// once, the idle worker gets its job, and every job runs exactly once,
// none of them on both workers, nothing abandoned.
func TestReleaseOnRequest(t *testing.T) {
	testenv.NeedTool(t, "sh")
	ctx := context.Background()
	creg := prometheus.NewRegistry()
	const thiefToken = "worker-token-thief-0123456789"
	curl := startCoordinatorWith(t, coordinator.Options{Registry: creg, WorkerTokens: map[string]string{"w2": thiefToken}})
	wc, _ := api.NewClient(curl, workerToken, nil)
	cc, _ := api.NewClient(curl, clientToken, nil)
	wreg := prometheus.NewRegistry()
	runWorker(t, worker.Options{Client: wc, Dir: t.TempDir(), Slots: 1, DrainTimeout: 5 * time.Second, Registry: wreg})

	dir := t.TempDir()
	goFile := filepath.Join(dir, "go")
	// Each run leaves a file ran-<job>-<pid>, so runs are counted on
	// the worker's side too.
	job := func(name, script string) *graph.Job {
		return &graph.Job{Name: name, SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `touch "$0/ran-$1-$$"; ` + script, dir, name}}}}
	}
	long, err := cc.Submit(ctx, api.SubmitRequest{Graph: graph.Graph{Jobs: []*graph.Job{
		job("long", `while [ ! -e "$0/go" ]; do sleep 0.02; done`)}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the long job to start", func() bool {
		runs, _ := filepath.Glob(filepath.Join(dir, "ran-long-*"))
		return len(runs) == 1
	})
	// The worker's one slot is busy: it prefetches both jobs.
	short, err := cc.Submit(ctx, api.SubmitRequest{Graph: graph.Graph{Jobs: []*graph.Job{job("a", ""), job("b", "")}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("the worker to hold two prefetched assignments", func() bool {
		return metricValue(t, wreg, "tryd_worker_held_assignments", "prefetched") == 2
	})

	// An idle worker with one free slot: the coordinator asks the
	// holder to release one (once held for 100ms), and hands its job
	// to the idle worker once released.
	thief, _ := api.NewClient(curl, thiefToken, nil)
	reg, err := thief.Register(ctx, api.RegisterRequest{Name: "w2", Slots: 1, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := thief.Poll(ctx, api.PollRequest{WorkerID: reg.WorkerID, FreeSlots: 1, WaitMS: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Assignments) != 1 || resp.Assignments[0].BuildID != short.BuildID {
		t.Fatalf("idle worker got %+v, want one job of build %d", resp.Assignments, short.BuildID)
	}
	stolen := resp.Assignments[0]
	if n := metricValue(t, wreg, "tryd_worker_held_assignments", "prefetched"); n != 1 {
		t.Errorf("the holder holds %v prefetched assignments after releasing one, want 1", n)
	}
	if _, err := thief.Poll(ctx, api.PollRequest{WorkerID: reg.WorkerID, Running: []string{}, WaitMS: 1, Results: []api.AttemptResult{
		{AttemptID: stolen.AttemptID, State: api.AttemptFailed, ExitCode: new(int), Error: "the idle worker's run"}}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	lb, err := cc.Wait(wctx, long.BuildID, nil)
	if err != nil || lb.State != api.BuildSucceeded {
		t.Fatalf("long build = %+v, %v", lb, err)
	}
	sb, err := cc.Wait(wctx, short.BuildID, nil)
	if err != nil || sb.State != api.BuildFailed {
		t.Fatalf("build of a and b = %+v, %v; want failed (the idle worker failed its job)", sb, err)
	}
	for _, j := range sb.Jobs {
		runs, _ := filepath.Glob(filepath.Join(dir, "ran-"+j.Name+"-*"))
		wantRuns, wantWorker := 1, "w1"
		if j.Name == stolen.Job.Name {
			wantRuns, wantWorker = 0, "w2" // the idle worker did not really run it
		}
		if len(runs) != wantRuns || len(j.Attempts) != 1 || j.Attempts[0].Worker != wantWorker {
			t.Errorf("%s: %d runs on the holder, attempts %+v; want %d runs and one attempt, by %s", j.Name, len(runs), j.Attempts, wantRuns, wantWorker)
		}
	}
	for _, ev := range []string{"release_requested", "released"} {
		if n := metricValue(t, creg, "tryd_coordinator_prefetched_total", ev); n != 1 {
			t.Errorf("prefetched %s: %v, want 1", ev, n)
		}
	}
	if n := metricValue(t, creg, "tryd_coordinator_prefetched_total", "taken_back"); n != 0 {
		t.Errorf("%v prefetched attempts taken back, want none", n)
	}
}
