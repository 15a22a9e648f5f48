package coordinator

import (
	"context"
	"slices"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// earlyPoll polls with Early set (as workers that understand After do)
// and returns the whole answer.
func (w *testWorker) earlyPoll(t *testing.T, free int, running []string, results ...api.AttemptResult) *api.PollResponse {
	t.Helper()
	resp, err := w.c.PollEarly(context.Background(), api.PollRequest{WorkerID: w.id, FreeSlots: free, Running: running, Results: results, WaitMS: 1500}, func(*api.PollResponse) {})
	if err != nil {
		t.Fatalf("poll %s: %v", w.name, err)
	}
	return resp
}

const chainABC = `{"jobs": [
	{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "a", "content": "a"}}]},
	{"name": "b", "source_mode": "none", "deps": ["a"], "commands": [{"write_file": {"path": "b", "content": "b"}}]},
	{"name": "c", "source_mode": "none", "deps": ["b"], "commands": [{"write_file": {"path": "c", "content": "c"}}]}]}`

func byName(as []api.Assignment) map[string]api.Assignment {
	m := map[string]api.Assignment{}
	for _, a := range as {
		m[a.Job.Name] = a
	}
	return m
}

// TestPipelinedChainSched runs a chain on one worker that polls with
// Early: each job's successor is handed out while the job runs, waiting
// for it (After), and becomes an ordinary running attempt when its
// result arrives.
func TestPipelinedChainSched(t *testing.T) {
	e := newEnv(t, sqliteBackend, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(chainABC, api.PriorityTry)

	r := byName(w.earlyPoll(t, 2, nil).Assignments)
	a, b := r["a"], r["b"]
	if a.AttemptID == "" || b.AttemptID == "" || len(r) != 2 {
		t.Fatalf("first answer: %+v", r)
	}
	if len(a.After) != 0 || !slices.Equal(b.After, []string{a.AttemptID}) {
		t.Fatalf("after: a %v, b %v", a.After, b.After)
	}
	if len(b.Deps) != 1 || b.Deps[0].JobID != sub.Jobs["a"] || b.Deps[0].Digest != "" {
		t.Fatalf("b's deps before a finished: %+v", b.Deps)
	}
	// A pending attempt is not shown: b waits, without attempts.
	if jb := jobByName(e.build(sub.BuildID), "b"); jb.State != api.JobWaiting || len(jb.Attempts) != 0 {
		t.Fatalf("b before a's result: %s, %d attempts", jb.State, len(jb.Attempts))
	}

	// a succeeds; b, started by the worker at once, is running under
	// its pipelined attempt; c is handed out to wait for b.
	r = byName(w.earlyPoll(t, 1, []string{b.AttemptID}, w.output(a)).Assignments)
	c, ok := r["c"]
	if !ok || len(r) != 1 || !slices.Equal(c.After, []string{b.AttemptID}) {
		t.Fatalf("answer to a's result: %+v", r)
	}
	jb := jobByName(e.build(sub.BuildID), "b")
	if jb.State != api.JobRunning || len(jb.Attempts) != 1 || jb.Attempts[0].ID != b.AttemptID {
		t.Fatalf("b after a's result: %s, attempts %+v", jb.State, jb.Attempts)
	}

	w.earlyPoll(t, 1, []string{c.AttemptID}, w.output(b))
	w.earlyPoll(t, 2, nil, w.output(c))
	succeededOnce(t, e.build(sub.BuildID))
}

// TestPipelinedDroppedSched checks that a pipelined attempt goes when
// what it waits for does not succeed: a failed dependency skips the job
// (and the worker is told to drop the attempt); a lost dependency
// attempt leaves the job waiting for the dependency's next attempt.
func TestPipelinedDroppedSched(t *testing.T) {
	t.Run("failed", func(t *testing.T) {
		e := newEnv(t, sqliteBackend, envOpts{})
		w := newTestWorker(t, e, "w1", tokenW1, nil)
		sub := e.submit(chainABC, api.PriorityTry)
		r := byName(w.earlyPoll(t, 2, nil).Assignments)
		a, b := r["a"], r["b"]
		resp := w.earlyPoll(t, 1, []string{b.AttemptID}, failed(a, 1))
		if !slices.Contains(resp.Cancel, b.AttemptID) {
			t.Errorf("b's pipelined attempt not cancelled: %+v", resp)
		}
		if len(resp.Assignments) != 0 {
			t.Errorf("assignments after a failed: %+v", resp.Assignments)
		}
		bs := e.build(sub.BuildID)
		if bs.State != api.BuildFailed || jobByName(bs, "b").State != api.JobSkipped || len(jobByName(bs, "b").Attempts) != 0 {
			t.Fatalf("build %s, b %+v", bs.State, jobByName(bs, "b"))
		}
	})
	t.Run("lost", func(t *testing.T) {
		// Fake time passes only while a poll waits idle, so that the
		// assignments are older than listGrace when polls miss them.
		clock := newFakeClock()
		e := newEnv(t, sqliteBackend, envOpts{clock: clock})
		w := newTestWorker(t, e, "w1", tokenW1, nil)
		defer advanceWhileIdle(e, clock, "w1")()
		sub := e.submit(chainABC, api.PriorityTry)
		b := byName(w.earlyPoll(t, 2, nil).Assignments)["b"]
		clock.Advance(listGrace)
		// The worker forgets a (two polls without it): a is lost and
		// requeued; b's attempt, which waited for it, is dropped.
		var cancelled []string
		for range 2 {
			cancelled = append(cancelled, w.earlyPoll(t, 0, []string{b.AttemptID}).Cancel...)
		}
		if !slices.Contains(cancelled, b.AttemptID) {
			t.Errorf("b's pipelined attempt not cancelled after a was lost: %v", cancelled)
		}
		bs := e.build(sub.BuildID)
		if ja := jobByName(bs, "a"); ja.State != api.JobQueued || len(ja.Attempts) != 1 || ja.Attempts[0].State != api.AttemptLost {
			t.Fatalf("a after it was lost: %+v", ja)
		}
		if jb := jobByName(bs, "b"); jb.State != api.JobWaiting || len(jb.Attempts) != 0 {
			t.Fatalf("b after a was lost: %+v", jb)
		}
		// The build still completes, b with a single attempt.
		w.drain(e, sub.BuildID, nil)
		bs = e.build(sub.BuildID)
		if bs.State != api.BuildSucceeded || len(jobByName(bs, "b").Attempts) != 1 {
			t.Fatalf("build %s, b %+v", bs.State, jobByName(bs, "b"))
		}
	})
	t.Run("given back", func(t *testing.T) {
		e := newEnv(t, sqliteBackend, envOpts{})
		w := newTestWorker(t, e, "w1", tokenW1, nil)
		sub := e.submit(chainABC, api.PriorityTry)
		r := byName(w.earlyPoll(t, 2, nil).Assignments)
		a, b := r["a"], r["b"]
		// A worker shutting down gives b back before it could start.
		w.earlyPoll(t, 0, []string{a.AttemptID}, api.AttemptResult{AttemptID: b.AttemptID, State: api.AttemptError, Error: "worker shutting down"})
		resp := w.mustPoll(0, nil, w.output(a))
		if len(resp.Assignments) != 0 {
			t.Fatalf("assignments: %+v", resp.Assignments)
		}
		if jb := jobByName(e.build(sub.BuildID), "b"); jb.State != api.JobQueued || len(jb.Attempts) != 0 {
			t.Fatalf("b after it was given back and a succeeded: %+v", jb)
		}
	})
	t.Run("no early", func(t *testing.T) {
		e := newEnv(t, sqliteBackend, envOpts{})
		w := newTestWorker(t, e, "w1", tokenW1, nil)
		e.submit(chainABC, api.PriorityTry)
		// A worker that does not poll with Early never gets After.
		resp := w.mustPoll(2, nil)
		if len(resp.Assignments) != 1 || resp.Assignments[0].Job.Name != "a" {
			t.Fatalf("plain poll: %+v", resp.Assignments)
		}
	})
}
