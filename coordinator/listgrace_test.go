package coordinator

import (
	"slices"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

const threeJobs = `{"jobs": [
	{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "a"}}]},
	{"name": "b", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "b"}}]},
	{"name": "c", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "c"}}]}]}`

// assignAll submits threeJobs and takes all three in one poll.
func assignAll(t *testing.T, e *env, w *testWorker) (*api.SubmitResponse, map[string]api.Assignment) {
	t.Helper()
	sub := e.submit(threeJobs, api.PriorityTry)
	resp := w.mustPoll(3, nil)
	if len(resp.Assignments) != 3 {
		t.Fatalf("%d assignments, want 3", len(resp.Assignments))
	}
	as := map[string]api.Assignment{}
	for _, a := range resp.Assignments {
		as[a.Job.Name] = a
	}
	return sub, as
}

// TestStalePollsKeepNewAttempt: a worker may send two reports built
// before it took the answer that assigned an attempt (several polls in
// flight, early answers overtaking a waiting poll's): polls that do not
// list an attempt assigned moments ago do not lose it, and its result
// counts.
func TestStalePollsKeepNewAttempt(t *testing.T) { forEachBackend(t, testStalePollsKeepNewAttempt) }

func testStalePollsKeepNewAttempt(t *testing.T, be backend) {
	clock := newFakeClock()
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) { o.PollTimeout = time.Hour }})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub, as := assignAll(t, e, w)
	a, b, c := as["a"], as["b"], as["c"]
	// Two reports that do not know of b yet.
	for _, r := range []api.Assignment{a, c} {
		if resp := w.mustPoll(0, nil, w.output(r)); len(resp.Rejected) > 0 {
			t.Fatalf("result of %s rejected", r.Job.Name)
		}
	}
	clock.Advance(listGrace / 2)
	resp := w.mustPoll(0, nil, w.output(b))
	if len(resp.Rejected) > 0 {
		t.Fatalf("result of b rejected: it was lost by polls sent before the worker had it")
	}
	final := e.build(sub.BuildID)
	if final.State != api.BuildSucceeded {
		t.Fatalf("build %s, want succeeded", final.State)
	}
	if n := len(jobByName(final, "b").Attempts); n != 1 {
		t.Errorf("b has %d attempts, want 1", n)
	}
}

// TestForgottenAttemptLost: once listGrace has passed, an attempt
// missing from two consecutive polls is lost and its job runs again.
func TestForgottenAttemptLost(t *testing.T) { forEachBackend(t, testForgottenAttemptLost) }

func testForgottenAttemptLost(t *testing.T, be backend) {
	clock := newFakeClock()
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) { o.PollTimeout = time.Hour }})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub, as := assignAll(t, e, w)
	a, b, c := as["a"], as["b"], as["c"]
	clock.Advance(listGrace + time.Second)
	w.mustPoll(0, nil, w.output(a)) // b missed once
	if resp := w.mustPoll(1, nil, w.output(c)); len(resp.Assignments) != 1 || resp.Assignments[0].Job.Name != "b" {
		t.Fatalf("after two polls without b: %+v, want b again", resp)
	}
	resp := w.mustPoll(0, nil, w.output(b))
	if !slices.Contains(resp.Rejected, b.AttemptID) {
		t.Errorf("result of the lost attempt accepted: %+v", resp)
	}
	if got := e.build(sub.BuildID); len(jobByName(got, "b").Attempts) != 2 || jobByName(got, "b").Attempts[0].State != api.AttemptLost {
		t.Errorf("b: %+v, want a lost attempt and a new one", jobByName(got, "b"))
	}
}

// advanceWhileIdle moves clock on while a poll of worker name waits with
// nothing to do, so that such polls end (as with a real clock) and
// time passes only then; stop ends it.
func advanceWhileIdle(e *env, clock *fakeClock, name string) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if e.pollers(name) > 0 {
				clock.Advance(time.Second)
			}
		}
	}()
	return func() { close(done); <-ended }
}
