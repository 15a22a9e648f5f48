package coordinator

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// twoJobs is a graph of two independent jobs that are not cacheable, so
// that a job resumed without its record (waiting again) runs again
// rather than being found in the result cache.
const twoJobs = `{"jobs": [
	{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "a"}}]},
	{"name": "b", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "b"}}]}]}`

// newReplicaEnv starts replica id on the PostgreSQL database db (one
// of the package's schemas), with a lease of ttl. Its URL is never
// called: the tests ask each replica about the builds it holds.
func newReplicaEnv(t *testing.T, db, id string, ttl time.Duration) *env {
	t.Helper()
	return newEnv(t, postgresBackend, envOpts{db: db, mod: func(o *Options) {
		o.Replica = &ReplicaOptions{ID: id, URL: "http://127.0.0.1:1", LeaseTTL: ttl}
	}})
}

// count returns a counter's value.
func count(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestClaimBackOfferedBuild: a build a replica offered (no workers when
// it was submitted) and claims back once a worker registers, no replica
// having held it meanwhile, is resumed from what the replica kept, not
// read back from the store, and runs as any other.
func TestClaimBackOfferedBuild(t *testing.T) {
	db := postgresBackend.newDB(t)
	a := newReplicaEnv(t, db, "a", time.Minute)
	sub := a.submit(twoJobs, api.PriorityTry)
	a.c.rep.offered.mu.Lock()
	_, kept := a.c.rep.offered.byID[sub.BuildID]
	a.c.rep.offered.mu.Unlock()
	if !kept {
		t.Fatalf("build %d was not kept when offered", sub.BuildID)
	}
	w := newTestWorker(t, a, "w1", tokenW1, nil)
	waitFor(t, func() bool { return count(a.c.rep.claimed) == 1 })
	if n := count(a.c.rep.claimedOffered); n != 1 {
		t.Errorf("claimed back %v builds from memory, want 1", n)
	}
	if b := a.c.rep.offered.take(sub.BuildID); b != nil {
		t.Error("the claimed build is still kept")
	}
	w.drain(a, sub.BuildID, nil)
	if st := a.build(sub.BuildID); st.State != api.BuildSucceeded || len(names(st.Jobs, api.JobSucceeded)) != 2 {
		t.Fatalf("build = %+v", st)
	}
}

// skewedClock is the real clock moved by d: a replica whose clock is
// ahead sees the others' leases expire early.
type skewedClock struct{ d time.Duration }

func (s skewedClock) Now() time.Time                       { return time.Now().Add(s.d) }
func (skewedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// TestClaimBackAfterAnotherReplicaRan: a build offered by replica a,
// claimed and partly run by replica b, which then gives it up (it stops,
// releasing its leases, or its lease expires: a's clock is ahead), is
// claimed by a and resumed from the store, not from what a kept when it
// offered the build: the job b finished stays finished (one attempt, on
// b's worker), and only the other job runs on a.
func TestClaimBackAfterAnotherReplicaRan(t *testing.T) {
	const ttl = time.Minute
	for _, tt := range []struct {
		name   string
		aClock Clock
		bStops bool
	}{
		{"b stops", nil, true},
		{"b's lease expires", skewedClock{2 * ttl}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := postgresBackend.newDB(t)
			a := newEnv(t, postgresBackend, envOpts{db: db, clock: tt.aClock, mod: func(o *Options) {
				o.Replica = &ReplicaOptions{ID: "a", URL: "http://127.0.0.1:1", LeaseTTL: ttl}
			}})
			b := newReplicaEnv(t, db, "b", ttl)
			sub := a.submit(twoJobs, api.PriorityTry)
			wb := newTestWorker(t, b, "w2", tokenW2, nil)
			var as api.Assignment
			waitFor(t, func() bool {
				r, err := wb.poll(1, nil)
				if err != nil || len(r.Assignments) == 0 {
					return false
				}
				as = r.Assignments[0]
				return true
			})
			wb.mustPoll(0, []string{}, wb.output(as))
			ctx := context.Background()
			waitFor(t, func() bool {
				rows, err := b.c.store.Jobs(ctx, sub.BuildID)
				for _, r := range rows {
					if err == nil && r.Name == as.Job.Name && r.State == api.JobSucceeded {
						return true
					}
				}
				return false
			})
			if tt.bStops {
				b.stop()
			}

			wa := newTestWorker(t, a, "w1", tokenW1, nil)
			waitFor(t, func() bool { return count(a.c.rep.claimed) == 1 })
			if n := count(a.c.rep.claimedOffered); n != 0 {
				t.Errorf("a resumed %v builds from memory, want 0 (b held the build)", n)
			}
			order := wa.drain(a, sub.BuildID, nil)
			if len(order) != 1 || order[0] == as.Job.Name {
				t.Errorf("a ran %v; want only the job b did not run (b ran %s)", order, as.Job.Name)
			}
			st := a.build(sub.BuildID)
			if st.State != api.BuildSucceeded {
				t.Fatalf("build = %+v", st)
			}
			done := jobByName(st, as.Job.Name)
			if done.State != api.JobSucceeded || len(done.Attempts) != 1 || done.Attempts[0].Worker != "w2" {
				t.Errorf("job %s that b ran = %+v; want succeeded with b's one attempt", as.Job.Name, done)
			}
		})
	}
}

// awaitCancelled waits until build id is stored cancelled.
func awaitCancelled(t *testing.T, e *env, id int64) {
	t.Helper()
	waitFor(t, func() bool {
		sb, err := e.c.store.Build(context.Background(), id)
		return err == nil && sb.State == api.BuildCancelled
	})
}

// checkNotRun registers a worker on replica e, which has claimed
// nothing, and checks that it is assigned nothing for a second and
// that e still claims nothing.
func checkNotRun(t *testing.T, e *env) {
	t.Helper()
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	w.waitMS = 1000
	if r := w.mustPoll(4, nil); len(r.Assignments) != 0 {
		t.Errorf("assigned %+v of the cancelled build", r.Assignments)
	}
	if n := count(e.c.rep.claimed); n != 0 {
		t.Errorf("claimed %v builds, want 0", n)
	}
}

// TestCancelledOfferedBuildStaysCancelled: a build offered by replica
// a, claimed by replica b and cancelled there, is not resurrected from
// what a kept when it offered it: once a has a worker (and b stopped),
// a claims nothing and runs nothing, and the build stays cancelled.
func TestCancelledOfferedBuildStaysCancelled(t *testing.T) {
	db := postgresBackend.newDB(t)
	a := newReplicaEnv(t, db, "a", time.Minute)
	b := newReplicaEnv(t, db, "b", time.Minute)
	sub := a.submit(twoJobs, api.PriorityTry)
	newTestWorker(t, b, "w2", tokenW2, nil)
	waitFor(t, func() bool { return count(b.c.rep.claimed) == 1 })
	if err := b.client.Cancel(context.Background(), sub.BuildID); err != nil {
		t.Fatal(err)
	}
	awaitCancelled(t, a, sub.BuildID)
	b.stop()
	checkNotRun(t, a)
	if st := a.build(sub.BuildID); st.State != api.BuildCancelled {
		t.Errorf("cancelled build is %s on a", st.State)
	}
	a.c.mu.Lock()
	_, here := a.c.builds[sub.BuildID]
	a.c.mu.Unlock()
	if here {
		t.Error("a resumed the cancelled build")
	}
}

// TestOfferedBuildsBound: the builds a replica keeps offered stay under
// maxOfferedJobs jobs, the oldest forgotten first; a build taken is
// forgotten, and one larger than the bound is never kept.
func TestOfferedBuildsBound(t *testing.T) {
	withJobs := func(n int) *offeredBuild {
		g := &graph.Graph{Jobs: make([]*graph.Job, n)}
		return &offeredBuild{g: g}
	}
	tests := []struct {
		name  string
		sizes []int // builds 1, 2, ... put in order
		take  []int64
		kept  []int64
	}{
		{"under the bound", []int{10, 20}, nil, []int64{1, 2}},
		{"oldest forgotten", []int{maxOfferedJobs / 2, maxOfferedJobs / 2, 1}, nil, []int64{2, 3}},
		{"taken ones make room", []int{maxOfferedJobs / 2, maxOfferedJobs / 2, maxOfferedJobs / 2}, []int64{2}, []int64{1, 3}},
		{"too large", []int{maxOfferedJobs + 1, 1}, nil, []int64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o offeredBuilds
			for i, n := range tt.sizes {
				if slices.Contains(tt.take, int64(i)) {
					o.take(int64(i))
				}
				o.put(int64(i+1), withJobs(n))
			}
			var kept []int64
			jobs := 0
			for id := int64(1); id <= int64(len(tt.sizes)); id++ {
				if b := o.byID[id]; b != nil {
					kept = append(kept, id)
					jobs += len(b.g.Jobs)
				}
			}
			if !slices.Equal(kept, tt.kept) || jobs != o.jobs || o.jobs > maxOfferedJobs {
				t.Errorf("kept %v (%d jobs, counted %d); want %v", kept, jobs, o.jobs, tt.kept)
			}
		})
	}
	// Builds taken as fast as they are put leave no trail.
	var o offeredBuilds
	for id := range int64(10000) {
		o.put(id, withJobs(1))
		o.take(id)
	}
	if len(o.order) > 100 || o.jobs != 0 {
		t.Errorf("after 10000 builds put and taken: %d in order, %d jobs", len(o.order), o.jobs)
	}
}

// TestCancelUnheldBuild: cancelling a build that waits for a claim (no
// replica has spare workers) cancels it: the replica called takes it,
// records it cancelled, and no replica runs it later. Over HTTP the
// replica answers at once, rather than wait for a holder (up to
// unheldWait) as an event stream does.
func TestCancelUnheldBuild(t *testing.T) {
	tests := []struct {
		name   string
		cancel func(ctx context.Context, b *env, id int64) error
	}{
		{"method", func(ctx context.Context, b *env, id int64) error { return b.c.Cancel(ctx, id) }},
		{"HTTP", func(ctx context.Context, b *env, id int64) error {
			ctx, cancel := context.WithTimeout(ctx, unheldWait/3)
			defer cancel()
			return b.client.Cancel(ctx, id)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := postgresBackend.newDB(t)
			a := newReplicaEnv(t, db, "a", time.Minute)
			b := newReplicaEnv(t, db, "b", time.Minute)
			sub := a.submit(twoJobs, api.PriorityTry)
			ctx := context.Background()
			if l, err := b.c.rep.leases.BuildLease(ctx, sub.BuildID, time.Now()); err != nil || l.Held {
				t.Fatalf("lease = %+v, %v; want unheld", l, err)
			}
			// Called on b, which never saw the build.
			if err := tt.cancel(ctx, b, sub.BuildID); err != nil {
				t.Fatalf("cancel: %v", err)
			}
			awaitCancelled(t, a, sub.BuildID)
			checkNotRun(t, a)
			if st := b.build(sub.BuildID); st.State != api.BuildCancelled || len(names(st.Jobs, api.JobCancelled))+len(names(st.Jobs, api.JobSkipped)) != 2 {
				t.Errorf("build on b = %s, jobs %+v", st.State, st.Jobs)
			}
			// Cancelling again, or a finished build, does nothing.
			if err := a.c.Cancel(ctx, sub.BuildID); err != nil {
				t.Errorf("second cancel: %v", err)
			}
		})
	}
}

// TestHoldSubmittedOutlivesRequest: a submitted build is stored before
// the replica decides whether it runs it; a submitter that hangs up
// then (its request's context cancelled) must not leave the build
// neither held nor offered. The hold goes through, and the build is
// this replica's.
func TestHoldSubmittedOutlivesRequest(t *testing.T) {
	db := postgresBackend.newDB(t)
	a := newReplicaEnv(t, db, "a", time.Minute)
	newTestWorker(t, a, "w1", tokenW1, nil) // spare slots: a holds what it is submitted
	time.Sleep(100 * time.Millisecond)      // the registration's claim pass finds nothing
	bg := context.Background()
	id, err := a.c.store.CreateBuild(bg, &state.Build{Priority: api.PriorityTry, Graph: []byte(twoJobs), State: api.BuildRunning, Created: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Decode(strings.NewReader(twoJobs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if !a.c.holdSubmitted(ctx, id, &offeredBuild{g: g}) {
		t.Fatal("holdSubmitted with the request gone = false, want true (the build is stored and a has spare slots)")
	}
	l, err := a.c.rep.leases.BuildLease(bg, id, time.Time{})
	if err != nil || !l.Held || l.Owner.ID != "a" {
		t.Fatalf("lease = %+v, %v; want held by a", l, err)
	}
}
