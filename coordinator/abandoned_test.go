package coordinator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
)

// Attempts the coordinator abandons for reasons of its own (a take-back
// crossing a worker's start, a replica's lease expiring in a database
// outage) are in the job's history as abandoned and do not count
// against MaxAttempts, before and after a restart; attempts of workers
// that disappear still count.

// attemptStates lists the states of a job's attempts, oldest first.
func attemptStates(j api.JobStatus) []api.AttemptState {
	var out []api.AttemptState
	for _, a := range j.Attempts {
		out = append(out, a.State)
	}
	return out
}

// runOnePrefetchOne polls as w for one slot and prefetched work, of a
// build of two ready jobs: it must get one of each.
func runOnePrefetchOne(t *testing.T, w *testWorker) (run, pre api.Assignment) {
	t.Helper()
	p, r := split(w.prefetchPoll(t, 1, 4, nil, nil).Assignments)
	if len(r) != 1 || len(p) != 1 {
		t.Fatalf("%s: %d running and %d prefetched", w.name, len(r), len(p))
	}
	return r[0], p[0]
}

// loseByReregistering makes w register again without its running
// attempts (as a worker whose machine restarted): they are lost, and
// count.
func loseByReregistering(w *testWorker) { w.register(nil) }

// TestTakenBackRunRecorded: a prefetched attempt that its worker started
// although the coordinator had taken it back is recorded as an abandoned
// attempt of its job (started when the worker said, with an error
// saying why), committed like other attempts, and not counted against
// MaxAttempts, neither before nor after a restart: with MaxAttempts 3
// the job survives two losses of its worker besides the abandoned run
// and gives up at the third.
func TestTakenBackRunRecorded(t *testing.T) { forEachBackend(t, testTakenBackRunRecorded) }

