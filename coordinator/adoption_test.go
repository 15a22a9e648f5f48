package coordinator

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate"
)

// leaseFaults is a PostgreSQL store whose lease reads (BuildLease) fail
// while failing is set, everything else working: a replica that cannot
// tell who holds a build.
type leaseFaults struct {
	*pgstate.Store
	failing atomic.Bool
}

func (l *leaseFaults) BuildLease(ctx context.Context, id int64, now time.Time) (state.Lease, error) {
	if l.failing.Load() {
		return state.Lease{}, errors.New("lease read refused")
	}
	return l.Store.BuildLease(ctx, id, now)
}

// oneJob is a graph of one job that is not cacheable.
const oneJob = `{"jobs": [{"name": "j", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "o"}}]}]}`

// adoptionTTL is the lease TTL of the replica in the adoption tests:
// long, so that its lease loop wakes on its own (every TTL/12 of the
// fake clock) only when a test moves the clock that far.
const adoptionTTL = time.Minute

// failedOverTo is a worker w1 that ran an attempt for replica a, which
// went away (its log began there: "start\n", 6 bytes), and registered
// with replica b listing it, while replica "dead" holds the build's
// lease (until the fake clock's start plus hold): the attempt waits
// for its build's claim on b.
type failedOverTo struct {
	b       *env
	clock   *fakeClock
	store   *leaseFaults
	w       *testWorker // w1, registered with b
	build   int64
	attempt string
}

func failOverTo(t *testing.T, hold time.Duration, mods ...func(*Options)) *failedOverTo {
	t.Helper()
	ctx := context.Background()
	db := postgresBackend.newDB(t)
	a := newReplicaEnv(t, db, "a", adoptionTTL)
	wa := newTestWorker(t, a, "w1", tokenW1, nil)
	sub := a.submit(oneJob, api.PriorityTry)
	r := wa.mustPoll(1, nil)
	if len(r.Assignments) != 1 {
		t.Fatalf("poll on a: %+v", r)
	}
	id := r.Assignments[0].AttemptID
	if _, err := wa.c.AppendLog(ctx, id, 0, []byte("start\n")); err != nil {
		t.Fatal(err)
	}
	a.stop() // stores the running attempt and releases the lease

	f := &failedOverTo{clock: newFakeClock(), build: sub.BuildID, attempt: id}
	f.b = newEnv(t, postgresBackend, envOpts{db: db, clock: f.clock, mod: func(o *Options) {
		f.store = &leaseFaults{Store: o.Store.(*pgstate.Store)}
		o.Store = f.store
		o.PollTimeout = time.Hour
		o.Replica = &ReplicaOptions{ID: "b", URL: "http://127.0.0.1:1", LeaseTTL: adoptionTTL}
		for _, m := range mods {
			m(o)
		}
	}})
	now := f.clock.Now()
	if ok, err := f.store.HoldBuild(ctx, f.build, state.Owner{ID: "dead", URL: "http://127.0.0.1:1"}, now, now.Add(hold)); err != nil || !ok {
		t.Fatalf("hold the build for the dead replica = %v, %v", ok, err)
	}
	f.w = &testWorker{t: t, c: wa.c, name: "w1"}
	var err error
	if f.w.c, err = api.NewClient(f.b.url, tokenW1, nil); err != nil {
		t.Fatal(err)
	}
	// A chunk sent before the registration (the worker's log stream
	// and its polls fail over independently) is answered "again
	// later", not a conflict: that would stop the job.
	if _, err := f.w.c.AppendLog(ctx, id, 6, []byte("end\n")); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("log before the registration: %v, want ErrUnavailable", err)
	}
	f.w.register([]string{id})
	if !f.waiting() {
		t.Fatal("the attempt does not wait for its build's claim")
	}
	return f
}

