package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// TestRandomGraphsEndConsistent runs random DAGs with random failures and
// checks the invariants of the final states: a job succeeded only if all
// its dependencies did, was skipped exactly when some dependency did not
// succeed, and the build's state follows from its jobs.
func TestRandomGraphsEndConsistent(t *testing.T) { forEachBackend(t, testRandomGraphsEndConsistent) }

func testRandomGraphsEndConsistent(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 8 {
		n := 5 + rng.IntN(40)
		var jobs []string
		fail := map[string]bool{}
		for i := range n {
			var deps []string
			for k := range i {
				if rng.IntN(6) == 0 {
					deps = append(deps, fmt.Sprintf(`"j%d"`, k))
				}
			}
			name := fmt.Sprintf("j%d", i)
			if rng.IntN(8) == 0 {
				fail[name] = true
			}
			jobs = append(jobs, fmt.Sprintf(`{"name": %q, "source_mode": "none", "deps": [%s], "commands": [{"argv": ["r%d", "%s"]}]}`, name, strings.Join(deps, ","), round, name))
		}
		sub := e.submit(`{"jobs": [`+strings.Join(jobs, ",")+`]}`, api.PriorityTry)
		w.drain(e, sub.BuildID, fail)
		b := e.build(sub.BuildID)
		byID := map[string]api.JobStatus{}
		for _, j := range b.Jobs {
			byID[j.ID] = j
		}
		anyBad := false
		for _, j := range b.Jobs {
			depsOK := true
			for _, d := range j.Deps {
				if byID[d].State != api.JobSucceeded {
					depsOK = false
				}
			}
			switch j.State {
			case api.JobSucceeded:
				if !depsOK || fail[j.Name] {
					t.Errorf("round %d: %s succeeded with deps ok=%v fail=%v", round, j.Name, depsOK, fail[j.Name])
				}
			case api.JobFailed:
				anyBad = true
				if !fail[j.Name] || !depsOK {
					t.Errorf("round %d: %s failed unexpectedly", round, j.Name)
				}
			case api.JobSkipped:
				anyBad = true
				if depsOK {
					t.Errorf("round %d: %s skipped although its dependencies succeeded", round, j.Name)
				}
			default:
				t.Errorf("round %d: %s ended %s", round, j.Name, j.State)
			}
		}
		if want := map[bool]api.BuildState{true: api.BuildFailed, false: api.BuildSucceeded}[anyBad]; b.State != want {
			t.Errorf("round %d: build %s, want %s", round, b.State, want)
		}
	}
}

// TestRestoreSkipsUnrecordedDependents covers a crash after a job's
// failure was committed but before its dependents' skips were: on restart
// the dependents are skipped and the build finishes.
func TestRestoreSkipsUnrecordedDependents(t *testing.T) {
	forEachBackend(t, testRestoreSkipsUnrecordedDependents)
}