func testTakenBackRunRecorded(t *testing.T, be backend) {
	ctx := context.Background()
	dir, db := t.TempDir(), be.newDB(t)
	clock := newFakeClock()
	mod := func(o *Options) { o.MaxAttempts = 3; o.HeartbeatTimeout = time.Hour }
	e := newEnv(t, be, envOpts{dir: dir, db: db, clock: clock, mod: mod})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(wideGraph("p", 2), api.PriorityTry)
	handed := clock.Now()
	run, pre := runOnePrefetchOne(t, w1)
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	clock.Advance(3 * time.Second)
	got := w2.prefetchPoll(t, 1, 0, nil, nil).Assignments
	if len(got) != 1 {
		t.Fatalf("idle w2 got %+v", got)
	}
	stolen, mine := got[0].Job, pre
	if mine.Job.ID != stolen.ID {
		t.Fatalf("w2 got %s, not the job w1 held", stolen.Name)
	}

	// w1 started it 2s after it was handed out, 1s before the take-back,
	// and says so 2s later; its result is refused.
	clock.Advance(2 * time.Second)
	resp, err := w1.c.PollEarly(ctx, api.PollRequest{WorkerID: w1.id, Running: []string{run.AttemptID, mine.AttemptID},
		Started: []api.StartedAttempt{{AttemptID: mine.AttemptID, AgoMS: 3000}}, WaitMS: 1}, func(*api.PollResponse) {})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(resp.Cancel, mine.AttemptID) {
		t.Errorf("w1 not told to cancel the taken-back attempt: %+v", resp)
	}
	if r := w1.prefetchPoll(t, 0, 0, nil, nil, w1.output(mine)); !slices.Equal(r.Rejected, []string{mine.AttemptID}) {
		t.Errorf("result of the taken-back run: rejected %v, want it rejected", r.Rejected)
	}
	check := func(when string, want ...api.AttemptState) api.JobStatus {
		t.Helper()
		j := jobByName(e.build(sub.BuildID), stolen.Name)
		if got := attemptStates(j); !slices.Equal(got, want) {
			t.Fatalf("%s: attempts %v, want %v (%+v)", when, got, want, j.Attempts)
		}
		var ab *api.Attempt
		for i, a := range j.Attempts {
			if a.ID == mine.AttemptID {
				ab = &j.Attempts[i]
			}
		}
		if ab == nil || ab.State != api.AttemptAbandoned || ab.Worker != "w1" || !ab.Started.Equal(handed.Add(2*time.Second)) ||
			ab.Finished == nil || !strings.Contains(ab.Error, "taken it back") {
			t.Fatalf("%s: the taken-back run is not recorded as w1's abandoned attempt started at %v: %+v", when, handed.Add(2*time.Second), ab)
		}
		return j
	}
	check("after the crossed start", api.AttemptAbandoned, api.AttemptRunning)

	// w2 loses it (registers again without it): requeued, 1 of 3 used.
	loseByReregistering(w2)
	if j := check("after w2's first loss", api.AttemptAbandoned, api.AttemptLost); j.State != api.JobQueued {
		t.Fatalf("after one loss and an abandoned run: job %s, want queued", j.State)
	}

	// After a restart the abandoned run is still there and still not
	// counted.
	e.stop()
	clock = newFakeClock()
	clock.Advance(time.Minute)
	e = newEnv(t, be, envOpts{dir: dir, db: db, clock: clock, mod: mod})
	check("after a restart", api.AttemptAbandoned, api.AttemptLost)
	w2 = newTestWorker(t, e, "w2", tokenW2, nil)
	for i := range 2 {
		// The other job runs on w1 (adopted across the restart): the
		// only one queued is the stolen one. (Checked first: with the
		// fake clock, a poll without work would wait forever.)
		if j := jobByName(e.build(sub.BuildID), stolen.Name); j.State != api.JobQueued {
			t.Fatalf("before loss %d: job %s %q, want queued", i+2, j.State, j.Error)
		}
		if r := w2.mustPoll(1, nil); len(r.Assignments) != 1 || r.Assignments[0].Job.ID != stolen.ID {
			t.Fatalf("loss %d: w2 did not get %s: %+v", i+2, stolen.Name, r.Assignments)
		}
		loseByReregistering(w2)
	}
	j := check("after three losses", api.AttemptAbandoned, api.AttemptLost, api.AttemptLost, api.AttemptLost)
	if j.State != api.JobFailed || !strings.Contains(j.Error, "gave up after 3 attempts") {
		t.Errorf("after three losses (and an abandoned run): job %s %q, want failed, gave up after 3 attempts", j.State, j.Error)
	}
}

// TestCommitWaitKeepsWorkerAlive: a worker whose poll waits for the
// commit of its results (the store failing, as in a database outage,
// for longer than the heartbeat timeout) is alive: its session and its
// other running attempts are kept, and once the store answers its
// results are acknowledged and its next poll goes on as before.
func TestCommitWaitKeepsWorkerAlive(t *testing.T) { forEachBackend(t, testCommitWaitKeepsWorkerAlive) }

