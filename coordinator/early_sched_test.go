package coordinator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// gatedStore holds every Commit while its gate is closed, so that a test
// can see what a worker is answered before its results are durable.
type gatedStore struct {
	state.Store
	mu   sync.Mutex
	open chan struct{} // nil: commits pass
}

func (g *gatedStore) Commit(ctx context.Context, b *state.Batch) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if open != nil {
		select {
		case <-open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.Commit(ctx, b)
}

// hold makes commits wait until the returned function is called.
func (g *gatedStore) hold() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.open = ch
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.open = nil
		g.mu.Unlock()
		close(ch)
	}
}

// TestEarlyAssignmentsSched checks the two-part answer to an early poll:
// a chain's next job is handed out while the result that released it is
// still being committed, and the acknowledgement comes only once the
// result is durable. A poll without Early (a worker of the previous
// version) is answered in one part, after the commit.
func TestEarlyAssignmentsSched(t *testing.T) {
	var gs *gatedStore
	e := newEnv(t, sqliteBackend, envOpts{mod: func(o *Options) {
		gs = &gatedStore{Store: o.Store}
		o.Store = gs
	}})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	reg, err := w.c.Register(context.Background(), api.RegisterRequest{Name: "w1", Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !reg.EarlyAssignments {
		t.Fatal("registration does not offer early assignments")
	}
	w.id = reg.WorkerID
	sub := e.submit(`{"jobs": [
		{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "a", "content": "a"}}]},
		{"name": "b", "source_mode": "none", "deps": ["a"], "commands": [{"write_file": {"path": "b", "content": "b"}}]},
		{"name": "c", "source_mode": "none", "deps": ["b"], "commands": [{"write_file": {"path": "c", "content": "c"}}]}]}`, api.PriorityTry)

	first := w.mustPoll(1, nil)
	if len(first.Assignments) != 1 || first.Assignments[0].Job.Name != "a" {
		t.Fatalf("first poll: %+v", first.Assignments)
	}
	resA := w.output(first.Assignments[0])

	for _, tc := range []struct {
		name  string
		early bool
	}{{"early", true}, {"one part", false}} {
		t.Run(tc.name, func(t *testing.T) {
			release := gs.hold()
			defer func() {
				if release != nil {
					release()
				}
			}()
			got := make(chan *api.PollResponse, 1)
			done := make(chan error, 1)
			var final *api.PollResponse
			go func() {
				var err error
				req := api.PollRequest{WorkerID: w.id, FreeSlots: 1, Results: []api.AttemptResult{resA}, WaitMS: 1000}
				if tc.early {
					final, err = w.c.PollEarly(context.Background(), req, func(r *api.PollResponse) { got <- r })
				} else {
					final, err = w.c.Poll(context.Background(), req)
				}
				done <- err
			}()
			if tc.early {
				select {
				case r := <-got:
					if len(r.Assignments) != 1 || r.Assignments[0].Job.Name != "b" {
						t.Fatalf("early part: %+v", r.Assignments)
					}
					resA = w.output(r.Assignments[0]) // b's result, for the next case
				case err := <-done:
					t.Fatalf("poll ended before its early part: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("no early part while the commit is held")
				}
			}
			select {
			case err := <-done:
				t.Fatalf("poll acknowledged before its results were durable: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			release()
			release = nil
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			want := "b"
			if !tc.early {
				want = "c"
			}
			if len(final.Assignments) != 1 || final.Assignments[0].Job.Name != want || final.More {
				t.Fatalf("final answer: %+v", final)
			}
			if !tc.early {
				resA = w.output(final.Assignments[0])
			}
		})
	}
	w.mustPoll(0, nil, resA)
	if b := e.build(sub.BuildID); b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
}

// TestReadyJobsWakeOtherWorkersSched checks that jobs a result makes
// ready, beyond what the reporting poll takes, reach another worker's
// waiting poll at once (not at the monitor's next round).
func TestReadyJobsWakeOtherWorkersSched(t *testing.T) {
	e := newEnv(t, sqliteBackend, envOpts{mod: func(o *Options) {
		o.LocalityWait = time.Nanosecond
		o.PollTimeout = 10 * time.Second
	}})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	w1.waitMS, w2.waitMS = 8000, 8000
	e.submit(`{"jobs": [
		{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "a", "content": "a"}}]},
		{"name": "b", "source_mode": "none", "deps": ["a"], "commands": [{"argv": ["true", "b"]}]},
		{"name": "c", "source_mode": "none", "deps": ["a"], "commands": [{"argv": ["true", "c"]}]}]}`, api.PriorityTry)
	first := w1.mustPoll(1, nil)
	if len(first.Assignments) != 1 {
		t.Fatalf("first poll: %+v", first.Assignments)
	}
	waiting := make(chan *api.PollResponse, 1)
	go func() {
		r, err := w2.poll(1, nil)
		if err != nil {
			t.Error(err)
		}
		waiting <- r
	}()
	time.Sleep(100 * time.Millisecond) // w2's poll waits
	start := time.Now()
	r1 := w1.mustPoll(1, []string{first.Assignments[0].AttemptID}, w1.output(first.Assignments[0]))
	r2 := <-waiting
	if len(r1.Assignments) != 1 || len(r2.Assignments) != 1 {
		t.Fatalf("reporting poll got %d, waiting poll %d assignments; want 1 each", len(r1.Assignments), len(r2.Assignments))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the waiting worker got its job after %v", d)
	}
}