func testRestoreSkipsUnrecordedDependents(t *testing.T, be backend) {
	db := be.newDB(t)
	ctx := context.Background()
	g, err := graph.Parse([]byte(`{"jobs": [
		{"name": "a", "source_mode": "none", "commands": [{"argv": ["a"]}]},
		{"name": "b", "source_mode": "none", "deps": ["a"], "commands": [{"argv": ["b"]}]},
		{"name": "c", "source_mode": "none", "commands": [{"argv": ["c"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(g)
	store := be.openDB(t, db)
	one := 1
	id, err := store.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: gj, State: api.BuildRunning}, []state.Job{
		{JobID: g.Jobs[0].ID, Name: "a", Seq: 0, State: api.JobFailed, ExitCode: &one},
		{JobID: g.Jobs[1].ID, Name: "b", Seq: 1, State: api.JobWaiting},
		{JobID: g.Jobs[2].ID, Name: "c", Seq: 2, State: api.JobQueued},
	})
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	e := newEnv(t, be, envOpts{db: db})
	b := e.build(id)
	if jobByName(b, "b").State != api.JobSkipped || jobByName(b, "c").State != api.JobQueued {
		t.Fatalf("after restore: %+v", b.Jobs)
	}
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	if order := w.drain(e, id, nil); strings.Join(order, ",") != "c" {
		t.Errorf("ran %v, want [c]", order)
	}
	if b := e.build(id); b.State != api.BuildFailed {
		t.Errorf("build %s", b.State)
	}
}

// TestRestoreDerivesJobsWithoutRows covers a crash right after a build was
// created, before its job rows were group-committed: cached jobs are
// found again in the result cache and the others are queued.
func TestRestoreDerivesJobsWithoutRows(t *testing.T) {
	forEachBackend(t, testRestoreDerivesJobsWithoutRows)
}

func testRestoreDerivesJobsWithoutRows(t *testing.T, be backend) {
	dir, db := t.TempDir(), be.newDB(t)
	ctx := context.Background()
	// A first coordinator computes gen's result, then stops.
	e := newEnv(t, be, envOpts{dir: dir, db: db})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "gen", "source_mode": "none", "cacheable": true, "commands": [{"write_file": {"path": "g", "content": "g"}}]}]}`, api.PriorityTry)
	w.drain(e, sub.BuildID, nil)
	e.stop()

	g, err := graph.Parse([]byte(`{"jobs": [
		{"name": "gen", "source_mode": "none", "cacheable": true, "commands": [{"write_file": {"path": "g", "content": "g"}}]},
		{"name": "use", "source_mode": "none", "deps": ["gen"], "commands": [{"argv": ["use"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(g)
	store := be.openDB(t, db)
	id, err := store.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: gj, State: api.BuildRunning}, nil)
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, be, envOpts{dir: dir, db: db})
	b := e.build(id)
	if jobByName(b, "gen").State != api.JobCached || jobByName(b, "use").State != api.JobQueued {
		t.Fatalf("restored jobs: %+v", b.Jobs)
	}
	w = newTestWorker(t, e, "w1", tokenW1, nil)
	if order := w.drain(e, id, nil); strings.Join(order, ",") != "use" {
		t.Errorf("ran %v, want [use]", order)
	}
}

// TestRestoredAttemptLostWithoutItsWorker: after a restart, a running
// attempt waits for its worker to re-register; if it never does, the
// heartbeat timeout loses the attempt and the job runs elsewhere.
func TestRestoredAttemptLostWithoutItsWorker(t *testing.T) {
	forEachBackend(t, testRestoredAttemptLostWithoutItsWorker)
}

func testRestoredAttemptLostWithoutItsWorker(t *testing.T, be backend) {
	dir, db := t.TempDir(), be.newDB(t)
	e := newEnv(t, be, envOpts{dir: dir, db: db})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "j", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "o"}}]}]}`, api.PriorityTry)
	if r := w.mustPoll(1, nil); len(r.Assignments) != 1 {
		t.Fatalf("poll: %+v", r)
	}
	e.stop()

	clock := newFakeClock()
	e = newEnv(t, be, envOpts{dir: dir, db: db, clock: clock})
	if j := jobByName(e.build(sub.BuildID), "j"); j.State != api.JobRunning {
		t.Fatalf("restored job %s, want running (waiting for its worker)", j.State)
	}
	clock.Advance(16 * time.Second)
	e.c.checkTimeouts()
	j := jobByName(e.build(sub.BuildID), "j")
	if j.State != api.JobQueued || len(j.Attempts) != 1 || j.Attempts[0].State != api.AttemptLost {
		t.Fatalf("after the heartbeat timeout: %+v", j)
	}
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	w2.waitMS = 0
	r := w2.mustPoll(1, nil)
	if len(r.Assignments) != 1 {
		t.Fatalf("w2 poll: %+v", r)
	}
	w2.mustPoll(0, nil, w2.output(r.Assignments[0]))
	if b := e.build(sub.BuildID); b.State != api.BuildSucceeded {
		t.Errorf("build %s", b.State)
	}
}
