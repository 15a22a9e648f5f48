package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// prefetchPoll polls as a worker that prefetches: Early, up to prefetch
// assignments beyond free, reporting started prefetched attempts.
func (w *testWorker) prefetchPoll(t *testing.T, free, prefetch int, running, started []string, results ...api.AttemptResult) *api.PollResponse {
	t.Helper()
	req := api.PollRequest{WorkerID: w.id, FreeSlots: free, Prefetch: prefetch, Running: running, Results: results, WaitMS: 300}
	for _, id := range started {
		req.Started = append(req.Started, api.StartedAttempt{AttemptID: id})
	}
	resp, err := w.c.PollEarly(context.Background(), req, func(*api.PollResponse) {})
	if err != nil {
		t.Fatalf("poll %s: %v", w.name, err)
	}
	return resp
}

// wideGraph is n independent jobs writing one file each.
func wideGraph(prefix string, n int) string {
	var jobs []string
	for i := range n {
		jobs = append(jobs, fmt.Sprintf(`{"name": "%s%d", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "%s%d"}}]}`, prefix, i, prefix, i))
	}
	return `{"jobs": [` + strings.Join(jobs, ",") + `]}`
}

// split returns the assignments that are prefetched and those that are not.
func split(as []api.Assignment) (prefetched, running []api.Assignment) {
	for _, a := range as {
		if a.Prefetched {
			prefetched = append(prefetched, a)
		} else {
			running = append(running, a)
		}
	}
	return prefetched, running
}

func ids(as []api.Assignment) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.AttemptID)
	}
	return out
}

func attemptsOf(t *testing.T, e *env, buildID int64, name string) (api.JobState, int) {
	t.Helper()
	j := jobByName(e.build(buildID), name)
	return j.State, len(j.Attempts)
}

// TestPrefetchedAttempts follows prefetched attempts through their
// lifecycle: handed out beyond the free slots, invisible until started,
// started by the worker's report or by their result, given back
// unstarted without using an attempt, and cancelled when the worker
// registers again without having started them.
func TestPrefetchedAttempts(t *testing.T) { forEachBackend(t, testPrefetchedAttempts) }

func testPrefetchedAttempts(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(wideGraph("j", 7), api.PriorityTry)

	pre, run := split(w.prefetchPoll(t, 2, 4, nil, nil).Assignments)
	if len(run) != 2 || len(pre) != 4 {
		t.Fatalf("2 free slots, prefetch 4: %d running and %d prefetched assignments", len(run), len(pre))
	}
	b := e.build(sub.BuildID)
	if b.Counts[api.JobRunning] != 2 || b.Counts[api.JobQueued] != 5 {
		t.Fatalf("after the first poll: %v", b.Counts)
	}
	for _, a := range pre {
		if st, n := attemptsOf(t, e, sub.BuildID, a.Job.Name); st != api.JobQueued || n != 0 {
			t.Fatalf("prefetched %s: %s with %d attempts", a.Job.Name, st, n)
		}
	}
	all := append(ids(run), ids(pre)...)

	// pre[0] started and reported; pre[1]'s result comes without a start.
	w.prefetchPoll(t, 0, 0, all, []string{pre[0].AttemptID}, w.output(run[0]), w.output(run[1]))
	if st, n := attemptsOf(t, e, sub.BuildID, pre[0].Job.Name); st != api.JobRunning || n != 1 {
		t.Fatalf("started prefetched attempt: %s, %d attempts", st, n)
	}
	resp := w.prefetchPoll(t, 0, 0, all[2:], nil, w.output(pre[1]))
	if len(resp.Rejected) != 0 {
		t.Fatalf("result of a prefetched attempt rejected: %+v", resp)
	}
	if st, n := attemptsOf(t, e, sub.BuildID, pre[1].Job.Name); st != api.JobSucceeded || n != 1 {
		t.Fatalf("prefetched attempt reported without its start: %s, %d attempts", st, n)
	}
	// pre[2] is given back unstarted (as a draining worker does): its
	// job is queued again, with no attempt used.
	w.prefetchPoll(t, 0, 0, []string{pre[0].AttemptID, pre[3].AttemptID}, nil,
		api.AttemptResult{AttemptID: pre[2].AttemptID, State: api.AttemptError, Error: "worker shutting down"})
	if st, n := attemptsOf(t, e, sub.BuildID, pre[2].Job.Name); st != api.JobQueued || n != 0 {
		t.Fatalf("prefetched attempt given back: %s, %d attempts", st, n)
	}
	// The worker registers again running pre[0] and listing pre[3]
	// (prefetched, not started as far as the coordinator knows): pre[3]
	// is cancelled and its job queued again.
	w.register([]string{pre[0].AttemptID, pre[3].AttemptID})
	resp = w.prefetchPoll(t, 0, 0, []string{pre[0].AttemptID, pre[3].AttemptID}, nil)
	if !slices.Contains(resp.Cancel, pre[3].AttemptID) || slices.Contains(resp.Cancel, pre[0].AttemptID) {
		t.Fatalf("after registering again: cancel %v, want %s (not %s)", resp.Cancel, pre[3].AttemptID, pre[0].AttemptID)
	}
	if st, n := attemptsOf(t, e, sub.BuildID, pre[3].Job.Name); st != api.JobQueued || n != 0 {
		t.Fatalf("prefetched attempt of the old session: %s, %d attempts", st, n)
	}
	w.prefetchPoll(t, 0, 0, nil, nil, w.output(pre[0]))

	// A log chunk of a prefetched attempt implies its start (the
	// worker reports starts with its next poll; a 409 would kill the job).
	pre, _ = split(w.prefetchPoll(t, 0, 1, nil, nil).Assignments)
	if len(pre) != 1 {
		t.Fatalf("prefetch 1: %d prefetched", len(pre))
	}
	if _, err := w.c.AppendLog(context.Background(), pre[0].AttemptID, 0, []byte("hello\n")); err != nil {
		t.Fatalf("log of a prefetched attempt: %v", err)
	}
	if st, n := attemptsOf(t, e, sub.BuildID, pre[0].Job.Name); st != api.JobRunning || n != 1 {
		t.Fatalf("prefetched attempt after a log chunk: %s, %d attempts", st, n)
	}
	w.prefetchPoll(t, 0, 0, nil, []string{pre[0].AttemptID}, w.output(pre[0]))
	w.drain(e, sub.BuildID, nil)
	succeededOnce(t, e.build(sub.BuildID))
}