// settled waits until the attempt no longer waits for its build's
// claim on b, once the dead replica's lease expired and a claim was
// made: the test's, or the claim loop's (woken by a nudge), which
// reads the build back before it settles the adoptions, and may still
// be reading when the test's own claim finds the build taken.
func (f *failedOverTo) settled(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.waiting() {
		if time.Now().After(deadline) {
			t.Fatal("the attempt still waits after the claim")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waiting reports whether the attempt waits for its build's claim on b.
func (f *failedOverTo) waiting() bool {
	f.b.c.mu.Lock()
	defer f.b.c.mu.Unlock()
	return f.b.c.rep.adopting[f.attempt] != nil
}

// log reads the attempt's log from b.
func (f *failedOverTo) log(t *testing.T) string {
	t.Helper()
	rc, err := f.b.client.AttemptLog(context.Background(), f.attempt, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdoptionByEitherClaim: an attempt waiting for its build's claim
// whose job ended meanwhile (its last log chunk stored, its result
// answered "later") is adopted whichever claim takes the build once the
// dead replica's lease expires: the adoption check (every LeaseTTL/12)
// or the ordinary claim loop (every LeaseTTL/3, or on a nudge), which
// may come first. Either way the job runs once, its result kept
// meanwhile counts, the result sent again is acknowledged, and its log
// is complete: the dead replica's part a notice of its length, then the
// end that arrived while it waited.
func TestAdoptionByEitherClaim(t *testing.T) {
	tests := []struct {
		name  string
		claim func(c *Coordinator)
	}{
		{"adoption check", func(c *Coordinator) { c.checkAdoptions() }},
		{"ordinary claim", func(c *Coordinator) {
			if _, err := c.claimBuilds(); err != nil {
				t.Errorf("claimBuilds: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := failOverTo(t, time.Second)
			if n, err := f.w.c.AppendLog(ctx, f.attempt, 6, []byte("end\n")); err != nil || n != 10 {
				t.Fatalf("last log chunk while waiting = %d, %v; want 10 bytes (6 standing for a's)", n, err)
			}
			// Sent again (its answer lost): trimmed, not doubled.
			if n, err := f.w.c.AppendLog(ctx, f.attempt, 6, []byte("end\n")); err != nil || n != 10 {
				t.Fatalf("last log chunk sent again = %d, %v; want 10", n, err)
			}
			res := f.w.output(api.Assignment{AttemptID: f.attempt})
			if r := f.w.mustPoll(0, []string{f.attempt}, res); !slices.Equal(r.ResultsLater, []string{f.attempt}) || len(r.Rejected)+len(r.Cancel) > 0 {
				t.Fatalf("result while waiting answered %+v, want later", r)
			}
			// The dead replica's lease expires. The fake clock moves
			// less than the lease loop's own wait (TTL/12): the claim
			// is the one the test makes, unless a nudge wakes the
			// loop's ordinary claim first, which must adopt alike.
			f.clock.Advance(2 * time.Second)
			tt.claim(f.b.c)
			f.settled(t)
			b := f.b.build(f.build)
			if b.State != api.BuildSucceeded {
				t.Fatalf("build %s, want succeeded with the kept result", b.State)
			}
			at := b.Jobs[0].Attempts
			if len(at) != 1 || at[0].ID != f.attempt || at[0].State != api.AttemptSucceeded || at[0].LogBytes != 10 {
				t.Errorf("attempts %+v; want only %s, succeeded, 10 log bytes", at, f.attempt)
			}
			if r := f.w.mustPoll(0, nil, res); len(r.Rejected)+len(r.ResultsLater)+len(r.Cancel) > 0 {
				t.Errorf("result sent again after the claim: %+v", r)
			}
			if log := f.log(t); len(log) != 10 || !strings.HasPrefix(log, "[tryd") || !strings.HasSuffix(log, "\nend\n") {
				t.Errorf("log = %q; want 6 bytes standing for a's part, then end", log)
			}
		})
	}
}

// TestAdoptionLogContinues: an attempt adopted while its job still runs
// continues the log it sent while it waited: the next chunk follows it,
// and a gap after it is a conflict as on any attempt.
func TestAdoptionLogContinues(t *testing.T) {
	ctx := context.Background()
	f := failOverTo(t, time.Second)
	if n, err := f.w.c.AppendLog(ctx, f.attempt, 6, []byte("mid\n")); err != nil || n != 10 {
		t.Fatalf("log chunk while waiting = %d, %v; want 10", n, err)
	}
	if _, err := f.w.c.AppendLog(ctx, f.attempt, 20, []byte("gap\n")); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("log with a gap after the first chunk here, while waiting: %v, want ErrConflict", err)
	}
	f.clock.Advance(2 * time.Second)
	f.b.c.checkAdoptions()
	f.settled(t)
	if n, err := f.w.c.AppendLog(ctx, f.attempt, 10, []byte("end\n")); err != nil || n != 14 {
		t.Fatalf("log chunk after the claim = %d, %v; want 14", n, err)
	}
	if _, err := f.w.c.AppendLog(ctx, f.attempt, 20, []byte("gap\n")); !errors.Is(err, api.ErrConflict) {
		t.Errorf("log with a gap after the claim: %v, want ErrConflict", err)
	}
	f.w.mustPoll(0, nil, f.w.output(api.Assignment{AttemptID: f.attempt}))
	if log := f.log(t); len(log) != 14 || !strings.HasSuffix(log, "\nmid\nend\n") {
		t.Errorf("log = %q; want a's 6 bytes as a notice, mid, end", log)
	}
}

// TestAdoptionBound: while the build's lease cannot be read, an
// attempt waits for its build's claim until adoptionBound (2 LeaseTTL
// plus the heartbeat timeout) after it was listed, and is cancelled
// then; the replica claims nothing. (With the lease readable, the dead
// replica's lease, held far beyond adoptLive, would have the attempt
// cancelled as of a live holder long before.) Its worker, polling all
// along, stays connected.
func TestAdoptionBound(t *testing.T) {
	ctx := context.Background()
	f := failOverTo(t, time.Hour)
	listed := f.clock.Now()
	f.store.failing.Store(true)
	polled := make(chan *api.PollResponse, 1)
	go func() {
		// A long poll listing the attempt: the worker is alive
		// however far the clock moves, and the cancel wakes it.
		r, err := f.w.c.Poll(ctx, api.PollRequest{WorkerID: f.w.id, Running: []string{f.attempt}, WaitMS: time.Hour.Milliseconds()})
		if err != nil {
			t.Errorf("poll: %v", err)
		}
		polled <- r
	}()
	waitFor(t, func() bool {
		f.b.c.mu.Lock()
		defer f.b.c.mu.Unlock()
		s := f.b.c.sessions[f.w.id]
		return s != nil && s.polling > 0
	})
	bound := f.b.c.adoptionBound()
	if bound <= f.b.c.rep.adoptLive() {
		t.Fatalf("adoptionBound %v within adoptLive %v", bound, f.b.c.rep.adoptLive())
	}
	f.clock.Advance(listed.Add(bound - time.Second).Sub(f.clock.Now()))
	f.b.c.checkAdoptions()
	if !f.waiting() {
		t.Fatalf("cancelled %v after it was listed, before the bound %v", bound-time.Second, bound)
	}
	select {
	case r := <-polled:
		t.Fatalf("poll answered before the bound: %+v", r)
	default:
	}
	f.clock.Advance(time.Second)
	f.b.c.checkAdoptions()
	select {
	case r := <-polled:
		if r == nil || !slices.Equal(r.Cancel, []string{f.attempt}) {
			t.Fatalf("poll answered %+v at the bound, want the attempt cancelled", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt was not cancelled at the bound")
	}
	if f.waiting() {
		t.Error("the attempt still waits after its cancel")
	}
	// Its worker stops it: a chunk or a result is now a conflict.
	if _, err := f.w.c.AppendLog(ctx, f.attempt, 6, []byte("end\n")); !errors.Is(err, api.ErrConflict) {
		t.Errorf("log after the cancel: %v, want ErrConflict", err)
	}
	if n := count(f.b.c.rep.claimed); n != 0 {
		t.Errorf("b claimed %v builds, want 0", n)
	}
	f.store.failing.Store(false)
	if l, err := f.store.BuildLease(ctx, f.build, f.clock.Now()); err != nil || !l.Running || l.Owner.ID != "dead" {
		t.Errorf("lease = %+v, %v; want still the dead replica's, running", l, err)
	}
}

// TestAdoptionLogTruncated: a log that reaches the limit while its
// attempt waits for its build's claim is cut there, and the adopted
// attempt is marked log_truncated.
func TestAdoptionLogTruncated(t *testing.T) {
	ctx := context.Background()
	f := failOverTo(t, time.Second, func(o *Options) { o.MaxLogBytes = 12 })
	if n, err := f.w.c.AppendLog(ctx, f.attempt, 6, []byte("middle\nend\n")); err != nil || n != 12 {
		t.Fatalf("log chunk beyond the limit while waiting = %d, %v; want 12 bytes kept", n, err)
	}
	f.clock.Advance(2 * time.Second)
	f.b.c.checkAdoptions()
	f.settled(t)
	f.w.mustPoll(0, nil, f.w.output(api.Assignment{AttemptID: f.attempt}))
	at := f.b.build(f.build).Jobs[0].Attempts
	if len(at) != 1 || at[0].State != api.AttemptSucceeded || at[0].LogBytes != 12 || !at[0].LogTruncated {
		t.Errorf("attempts %+v; want one, succeeded, 12 log bytes, truncated", at)
	}
	if log := f.log(t); len(log) != 12 || !strings.HasSuffix(log, "\nmiddle") {
		t.Errorf("log = %q; want a's 6 bytes as a notice, then middle", log)
	}
}