func testCommitWaitKeepsWorkerAlive(t *testing.T, be backend) {
	clock := newFakeClock()
	var flaky *flakyStore
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) {
		o.HeartbeatTimeout = 15 * time.Second
		flaky = &flakyStore{Store: o.Store}
		o.Store = flaky
	}})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(wideGraph("k", 2), api.PriorityTry)
	as := w.mustPoll(2, nil).Assignments
	if len(as) != 2 {
		t.Fatalf("poll: %d assignments, want 2", len(as))
	}
	first, second := as[0], as[1]
	res := w.output(first)

	flaky.failing.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := w.poll(0, []string{second.AttemptID}, res)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for jobByName(e.build(sub.BuildID), first.Job.Name).State != api.JobSucceeded {
		if time.Now().After(deadline) {
			t.Fatal("the result was not applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("poll answered while its results cannot be committed: %v", err)
	default:
	}
	clock.Advance(20 * time.Second) // past the heartbeat timeout
	e.c.checkTimeouts()
	if j := jobByName(e.build(sub.BuildID), second.Job.Name); j.State != api.JobRunning || !slices.Equal(attemptStates(j), []api.AttemptState{api.AttemptRunning}) {
		t.Errorf("while w1's poll waits for the commit: %s %v; want still running on w1", j.State, attemptStates(j))
	}

	flaky.failing.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("poll after the store recovered: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("poll not answered after the store recovered")
	}
	// The wait counted as contact: the heartbeat timeout runs from its end.
	clock.Advance(10 * time.Second)
	e.c.checkTimeouts()
	if _, err := w.poll(0, []string{second.AttemptID}, w.output(second)); err != nil {
		t.Fatalf("w1's next poll: %v", err)
	}
	succeededOnce(t, e.build(sub.BuildID))
}

// TestOutageAbandonsAttempts: a replica whose lease expires while the
// database is unreachable stops its builds' attempts and records them
// abandoned; once the database is back the build resumes, and the
// abandoned attempt does not count: the job still survives two losses
// of its worker (MaxAttempts 3) and succeeds. Before, the outage used
// up an attempt and the second loss failed the job.
func TestOutageAbandonsAttempts(t *testing.T) {
	srv := pgtest.StartOwn(t)
	db := srv.NewDatabase(t)
	e := newEnv(t, postgresBackend, envOpts{db: db, mod: func(o *Options) {
		// One replica: its URL is never called.
		o.Replica = &ReplicaOptions{ID: "r1", URL: "http://127.0.0.1:1", LeaseTTL: time.Second}
	}})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "j", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "o"}}]}]}`, api.PriorityTry)
	assigned := func(what string) api.Assignment {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if b, err := e.client.Build(t.Context(), sub.BuildID); err == nil && b.State.Finished() {
				t.Fatalf("no assignment %s: build %s, job %+v", what, b.State, jobByName(b, "j"))
			}
			if r, err := w.poll(1, nil); err == nil && len(r.Assignments) == 1 {
				return r.Assignments[0]
			} else if errors.Is(err, api.ErrUnknownWorker) {
				w.register(nil)
			}
		}
		t.Fatalf("no assignment %s", what)
		return api.Assignment{}
	}
	a1 := assigned("at first")
	// Its attempt is stored before the outage.
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n == 0; {
		atts, err := e.c.store.Attempts(t.Context(), sub.BuildID)
		if err != nil {
			t.Fatal(err)
		}
		n = len(atts)
		if time.Now().After(deadline) {
			t.Fatal("attempt not stored")
		}
	}

	if err := srv.Stop(pgtest.Fast); err != nil {
		t.Fatal(err)
	}
	// The lease expires unrenewed: w1 is told to stop the attempt.
	deadline = time.Now().Add(20 * time.Second)
	for cancelled := false; !cancelled; {
		if time.Now().After(deadline) {
			t.Fatal("attempt not cancelled during the outage")
		}
		r, err := w.poll(0, []string{a1.AttemptID})
		if err != nil {
			t.Fatalf("poll during the outage: %v", err)
		}
		cancelled = slices.Contains(r.Cancel, a1.AttemptID)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	a2 := assigned("after the outage")
	if a2.Job.ID != a1.Job.ID {
		t.Fatalf("after the outage got %s", a2.Job.Name)
	}
	loseByReregistering(w)
	assigned("after the first loss")
	loseByReregistering(w)
	a4 := assigned("after the second loss")
	w.mustPoll(0, nil, w.output(a4))
	b := e.build(sub.BuildID)
	j := jobByName(b, "j")
	want := []api.AttemptState{api.AttemptAbandoned, api.AttemptLost, api.AttemptLost, api.AttemptSucceeded}
	if b.State != api.BuildSucceeded || !slices.Equal(attemptStates(j), want) {
		t.Fatalf("build %s, attempts %v (%+v); want succeeded, attempts %v", b.State, attemptStates(j), j.Attempts, want)
	}
	if !strings.Contains(j.Attempts[0].Error, "lease expired") {
		t.Errorf("abandoned attempt's error %q does not say why", j.Attempts[0].Error)
	}
}

// TestSilentWorkersStillCount: attempts lost with workers that stop
// heartbeating (a job that kills its worker) count as before: the job
// gives up after MaxAttempts of them.
func TestSilentWorkersStillCount(t *testing.T) { forEachBackend(t, testSilentWorkersStillCount) }

func testSilentWorkersStillCount(t *testing.T, be backend) {
	clock := newFakeClock()
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) { o.MaxAttempts = 2; o.HeartbeatTimeout = 15 * time.Second }})
	sub := e.submit(`{"jobs": [{"name": "killer", "source_mode": "none", "commands": [{"argv": ["kill", "-9", "$PPID"]}]}]}`, api.PriorityTry)
	for i, name := range []string{"w1", "w2"} {
		w := newTestWorker(t, e, name, map[string]string{"w1": tokenW1, "w2": tokenW2}[name], nil)
		if r := w.mustPoll(1, nil); len(r.Assignments) != 1 {
			t.Fatalf("%s: %+v", name, r)
		}
		clock.Advance(16 * time.Second) // the worker died with the job
		e.c.checkTimeouts()
		j := jobByName(e.build(sub.BuildID), "killer")
		if want := []api.JobState{api.JobQueued, api.JobFailed}[i]; j.State != want {
			t.Fatalf("after %d silent workers: job %s %q, want %s", i+1, j.State, j.Error, want)
		}
	}
	j := jobByName(e.build(sub.BuildID), "killer")
	if !slices.Equal(attemptStates(j), []api.AttemptState{api.AttemptLost, api.AttemptLost}) || !strings.Contains(j.Error, "gave up after 2 attempts") {
		t.Errorf("job %q, attempts %v; want two lost, gave up after 2 attempts", j.Error, attemptStates(j))
	}
}

// TestClaimedAttemptAbandoned: a replica that claims a build from
// another adopts its running attempts for their workers; an attempt
// whose worker never comes to it (it is connected to the other replica,
// which stopped the attempt when its lease expired, the commit saying so
// fenced off by the claim) is abandoned, not lost: the job survives a
// loss of its next worker with MaxAttempts 2.
func TestClaimedAttemptAbandoned(t *testing.T) {
	db := postgresBackend.newDB(t)
	replica := func(id string) func(*Options) {
		return func(o *Options) {
			o.MaxAttempts, o.HeartbeatTimeout = 2, 15*time.Second
			o.Replica = &ReplicaOptions{ID: id, URL: "http://127.0.0.1:1", LeaseTTL: 3 * time.Second}
		}
	}
	e1 := newEnv(t, postgresBackend, envOpts{db: db, mod: replica("r1")})
	w1 := newTestWorker(t, e1, "w1", tokenW1, nil)
	sub := e1.submit(`{"jobs": [{"name": "j", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "o"}}]}]}`, api.PriorityTry)
	if r := w1.mustPoll(1, nil); len(r.Assignments) != 1 {
		t.Fatalf("w1: %+v", r)
	}
	e1.stop() // stores the running attempt and releases the lease

	clock := newFakeClock()
	e2 := newEnv(t, postgresBackend, envOpts{db: db, clock: clock, mod: replica("r2")})
	w2 := newTestWorker(t, e2, "w2", tokenW2, nil) // a worker: r2 claims the build
	deadline := time.Now().Add(10 * time.Second)
	for {
		e2.c.mu.Lock()
		_, held := e2.c.builds[sub.BuildID]
		e2.c.mu.Unlock()
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("r2 did not claim the build")
		}
		time.Sleep(5 * time.Millisecond)
	}
	clock.Advance(16 * time.Second) // w1 never comes to r2
	e2.c.checkTimeouts()
	w2.register(nil)
	if j := jobByName(e2.build(sub.BuildID), "j"); j.State != api.JobQueued || !slices.Equal(attemptStates(j), []api.AttemptState{api.AttemptAbandoned}) {
		t.Fatalf("after w1's heartbeat timeout on r2: job %s, attempts %+v; want queued, abandoned", j.State, j.Attempts)
	}
	if r := w2.mustPoll(1, nil); len(r.Assignments) != 1 {
		t.Fatalf("w2: %+v", r)
	}
	loseByReregistering(w2)
	j := jobByName(e2.build(sub.BuildID), "j")
	if j.State != api.JobQueued || !slices.Equal(attemptStates(j), []api.AttemptState{api.AttemptAbandoned, api.AttemptLost}) {
		t.Fatalf("after w2's loss: job %s %q, attempts %v; want queued (1 of 2 attempts used)", j.State, j.Error, attemptStates(j))
	}
	r := w2.mustPoll(1, nil)
	if len(r.Assignments) != 1 {
		t.Fatalf("w2: %+v", r)
	}
	w2.mustPoll(0, nil, w2.output(r.Assignments[0]))
	if b := e2.build(sub.BuildID); b.State != api.BuildSucceeded {
		t.Errorf("build %s", b.State)
	}
}

// forgottenStart polls as w with one forgotten start: attempt id of
// as's build and job, started ago before the poll.
func forgottenStart(t *testing.T, w *testWorker, id string, as api.Assignment, ago time.Duration, running ...string) *api.PollResponse {
	t.Helper()
	resp, err := w.c.PollEarly(context.Background(), api.PollRequest{WorkerID: w.id, Running: running, WaitMS: 1,
		Started: []api.StartedAttempt{{AttemptID: id, AgoMS: ago.Milliseconds(), BuildID: as.BuildID, JobID: as.Job.ID}}}, func(*api.PollResponse) {})
	if err != nil {
		t.Fatalf("poll %s: %v", w.name, err)
	}
	return resp
}

// TestForgottenStartRecorded: a worker started a prefetched attempt
// and its session ended before the start was reported (here it
// registers again; the same goes for a restarted coordinator). The
// registration cancels the attempt (unknown), and the start, sent with
// the new session with its build and job, is recorded as an abandoned
// attempt of the job (started when the worker said, by that worker,
// with an error saying why), once, committed, not counted; starts of
// unknown builds, jobs or malformed IDs are ignored.
func TestForgottenStartRecorded(t *testing.T) { forEachBackend(t, testForgottenStartRecorded) }

func testForgottenStartRecorded(t *testing.T, be backend) {
	ctx := context.Background()
	dir, db := t.TempDir(), be.newDB(t)
	clock := newFakeClock()
	mod := func(o *Options) { o.MaxAttempts = 1; o.HeartbeatTimeout = time.Hour }
	e := newEnv(t, be, envOpts{dir: dir, db: db, clock: clock, mod: mod})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(wideGraph("f", 2), api.PriorityTry)
	run, pre := runOnePrefetchOne(t, w1)
	mine := pre
	clock.Advance(2 * time.Second)
	// w1 started it 1s ago, then registered again before reporting it.
	reg, err := w1.c.Register(ctx, api.RegisterRequest{Name: "w1", Slots: 64, Running: []string{run.AttemptID, mine.AttemptID}})
	if err != nil || !reg.ForgottenStarts {
		t.Fatalf("register: %+v, %v; want forgotten_starts", reg, err)
	}
	w1.id = reg.WorkerID
	if j := jobByName(e.build(sub.BuildID), mine.Job.Name); j.State != api.JobQueued || len(j.Attempts) != 0 {
		t.Fatalf("after the session ended: job %s, attempts %+v; want queued, none", j.State, j.Attempts)
	}
	resp := forgottenStart(t, w1, mine.AttemptID, mine, time.Second, run.AttemptID)
	if !slices.Contains(resp.Cancel, mine.AttemptID) || len(resp.StartsLater) != 0 {
		t.Errorf("answer to the forgotten start: %+v; want it cancelled, nothing later", resp)
	}
	// Again (a poll whose answer was lost), and starts to ignore.
	forgottenStart(t, w1, mine.AttemptID, mine, time.Second, run.AttemptID)
	other := mine
	other.BuildID = sub.BuildID + 1000
	for _, tc := range []struct {
		id string
		as api.Assignment
	}{
		{"00000000000000aa", other},
		{"00000000000000AA", mine},
		{strings.Repeat("a", 65), mine},
	} {
		if r := forgottenStart(t, w1, tc.id, tc.as, time.Second, run.AttemptID); len(r.StartsLater) != 0 {
			t.Errorf("start of %q in build %d: later %v", tc.id, tc.as.BuildID, r.StartsLater)
		}
	}
	check := func(when string) {
		t.Helper()
		j := jobByName(e.build(sub.BuildID), mine.Job.Name)
		if len(j.Attempts) != 1 {
			t.Fatalf("%s: attempts %+v, want the forgotten run only", when, j.Attempts)
		}
		a := j.Attempts[0]
		if a.ID != mine.AttemptID || a.State != api.AttemptAbandoned || a.Worker != "w1" || !a.Started.Equal(clock.Now().Add(-time.Second)) ||
			a.Finished == nil || !strings.Contains(a.Error, "forgot") {
			t.Fatalf("%s: the forgotten run is not recorded as w1's abandoned attempt started at %v: %+v", when, clock.Now().Add(-time.Second), a)
		}
	}
	check("after the forgotten start")
	e.stop()
	e = newEnv(t, be, envOpts{dir: dir, db: db, clock: clock, mod: mod})
	check("after a restart")
	// Not counted: with MaxAttempts 1 the job still runs, and succeeds
	// (beside the other one, which w1 still runs).
	if w1.c, err = api.NewClient(e.url, tokenW1, nil); err != nil {
		t.Fatal(err)
	}
	w1.register([]string{run.AttemptID}) // it still runs the other job
	r := w1.mustPoll(1, []string{run.AttemptID})
	if len(r.Assignments) != 1 || r.Assignments[0].Job.ID != mine.Job.ID {
		t.Fatalf("after the restart: %+v, want %s", r.Assignments, mine.Job.Name)
	}
	w1.mustPoll(0, nil, w1.output(run), w1.output(r.Assignments[0]))
	b := e.build(sub.BuildID)
	if j := jobByName(b, mine.Job.Name); b.State != api.BuildSucceeded ||
		!slices.Equal(attemptStates(j), []api.AttemptState{api.AttemptAbandoned, api.AttemptSucceeded}) {
		t.Errorf("build %s, %s's attempts %v; want succeeded after the abandoned run", b.State, j.Name, attemptStates(j))
	}
}

// TestForgottenStartLater: a replica asks for a forgotten start of a
// build it does not hold again later (it may claim the build).
func TestForgottenStartLater(t *testing.T) {
	e := newEnv(t, postgresBackend, envOpts{mod: func(o *Options) {
		o.Replica = &ReplicaOptions{ID: "r1", URL: "http://127.0.0.1:1", LeaseTTL: 3 * time.Second}
	}})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	as := api.Assignment{BuildID: 4242, Job: graph.Job{ID: strings.Repeat("c", 64)}}
	if r := forgottenStart(t, w, "00000000000000bb", as, time.Second); !slices.Equal(r.StartsLater, []string{"00000000000000bb"}) {
		t.Errorf("start of a build the replica does not hold: later %v, want it", r.StartsLater)
	}
}