// succeededOnce checks that b succeeded with one attempt per job.
func succeededOnce(t *testing.T, b *api.Build) {
	t.Helper()
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	for _, j := range b.Jobs {
		if len(j.Attempts) != 1 {
			t.Errorf("%s: %d attempts, want 1", j.Name, len(j.Attempts))
		}
	}
}

// TestPrefetchTakenBack covers the ways the scheduler takes prefetched
// attempts back from a worker that has not started them: another worker
// with a free slot and nothing else to run, a job of a higher priority,
// a cancelled build; and that nothing is prefetched while other workers
// have free slots for the ready jobs.
func TestPrefetchTakenBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		// takeBack does something after w1 holds prefetched attempts
		// of build 1 (w2 is registered, with free slots) and returns
		// the attempts w1 must be told to cancel (run is the one it
		// runs).
		takeBack func(t *testing.T, e *env, w2 *testWorker, buildID int64, run, pre []api.Assignment) []string
	}{
		{"idle worker takes one", func(t *testing.T, e *env, w2 *testWorker, _ int64, _, pre []api.Assignment) []string {
			resp := w2.prefetchPoll(t, 1, 0, nil, nil)
			if len(resp.Assignments) != 1 || resp.Assignments[0].Prefetched {
				t.Fatalf("idle w2 got %+v", resp.Assignments)
			}
			got := resp.Assignments[0].Job.Name
			for _, a := range pre {
				if a.Job.Name == got {
					return []string{a.AttemptID}
				}
			}
			t.Fatalf("w2 got %s, not a job w1 held", got)
			return nil
		}},
		{"higher priority", func(t *testing.T, e *env, _ *testWorker, _ int64, _, pre []api.Assignment) []string {
			e.submit(wideGraph("urgent", 1), api.PriorityTry)
			return ids(pre)
		}},
		{"build cancelled", func(t *testing.T, e *env, _ *testWorker, buildID int64, run, pre []api.Assignment) []string {
			if err := e.client.Cancel(context.Background(), buildID); err != nil {
				t.Fatal(err)
			}
			return append(ids(run), ids(pre)...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sqliteBackend, envOpts{})
			w1 := newTestWorker(t, e, "w1", tokenW1, nil)
			sub := e.submit(wideGraph("p", 3), api.PriorityPeriodic)
			pre, run := split(w1.prefetchPoll(t, 1, 4, nil, nil).Assignments)
			if len(run) != 1 || len(pre) != 2 {
				t.Fatalf("w1: %d running and %d prefetched", len(run), len(pre))
			}
			w2 := newTestWorker(t, e, "w2", tokenW2, nil)
			want := tc.takeBack(t, e, w2, sub.BuildID, run, pre)
			resp := w1.prefetchPoll(t, 0, 0, append(ids(run), ids(pre)...), nil)
			slices.Sort(resp.Cancel)
			slices.Sort(want)
			if !slices.Equal(resp.Cancel, want) {
				t.Fatalf("w1 told to cancel %v, want %v", resp.Cancel, want)
			}
			for _, a := range pre {
				if st, n := attemptsOf(t, e, sub.BuildID, a.Job.Name); n != 0 && st != api.JobRunning {
					t.Errorf("%s: %s with %d attempts", a.Job.Name, st, n)
				}
			}
		})
	}

	t.Run("worker that does not prefetch", func(t *testing.T) {
		e := newEnv(t, sqliteBackend, envOpts{})
		w1 := newTestWorker(t, e, "w1", tokenW1, nil)
		e.submit(wideGraph("p", 10), api.PriorityTry)
		as := w1.earlyPoll(t, 1, nil).Assignments
		if len(as) != 1 || as[0].Prefetched {
			t.Fatalf("poll without prefetch: %+v", as)
		}
	})

	t.Run("fair across builds", func(t *testing.T) {
		// Prefetched jobs count as running for fairness: one poll's
		// prefetched jobs come from both builds of equal priority.
		e := newEnv(t, sqliteBackend, envOpts{})
		w1 := newTestWorker(t, e, "w1", tokenW1, nil)
		a := e.submit(wideGraph("a", 10), api.PriorityTry)
		b := e.submit(wideGraph("b", 10), api.PriorityTry)
		pre, _ := split(w1.prefetchPoll(t, 0, 4, nil, nil).Assignments)
		per := map[int64]int{}
		for _, as := range pre {
			per[as.BuildID]++
		}
		if len(pre) != 4 || per[a.BuildID] != 2 || per[b.BuildID] != 2 {
			t.Fatalf("prefetched per build: %v (%d in all), want 2 of each", per, len(pre))
		}
	})

	t.Run("others have free slots", func(t *testing.T) {
		e := newEnv(t, sqliteBackend, envOpts{})
		w1 := newTestWorker(t, e, "w1", tokenW1, nil)
		newTestWorker(t, e, "w2", tokenW2, nil) // 64 free slots
		e.submit(wideGraph("p", 10), api.PriorityTry)
		pre, run := split(w1.prefetchPoll(t, 1, 4, nil, nil).Assignments)
		if len(run) != 1 || len(pre) != 0 {
			t.Fatalf("w1: %d running and %d prefetched, want 1 and 0", len(run), len(pre))
		}
	})
}

// TestPrefetchStolenRunRefused: a prefetched attempt taken back by an
// idle worker while its first worker starts it (the take-back crosses
// the start): the first worker's log chunks and result are refused, its
// run is recorded as an abandoned attempt (see abandoned_test.go), and
// the job's result and log are the other worker's.
func TestPrefetchStolenRunRefused(t *testing.T) { forEachBackend(t, testPrefetchStolenRunRefused) }

func testPrefetchStolenRunRefused(t *testing.T, be backend) {
	ctx := context.Background()
	e := newEnv(t, be, envOpts{})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(wideGraph("p", 3), api.PriorityTry)
	pre, run := split(w1.prefetchPoll(t, 1, 4, nil, nil).Assignments)
	if len(run) != 1 || len(pre) != 2 {
		t.Fatalf("w1: %d running and %d prefetched", len(run), len(pre))
	}
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	got := w2.prefetchPoll(t, 1, 0, nil, nil).Assignments
	if len(got) != 1 {
		t.Fatalf("idle w2 got %+v", got)
	}
	other := got[0]
	var stolen, kept api.Assignment
	for _, a := range pre {
		if a.Job.ID == other.Job.ID {
			stolen = a
		} else {
			kept = a
		}
	}
	if stolen.AttemptID == "" {
		t.Fatalf("w2 got %s, not a job w1 held", other.Job.Name)
	}

	// w1 ran it anyway: its log, start and result are refused.
	if _, err := w1.c.AppendLog(ctx, stolen.AttemptID, 0, []byte("w1 ran it\n")); !errors.Is(err, api.ErrConflict) {
		t.Errorf("log chunk of the stolen attempt: %v, want ErrConflict", err)
	}
	resp := w1.prefetchPoll(t, 0, 0, []string{run[0].AttemptID, stolen.AttemptID, kept.AttemptID},
		[]string{stolen.AttemptID, kept.AttemptID}, w1.output(stolen), w1.output(run[0]), w1.output(kept))
	if !slices.Equal(resp.Rejected, []string{stolen.AttemptID}) {
		t.Errorf("w1's results rejected: %v, want only the stolen attempt's", resp.Rejected)
	}
	if !slices.Contains(resp.Cancel, stolen.AttemptID) {
		t.Errorf("w1 not told to cancel the stolen attempt: %v", resp.Cancel)
	}
	var m dto.Metric
	if err := e.c.m.prefetched.WithLabelValues("started_after_take_back").Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("starts after a take-back counted %v, want 1", n)
	}
	if _, err := w2.c.AppendLog(ctx, other.AttemptID, 0, []byte("w2 ran it\n")); err != nil {
		t.Fatal(err)
	}
	if resp := w2.prefetchPoll(t, 0, 0, nil, nil, w2.output(other)); len(resp.Rejected) != 0 {
		t.Fatalf("w2's result rejected: %+v", resp)
	}
	b := e.build(sub.BuildID)
	j := jobByName(b, stolen.Job.Name)
	if b.State != api.BuildSucceeded || len(j.Attempts) != 2 {
		t.Fatalf("build %s, stolen job's attempts %+v; want succeeded, w1's abandoned and w2's", b.State, j.Attempts)
	}
	for _, a := range j.Attempts {
		if a.ID == stolen.AttemptID && (a.State != api.AttemptAbandoned || a.Worker != "w1") ||
			a.ID == other.AttemptID && (a.State != api.AttemptSucceeded || a.Worker != "w2") {
			t.Errorf("stolen job's attempt %+v", a)
		}
	}
	if l := api.LatestAttempt(j.Attempts); l.ID != other.AttemptID {
		t.Errorf("latest attempt of the stolen job %s, want w2's %s", l.ID, other.AttemptID)
	}
	rc, err := e.client.JobLog(ctx, stolen.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if log, _ := io.ReadAll(rc); string(log) != "w2 ran it\n" {
		t.Errorf("stolen job's log %q, want w2's", log)
	}
}

// TestPrefetchedTimeout: a prefetched attempt's timeout runs from when
// its worker started it (ago_ms before the poll that says so), not from
// when it was handed out: held unstarted past its timeout, it is not
// timed out, and once started it is, its timeout and grace later.
func TestPrefetchedTimeout(t *testing.T) { forEachBackend(t, testPrefetchedTimeout) }

func testPrefetchedTimeout(t *testing.T, be backend) {
	clock := newFakeClock()
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) { o.HeartbeatTimeout = time.Hour }})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [
		{"name": "a", "source_mode": "none", "timeout": "1m", "commands": [{"argv": ["sleep", "1000"]}]},
		{"name": "b", "source_mode": "none", "timeout": "1m", "commands": [{"argv": ["sleep", "1001"]}]}]}`, api.PriorityTry)
	pre, run := split(w.prefetchPoll(t, 1, 4, nil, nil).Assignments)
	if len(run) != 1 || len(pre) != 1 {
		t.Fatalf("%d running and %d prefetched, want 1 and 1", len(run), len(pre))
	}
	p := pre[0]
	clock.Advance(100 * time.Second) // past 1m and its 30s grace
	e.c.checkTimeouts()
	if st, n := attemptsOf(t, e, sub.BuildID, p.Job.Name); st != api.JobQueued || n != 0 {
		t.Fatalf("prefetched %s held past its timeout: %s with %d attempts, want queued with none", p.Job.Name, st, n)
	}
	// Started 20s before this poll.
	resp, err := w.c.PollEarly(context.Background(), api.PollRequest{WorkerID: w.id, Running: []string{run[0].AttemptID, p.AttemptID},
		Started: []api.StartedAttempt{{AttemptID: p.AttemptID, AgoMS: 20_000}}, WaitMS: 1}, func(*api.PollResponse) {})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(resp.Cancel, p.AttemptID) {
		t.Fatalf("started prefetched attempt cancelled: %+v", resp)
	}
	j := jobByName(e.build(sub.BuildID), p.Job.Name)
	if j.State != api.JobRunning || len(j.Attempts) != 1 || !j.Attempts[0].Started.Equal(clock.Now().Add(-20*time.Second)) {
		t.Fatalf("%s after its start: %s, attempts %+v (want started at %v)", j.Name, j.State, j.Attempts, clock.Now().Add(-20*time.Second))
	}
	clock.Advance(65 * time.Second) // 85s since the start
	e.c.checkTimeouts()
	if st, _ := attemptsOf(t, e, sub.BuildID, p.Job.Name); st != api.JobRunning {
		t.Fatalf("%s %s 85s after its start, within 1m and 30s", p.Job.Name, st)
	}
	clock.Advance(10 * time.Second)
	e.c.checkTimeouts()
	j = jobByName(e.build(sub.BuildID), p.Job.Name)
	if j.State != api.JobFailed || j.Attempts[0].State != api.AttemptTimedOut {
		t.Errorf("%s 95s after its start: %s, attempts %+v; want timed out", j.Name, j.State, j.Attempts)
	}
}

// TestPrefetchedHigherPriorityTaken: a worker with a free slot takes a
// job of a higher priority that another worker holds prefetched rather
// than start a ready job of a lower priority (try > periodic holds
// across workers, not only within one worker's queue).
func TestPrefetchedHigherPriorityTaken(t *testing.T) {
	e := newEnv(t, sqliteBackend, envOpts{})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	// w2 has one slot, free: w1 may prefetch all but one ready job.
	c2, err := api.NewClient(e.url, tokenW2, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c2.Register(context.Background(), api.RegisterRequest{Name: "w2", Slots: 1, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w2 := &testWorker{t: t, c: c2, name: "w2", id: reg.WorkerID}
	e.submit(wideGraph("p", 3), api.PriorityPeriodic)
	try := e.submit(wideGraph("t", 1), api.PriorityTry)
	pre, _ := split(w1.prefetchPoll(t, 0, 4, nil, nil).Assignments)
	if len(pre) != 3 || pre[0].BuildID != try.BuildID {
		t.Fatalf("w1 prefetched %d jobs, first of build %d; want 3, first the try build's (%d)", len(pre), pre[0].BuildID, try.BuildID)
	}
	got := w2.prefetchPoll(t, 1, 0, nil, nil).Assignments
	if len(got) != 1 || got[0].BuildID != try.BuildID {
		t.Fatalf("w2 with a free slot got %+v, want the try build's job", got)
	}
	resp := w1.prefetchPoll(t, 0, 0, ids(pre), nil)
	if !slices.Equal(resp.Cancel, []string{pre[0].AttemptID}) {
		t.Errorf("w1 told to cancel %v, want the try job's attempt %s", resp.Cancel, pre[0].AttemptID)
	}
}

// idlePoll starts a waiting poll of w with one free slot and nothing
// else (an idle worker) and returns where its answer arrives.
func (w *testWorker) idlePoll(t *testing.T) <-chan *api.PollResponse {
	polled := make(chan *api.PollResponse, 1)
	go func() {
		req := api.PollRequest{WorkerID: w.id, FreeSlots: 1, WaitMS: 60_000}
		resp, err := w.c.PollEarly(context.Background(), req, func(*api.PollResponse) {})
		if err != nil {
			t.Errorf("poll %s: %v", w.name, err)
		}
		polled <- resp
	}()
	return polled
}

// TestIdleStealWaitsForAge: a worker with nothing to run takes another
// worker's prefetched attempt only once that worker has held it for
// stealAge (younger ones are being started: taking them back ran jobs
// twice), its waiting poll answering then; and it takes the one handed
// out last, which its worker would start last.
func TestIdleStealWaitsForAge(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, sqliteBackend, envOpts{clock: clk})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	e.submit(wideGraph("p", 3), api.PriorityTry)
	pre, run := split(w1.prefetchPoll(t, 1, 4, nil, nil).Assignments)
	if len(run) != 1 || len(pre) != 2 {
		t.Fatalf("w1: %d running and %d prefetched, want 1 and 2", len(run), len(pre))
	}
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	polled := w2.idlePoll(t)
	select {
	case resp := <-polled:
		t.Fatalf("idle w2 answered before w1 held its prefetched attempts for %v: %+v", stealAge, resp)
	case <-time.After(300 * time.Millisecond):
	}
	clk.Advance(stealAge / 2)
	select {
	case resp := <-polled:
		t.Fatalf("idle w2 answered after %v: %+v", stealAge/2, resp)
	case <-time.After(300 * time.Millisecond):
	}
	clk.Advance(stealAge / 2)
	var resp *api.PollResponse
	select {
	case resp = <-polled:
	case <-time.After(10 * time.Second):
		t.Fatalf("idle w2 got nothing once w1 had held its prefetched attempts for %v", stealAge)
	}
	newest := pre[len(pre)-1]
	if resp == nil || len(resp.Assignments) != 1 || resp.Assignments[0].Job.Name != newest.Job.Name {
		t.Fatalf("idle w2 got %+v, want %s (w1's newest prefetched)", resp, newest.Job.Name)
	}
	cancel := w1.prefetchPoll(t, 0, 0, append(ids(run), ids(pre)...), nil).Cancel
	if !slices.Equal(cancel, []string{newest.AttemptID}) {
		t.Errorf("w1 told to cancel %v, want %s", cancel, newest.AttemptID)
	}
}

// TestIdleStealRelease: an idle worker's steal of a prefetched attempt
// whose holder has started it already, its start report processed after
// the coordinator decided to steal (a coordinator slow to process
// reports). A holder that answers release requests is asked to release
// the attempt first: its start report makes the attempt run there,
// once, and the idle worker gets the next attempt it releases
// unstarted instead; no run is abandoned. A holder of the previous
// protocol has the attempt taken back at once, and its run is recorded
// as abandoned (today's behaviour for old workers).
func TestIdleStealRelease(t *testing.T) {
	forEachHolder(t, func(t *testing.T, releases bool) {
		clk := newFakeClock()
		e := newEnv(t, sqliteBackend, envOpts{clock: clk})
		w1 := newTestWorker(t, e, "w1", tokenW1, nil)
		sub := e.submit(wideGraph("p", 3), api.PriorityTry)
		poll1 := func(req api.PollRequest) *api.PollResponse {
			t.Helper()
			req.WorkerID, req.AnswersRelease, req.WaitMS = w1.id, releases, 60_000
			resp, err := w1.c.PollEarly(context.Background(), req, func(*api.PollResponse) {})
			if err != nil {
				t.Fatalf("poll w1: %v", err)
			}
			return resp
		}
		pre, run := split(poll1(api.PollRequest{FreeSlots: 1, Prefetch: 4}).Assignments)
		if len(run) != 1 || len(pre) != 2 {
			t.Fatalf("w1: %d running and %d prefetched, want 1 and 2", len(run), len(pre))
		}
		older, newest := pre[0], pre[1]
		w2 := newTestWorker(t, e, "w2", tokenW2, nil)
		polled := w2.idlePoll(t)
		clk.Advance(stealAge)
		all := append(ids(run), ids(pre)...)
		resp := stealCrossingStart(t, releases, poll1, polled, all, older, newest, func() {
			if st, n := attemptsOf(t, e, sub.BuildID, older.Job.Name); st != api.JobQueued || n != 0 {
				t.Fatalf("%s being released: %s with %d attempts", older.Job.Name, st, n)
			}
		})
		want := older // released by w1
		if !releases {
			want = newest
		}
		if len(resp.Assignments) != 1 || resp.Assignments[0].Job.Name != want.Job.Name {
			t.Fatalf("idle w2 got %+v, want %s", resp.Assignments, want.Job.Name)
		}
		got := resp.Assignments[0]
		// Everything finishes: w1 runs the rest.
		finishHolder(t, releases, w1, poll1, append(run, pre...), got, newest)
		if resp := w2.prefetchPoll(t, 0, 0, nil, nil, w2.output(got)); len(resp.Rejected) != 0 {
			t.Fatalf("w2's result rejected: %+v", resp)
		}
		checkRanOnce(t, e, releases, sub.BuildID)
	})
}

// prioritySteal is the start of a steal of a higher priority: w1 (one
// slot; answering release requests if releases) runs one job of the
// try build (run) and holds its other two prefetched (pre, the newest
// last); then the periodic build's job p0 becomes ready, and w2 (one
// slot), polling with Prefetch and AnswersRelease, has only p0 to run
// (its poll's answer arrives on polled).
type prioritySteal struct {
	e             *env
	clk           *fakeClock
	w1, w2        *testWorker
	poll          func(w *testWorker, req api.PollRequest) *api.PollResponse
	poll1         func(req api.PollRequest) *api.PollResponse
	try, periodic *api.SubmitResponse
	run, pre      []api.Assignment
	polled        <-chan *api.PollResponse
}

func startPrioritySteal(t *testing.T, releases bool) *prioritySteal {
	t.Helper()
	ps := &prioritySteal{clk: newFakeClock()}
	ps.e = newEnv(t, sqliteBackend, envOpts{clock: ps.clk})
	// One slot each: the other worker's free slots do not keep the
	// work from being prefetched.
	oneSlot := func(name, token string) *testWorker {
		c, err := api.NewClient(ps.e.url, token, nil)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := c.Register(context.Background(), api.RegisterRequest{Name: name, Slots: 1, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return &testWorker{t: t, c: c, name: name, id: reg.WorkerID}
	}
	ps.poll = func(w *testWorker, req api.PollRequest) *api.PollResponse {
		t.Helper()
		req.WorkerID, req.WaitMS, req.Early = w.id, 60_000, true
		resp, err := w.c.PollEarly(context.Background(), req, func(*api.PollResponse) {})
		if err != nil {
			t.Fatalf("poll %s: %v", w.name, err)
		}
		return resp
	}
	ps.w1 = oneSlot("w1", tokenW1)
	ps.poll1 = func(req api.PollRequest) *api.PollResponse {
		t.Helper()
		req.AnswersRelease = releases
		return ps.poll(ps.w1, req)
	}
	ps.try = ps.e.submit(wideGraph("t", 3), api.PriorityTry)
	ps.pre, ps.run = split(ps.poll1(api.PollRequest{FreeSlots: 1, Prefetch: 4}).Assignments)
	if len(ps.run) != 1 || len(ps.pre) != 2 {
		t.Fatalf("w1: %d running and %d prefetched, want 1 and 2", len(ps.run), len(ps.pre))
	}
	ps.periodic = ps.e.submit(wideGraph("p", 1), api.PriorityPeriodic)
	ps.w2 = oneSlot("w2", tokenW2)
	polled := make(chan *api.PollResponse, 1)
	go func() {
		resp, err := ps.w2.c.PollEarly(context.Background(), api.PollRequest{WorkerID: ps.w2.id, FreeSlots: 1, Prefetch: 4, AnswersRelease: true, Early: true, WaitMS: 60_000}, func(*api.PollResponse) {})
		if err != nil {
			t.Errorf("poll w2: %v", err)
		}
		polled <- resp
	}()
	ps.polled = polled
	return ps
}

// TestHigherPriorityStealUnanswered: a worker with only a job of a lower
// priority to run, which asked a holder to release an attempt of a
// higher priority, keeps its slot empty for the answer for
// releaseRetry at most; a holder that does not answer by then (stuck,
// or cut off) is not waited for: the worker's poll takes its job, and
// nothing more is asked meanwhile.
func TestHigherPriorityStealUnanswered(t *testing.T) {
	ps := startPrioritySteal(t, true)
	newest := ps.pre[1]
	waitFor(t, func() bool { return ps.e.pollers("w2") > 0 })
	ps.clk.Advance(releaseRetry - time.Millisecond)
	select {
	case resp := <-ps.polled:
		t.Fatalf("w2 answered before releaseRetry: %+v", resp)
	case <-time.After(200 * time.Millisecond):
	}
	ps.clk.Advance(time.Millisecond)
	var resp *api.PollResponse
	select {
	case resp = <-ps.polled:
	case <-time.After(10 * time.Second):
		t.Fatal("w2 still waits for an unanswered release")
	}
	if _, run := split(resp.Assignments); len(run) != 1 || run[0].Job.Name != "p0" {
		t.Fatalf("w2 got %+v, want p0 to run", resp.Assignments)
	}
	// w1 comes back: only the newest was asked for, and nothing is
	// cancelled.
	r := ps.poll1(api.PollRequest{Running: append(ids(ps.run), ids(ps.pre)...)})
	if !slices.Equal(r.Release, []string{newest.AttemptID}) || len(r.Cancel) != 0 {
		t.Errorf("w1 asked to release %v and cancel %v, want release %s", r.Release, r.Cancel, newest.AttemptID)
	}
}

// forEachHolder runs f for a holder of prefetched attempts that
// answers release requests and for one of the previous protocol.
func forEachHolder(t *testing.T, f func(t *testing.T, releases bool)) {
	t.Run("holder answers releases", func(t *testing.T) { f(t, true) })
	t.Run("old holder", func(t *testing.T) { f(t, false) })
}

// stealCrossingStart plays the holder w1 (poll1: its polls, which
// wait) of the prefetched attempts older and newest when another
// worker's waiting poll (polled) steals one, the newest first, which w1
// had started already: its start report is processed after the steal
// was decided (all: the attempts w1 runs and holds). A holder that
// answers release requests (releases) is asked to release newest: its
// start report makes the attempt run on w1, which is then asked to
// release older, and does; waiting runs (checks) while the stealing
// poll waits for that. An old holder has newest taken back at once, and
// is told to cancel it after its start. It returns the stealing poll's
// answer.
func stealCrossingStart(t *testing.T, releases bool, poll1 func(api.PollRequest) *api.PollResponse, polled <-chan *api.PollResponse, all []string, older, newest api.Assignment, waiting func()) *api.PollResponse {
	t.Helper()
	started := api.PollRequest{Running: all, Started: []api.StartedAttempt{{AttemptID: newest.AttemptID}}}
	if !releases {
		stolen := <-polled
		// w1 had started it: too late.
		resp := poll1(started)
		if !slices.Equal(resp.Cancel, []string{newest.AttemptID}) || len(resp.Release) != 0 {
			t.Fatalf("old w1 told to cancel %v and release %v, want cancel %s", resp.Cancel, resp.Release, newest.AttemptID)
		}
		return stolen
	}
	// w1's waiting poll is asked to release the newest.
	resp := poll1(api.PollRequest{Running: all})
	if !slices.Equal(resp.Release, []string{newest.AttemptID}) || len(resp.Cancel) != 0 {
		t.Fatalf("w1 asked to release %v and cancel %v, want release %s", resp.Release, resp.Cancel, newest.AttemptID)
	}
	select {
	case resp := <-polled:
		t.Fatalf("w2 answered before w1 released anything: %+v", resp)
	case <-time.After(200 * time.Millisecond):
	}
	waiting()
	// It had started it: its start report arrives now. The attempt
	// runs on w1, and w2 waits for the older one, which w1 releases.
	resp = poll1(started)
	if len(resp.Cancel) != 0 {
		t.Fatalf("w1 told to cancel %v after its start", resp.Cancel)
	}
	if !slices.Equal(resp.Release, []string{older.AttemptID}) {
		resp = poll1(api.PollRequest{Running: all})
	}
	if !slices.Equal(resp.Release, []string{older.AttemptID}) {
		t.Fatalf("w1 asked to release %v, want %s", resp.Release, older.AttemptID)
	}
	select {
	case resp := <-polled:
		t.Fatalf("w2 answered before w1 released the older attempt: %+v", resp)
	case <-time.After(100 * time.Millisecond):
	}
	waiting()
	poll1(api.PollRequest{Running: all, Released: []string{older.AttemptID}})
	return <-polled
}

// finishHolder has the holder w1 (poll1: its polls) report the results of the
// attempts it held but got, which another worker took (a result implies
// the start); an old holder's result of newest, taken back after its
// start, is rejected.
func finishHolder(t *testing.T, releases bool, w1 *testWorker, poll1 func(api.PollRequest) *api.PollResponse, held []api.Assignment, got, newest api.Assignment) {
	t.Helper()
	var results []api.AttemptResult
	for _, a := range held {
		if a.Job.Name != got.Job.Name {
			results = append(results, w1.output(a))
		}
	}
	if resp := poll1(api.PollRequest{Results: results}); len(resp.Rejected) != 0 {
		t.Fatalf("w1's results rejected: %v", resp.Rejected)
	}
	if !releases {
		if resp := poll1(api.PollRequest{Results: []api.AttemptResult{w1.output(newest)}}); !slices.Equal(resp.Rejected, []string{newest.AttemptID}) {
			t.Fatalf("old w1's result of the stolen attempt: rejected %v", resp.Rejected)
		}
	}
}

// checkRanOnce checks that the builds succeeded with one charged
// attempt per job, and that the run of an attempt started after its
// take-back was recorded abandoned unless the holder answered release
// requests (then nothing was taken back).
func checkRanOnce(t *testing.T, e *env, releases bool, builds ...int64) {
	t.Helper()
	abandoned := 0
	for _, id := range builds {
		b := e.build(id)
		if b.State != api.BuildSucceeded {
			t.Fatalf("build %d %s: %v", id, b.State, b.Counts)
		}
		for _, j := range b.Jobs {
			n := 0
			for _, a := range j.Attempts {
				if a.State.Charged() {
					n++
				}
				if a.State == api.AttemptAbandoned {
					abandoned++
				}
			}
			if n != 1 {
				t.Errorf("%s: attempts %+v", j.Name, j.Attempts)
			}
		}
	}
	want := 1
	if releases {
		want = 0
	}
	var m dto.Metric
	if err := e.c.m.prefetched.WithLabelValues("started_after_take_back").Write(&m); err != nil {
		t.Fatal(err)
	}
	if abandoned != want || int(m.GetCounter().GetValue()) != want {
		t.Errorf("%d abandoned runs, %v starts after a take-back; want %d", abandoned, m.GetCounter().GetValue(), want)
	}
}

// TestYieldRelease: a job of a higher priority becomes ready while a
// worker that answers release requests holds prefetched attempts of a
// lower priority: it is asked to release them (not told to cancel
// them); one it had started runs there, once, and one it releases goes
// back to its queue with no attempt used. (An old worker has them
// taken back: TestPrefetchTakenBack.)
func TestYieldRelease(t *testing.T) {
	e := newEnv(t, sqliteBackend, envOpts{})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(wideGraph("p", 3), api.PriorityPeriodic)
	poll := func(req api.PollRequest) *api.PollResponse {
		t.Helper()
		req.WorkerID, req.AnswersRelease, req.WaitMS = w1.id, true, 300
		resp, err := w1.c.PollEarly(context.Background(), req, func(*api.PollResponse) {})
		if err != nil {
			t.Fatalf("poll w1: %v", err)
		}
		return resp
	}
	pre, run := split(poll(api.PollRequest{FreeSlots: 1, Prefetch: 4}).Assignments)
	if len(run) != 1 || len(pre) != 2 {
		t.Fatalf("w1: %d running and %d prefetched, want 1 and 2", len(run), len(pre))
	}
	e.submit(wideGraph("urgent", 1), api.PriorityTry)
	resp := poll(api.PollRequest{Running: append(ids(run), ids(pre)...)})
	slices.Sort(resp.Release)
	want := ids(pre)
	slices.Sort(want)
	if !slices.Equal(resp.Release, want) || len(resp.Cancel) != 0 {
		t.Fatalf("w1 asked to release %v and cancel %v, want release %v", resp.Release, resp.Cancel, want)
	}
	started, released := pre[0], pre[1]
	poll(api.PollRequest{Running: []string{run[0].AttemptID, started.AttemptID},
		Started: []api.StartedAttempt{{AttemptID: started.AttemptID}}, Released: []string{released.AttemptID}})
	if st, n := attemptsOf(t, e, sub.BuildID, started.Job.Name); st != api.JobRunning || n != 1 {
		t.Errorf("%s, started before its release was asked for: %s with %d attempts, want running with 1", started.Job.Name, st, n)
	}
	if st, n := attemptsOf(t, e, sub.BuildID, released.Job.Name); st != api.JobQueued || n != 0 {
		t.Errorf("%s, released: %s with %d attempts, want queued with none", released.Job.Name, st, n)
	}
}

// TestHigherPriorityStealRelease: a worker with a free slot and only a
// job of a lower priority to run steals a prefetched attempt of a
// higher priority, whose holder has started it already, its start
// report processed after the steal was decided. A holder that answers
// release requests is asked to release the attempt: the stealing
// worker's poll leaves its slot empty and waits (no assignment, nothing
// prefetched there), the start report makes the attempt run on the
// holder, once, and the stealing worker gets the next attempt of the
// higher priority that the holder releases unstarted, then its own job;
// no run is abandoned. A holder of the previous protocol has the
// attempt taken back at once, and its run is recorded as abandoned.
func TestHigherPriorityStealRelease(t *testing.T) {
	forEachHolder(t, func(t *testing.T, releases bool) {
		ps := startPrioritySteal(t, releases)
		e, w1, w2, poll, poll1, polled := ps.e, ps.w1, ps.w2, ps.poll, ps.poll1, ps.polled
		run, pre, try, periodic := ps.run, ps.pre, ps.try, ps.periodic
		older, newest := pre[0], pre[1]
		// w2Took checks that w2's poll took want to run in its slot,
		// and maybe p0 prefetched beyond it (nothing else is left
		// for w1 to run).
		var p0 []api.Assignment
		w2Took := func(resp *api.PollResponse, want api.Assignment) api.Assignment {
			t.Helper()
			var as []api.Assignment
			p0, as = split(resp.Assignments)
			if len(as) != 1 || as[0].Job.Name != want.Job.Name || len(p0) > 1 || (len(p0) == 1 && p0[0].Job.Name != "p0") {
				t.Fatalf("w2 got %+v, want %s (and maybe p0 prefetched)", resp.Assignments, want.Job.Name)
			}
			return as[0]
		}
		p0Queued := func() {
			if st, n := attemptsOf(t, e, periodic.BuildID, "p0"); st != api.JobQueued || n != 0 {
				t.Fatalf("p0: %s with %d attempts, want queued (maybe prefetched) with none", st, n)
			}
		}
		want := older // released by w1
		if !releases {
			want = newest
		}
		held := append(run, pre...)
		got := w2Took(stealCrossingStart(t, releases, poll1, polled, ids(held), older, newest, p0Queued), want)
		p0Queued()

		// Everything finishes: w1 runs the rest of the try build,
		// w2 the periodic job after the try job it took.
		finishHolder(t, releases, w1, poll1, held, got, newest)
		results := []api.AttemptResult{w2.output(got)}
		if len(p0) == 0 {
			// p0 comes once w2's slot is free.
			resp := poll(w2, api.PollRequest{FreeSlots: 1, Results: results})
			if len(resp.Rejected) != 0 || len(resp.Assignments) != 1 || resp.Assignments[0].Job.Name != "p0" {
				t.Fatalf("w2's result answered %+v, want p0 assigned", resp)
			}
			p0, results = resp.Assignments, nil
		}
		results = append(results, w2.output(p0[0])) // implies a prefetched p0's start
		if resp := poll(w2, api.PollRequest{Results: results}); len(resp.Rejected) != 0 {
			t.Fatalf("w2's results rejected: %+v", resp)
		}
		checkRanOnce(t, e, releases, try.BuildID, periodic.BuildID)
	})
}
