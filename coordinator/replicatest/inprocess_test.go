package replicatest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
)

const (
	inClientToken = "client-token-0123456789"
	inWorkerToken = "worker-token-0123456789"
	// inWorker2Token is the token of worker w2.
	inWorker2Token = "worker-token-2123456789"
)

// replica is an in-process coordinator replica served on loopback.
type replica struct {
	c     *coordinator.Coordinator
	store *pgstate.Store
	url   string
	reg   *prometheus.Registry
}

// counter returns the value of a counter the replica exports.
func (r *replica) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// newReplica starts a replica on the database with a short lease, sharing
// arts with the other replicas.
func newReplica(t *testing.T, dsn, id string, arts artifacts.Store) *replica {
	t.Helper()
	return newReplicaClock(t, dsn, id, arts, nil)
}

// newReplicaClock is newReplica with a clock (nil: the real one).
func newReplicaClock(t *testing.T, dsn, id string, arts artifacts.Store, clock coordinator.Clock) *replica {
	t.Helper()
	ctx := context.Background()
	st, err := pgstate.Open(ctx, pgstate.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Load().(http.Handler).ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	url := "http://" + ln.Addr().String()
	reg := prometheus.NewRegistry()
	c, err := coordinator.New(ctx, coordinator.Options{
		Registry: reg,
		Store:    st, Artifacts: arts, Dir: t.TempDir(),
		WorkerTokens: map[string]string{"w1": inWorkerToken, "w2": inWorker2Token}, ClientToken: inClientToken,
		PollTimeout: time.Second,
		Clock:       clock,
		Replica:     &coordinator.ReplicaOptions{ID: id, URL: url, LeaseTTL: 600 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Store(c.Handler())
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return &replica{c: c, store: st, url: url, reg: reg}
}

// sharedStores returns a new database on the test PostgreSQL server and
// an artifact store on disk, for replicas to share.
func sharedStores(t *testing.T) (dsn string, arts artifacts.Store) {
	t.Helper()
	dsn = pgtest.Start(t).NewDatabase(t)
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return dsn, arts
}

// register registers worker name (with token) on r, with one slot, and
// returns its client and worker ID.
func (r *replica) register(t *testing.T, name, token string) (*api.Client, string) {
	t.Helper()
	cl := r.client(t, token)
	reg, err := cl.Register(t.Context(), api.RegisterRequest{Name: name, Slots: 1, Labels: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	return cl, reg.WorkerID
}

func (r *replica) client(t *testing.T, token string) *api.Client {
	cl, err := api.NewClient(r.url, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// pollUntil polls as worker w1 until cond accepts an answer.
func pollUntil(t *testing.T, cl *api.Client, req api.PollRequest, what string, cond func(*api.PollResponse) bool) *api.PollResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req.WaitMS = 200
		resp, err := cl.Poll(t.Context(), req)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if cond(resp) {
			return resp
		}
	}
	t.Fatalf("no poll answer with %s within 20s", what)
	return nil
}

func inGraph(name string) api.SubmitRequest {
	return api.SubmitRequest{Graph: graphOf(name, 1)}
}

// TestUnheldBuildIsClaimed: a build submitted to a replica without
// workers is not run there: the replica with a worker claims it at once
// (LISTEN/NOTIFY), runs it, and the first replica answers its status.
func TestUnheldBuildIsClaimed(t *testing.T) {
	dsn, arts := sharedStores(t)
	a := newReplica(t, dsn, "replica-a", arts)
	b := newReplica(t, dsn, "replica-b", arts)
	wcl, reg := b.register(t, "w1", inWorkerToken)
	sub, err := a.client(t, inClientToken).Submit(t.Context(), inGraph("claimed"))
	if err != nil {
		t.Fatal(err)
	}
	resp := pollUntil(t, wcl, api.PollRequest{WorkerID: reg, FreeSlots: 1}, "an assignment",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 1 })
	as := resp.Assignments[0]
	if as.BuildID != sub.BuildID {
		t.Fatalf("assignment of build %d, want %d", as.BuildID, sub.BuildID)
	}
	// While it runs, replica a forwards status calls to b.
	st, err := a.client(t, inClientToken).Build(t.Context(), sub.BuildID)
	if err != nil || st.Jobs[0].State != api.JobRunning {
		t.Fatalf("status via a = %+v, %v", st, err)
	}
	out := []byte("output")
	sum := sha256.Sum256(out)
	digest := hex.EncodeToString(sum[:])
	if err := arts.Put(t.Context(), digest, bytes.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	zero := 0
	if err := wcl.Result(t.Context(), api.AttemptResult{AttemptID: as.AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: digest, OutputSize: int64(len(out))}); err != nil {
		t.Fatal(err)
	}
	final, err := a.client(t, inClientToken).Wait(t.Context(), sub.BuildID, nil)
	if err != nil || final.State != api.BuildSucceeded {
		t.Errorf("build via a = %+v, %v", final, err)
	}
	if n := b.counter(t, "tryd_coordinator_builds_claimed_total"); n != 1 {
		t.Errorf("b claimed %v builds, want 1", n)
	}
	if n := a.counter(t, "tryd_coordinator_builds_claimed_total"); n != 0 {
		t.Errorf("a claimed %v builds, want 0", n)
	}
}

// frozenClock is a Clock whose time never moves and whose timers never
// fire.
type frozenClock struct{ now time.Time }

func (f frozenClock) Now() time.Time                     { return f.now }
func (frozenClock) After(time.Duration) <-chan time.Time { return nil }

// TestEventsFollowTheClaimingReplica: a client following a build that no
// replica holds yet waits on the replica it called, which forwards the
// stream as soon as another replica claims the build. That replica's
// clock is frozen, so its fallback lease polls never fire: only the held
// notice (LISTEN tryd_held) can wake the waiting call.
func TestEventsFollowTheClaimingReplica(t *testing.T) {
	dsn, arts := sharedStores(t)
	a := newReplicaClock(t, dsn, "replica-a", arts, frozenClock{time.Now()})
	b := newReplica(t, dsn, "replica-b", arts)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// No replica has a worker: the build waits for a holder.
	sub, err := a.client(t, inClientToken).Submit(ctx, inGraph("followed"))
	if err != nil {
		t.Fatal(err)
	}
	type waited struct {
		b      *api.Build
		events int
		err    error
	}
	done := make(chan waited, 1)
	go func() {
		n := 0
		final, err := a.client(t, inClientToken).Wait(ctx, sub.BuildID, func(api.Event) { n++ })
		done <- waited{final, n, err}
	}()
	time.Sleep(300 * time.Millisecond) // let the call wait for a holder
	wcl, reg := b.register(t, "w1", inWorkerToken)
	resp := pollUntil(t, wcl, api.PollRequest{WorkerID: reg, FreeSlots: 1}, "an assignment",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 1 })
	as := resp.Assignments[0]
	out := []byte("output")
	sum := sha256.Sum256(out)
	digest := hex.EncodeToString(sum[:])
	if err := arts.Put(ctx, digest, bytes.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	zero := 0
	if err := wcl.Result(ctx, api.AttemptResult{AttemptID: as.AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: digest, OutputSize: int64(len(out))}); err != nil {
		t.Fatal(err)
	}
	w := <-done
	if w.err != nil || w.b.State != api.BuildSucceeded {
		t.Fatalf("following the build through a = %+v, %v (a woken by no held notice?)", w.b, w.err)
	}
	if w.events == 0 {
		t.Error("no events forwarded from the holder")
	}
}

// TestLostLeaseDropsBuild: when another replica takes a build's lease
// (this one was paused past its TTL), the replica forgets the build,
// tells its worker to stop the attempt, and forwards calls about the
// build to the new holder (here unreachable: 503, retry).
func TestLostLeaseDropsBuild(t *testing.T) {
	dsn, arts := sharedStores(t)
	a := newReplica(t, dsn, "replica-a", arts)
	wcl, reg := a.register(t, "w1", inWorkerToken)
	sub, err := a.client(t, inClientToken).Submit(t.Context(), inGraph("stolen"))
	if err != nil {
		t.Fatal(err)
	}
	resp := pollUntil(t, wcl, api.PollRequest{WorkerID: reg, FreeSlots: 1}, "an assignment",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 1 })
	id := resp.Assignments[0].AttemptID

	// Another replica (a dead address) takes the lease.
	ok, err := a.store.HoldBuild(t.Context(), sub.BuildID, stateOwner("thief", "http://127.0.0.1:1"), time.Now().Add(time.Hour), time.Now().Add(2*time.Hour))
	if err != nil || !ok {
		t.Fatalf("steal lease = %v, %v", ok, err)
	}
	pollUntil(t, wcl, api.PollRequest{WorkerID: reg, Running: []string{id}}, "a cancel",
		func(r *api.PollResponse) bool { return len(r.Cancel) == 1 && r.Cancel[0] == id })
	_, err = a.client(t, inClientToken).Build(t.Context(), sub.BuildID)
	if !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("status of a build held by a dead replica = %v, want ErrUnavailable", err)
	}
	if n := a.counter(t, "tryd_coordinator_builds_dropped_total"); n != 1 {
		t.Errorf("a dropped %v builds, want 1", n)
	}
}

// TestLostLeaseDropsPrefetched: a replica that loses the lease of a
// build tells its worker at once to forget the build's prefetched and
// pipelined attempts too, not only its running ones (it no longer holds
// the build: a worker starting one would run a job the new holder runs).
func TestLostLeaseDropsPrefetched(t *testing.T) {
	dsn, arts := sharedStores(t)
	a := newReplica(t, dsn, "replica-a", arts)
	wcl, reg := a.register(t, "w1", inWorkerToken)
	sub, err := a.client(t, inClientToken).Submit(t.Context(), api.SubmitRequest{Graph: graphOf("prefetched", 4)})
	if err != nil {
		t.Fatal(err)
	}
	resp := pollUntil(t, wcl, api.PollRequest{WorkerID: reg, FreeSlots: 1, Prefetch: 3}, "a running and prefetched assignments",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 4 })
	var ids []string
	for _, as := range resp.Assignments {
		ids = append(ids, as.AttemptID)
	}

	ok, err := a.store.HoldBuild(t.Context(), sub.BuildID, stateOwner("thief", "http://127.0.0.1:1"), time.Now().Add(time.Hour), time.Now().Add(2*time.Hour))
	if err != nil || !ok {
		t.Fatalf("steal lease = %v, %v", ok, err)
	}
	cancelled := map[string]bool{}
	pollUntil(t, wcl, api.PollRequest{WorkerID: reg, Running: ids}, "cancels of every attempt",
		func(r *api.PollResponse) bool {
			for _, id := range r.Cancel {
				cancelled[id] = true
			}
			return len(cancelled) == len(ids)
		})
	for _, id := range ids {
		if !cancelled[id] {
			t.Errorf("attempt %s not cancelled", id)
		}
	}
}

// TestPrefetchedJobsAreNotSpareSlots: jobs that a replica's workers
// hold prefetched are queued work (a full prefetch queue, a round). A
// replica whose one worker runs a job and holds four more did count its
// slot as spare (its ready queue was empty) and took the next build
// submitted to it, which then waited there while another replica's
// worker idled; it offers the build instead, and the idle worker runs it.
func TestPrefetchedJobsAreNotSpareSlots(t *testing.T) {
	dsn, arts := sharedStores(t)
	a := newReplica(t, dsn, "replica-a", arts)
	b := newReplica(t, dsn, "replica-b", arts)
	w1, reg1 := a.register(t, "w1", inWorkerToken)
	ac := a.client(t, inClientToken)
	if _, err := ac.Submit(t.Context(), api.SubmitRequest{Graph: graphOf("busy", 5)}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, w1, api.PollRequest{WorkerID: reg1, FreeSlots: 1, Prefetch: 4}, "a running and four prefetched assignments",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 5 })

	w2, reg2 := b.register(t, "w2", inWorker2Token)
	sub, err := ac.Submit(t.Context(), api.SubmitRequest{Graph: graphOf("next", 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := w2.Poll(t.Context(), api.PollRequest{WorkerID: reg2, FreeSlots: 1, WaitMS: 200})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Assignments) == 1 && resp.Assignments[0].BuildID == sub.BuildID {
			break
		}
		if time.Now().After(deadline) {
			l, _ := a.store.BuildLease(t.Context(), sub.BuildID, time.Time{})
			t.Fatalf("idle w2 (replica b) not given build %d within 5s; held by %q", sub.BuildID, l.Owner.ID)
		}
	}
}

func stateOwner(id, url string) state.Owner { return state.Owner{ID: id, URL: url} }

// countingClock is the real clock, counting the waits shorter than
// 10ms asked of it (a replica's checks for spare slots).
type countingClock struct{ short atomic.Int64 }

func (*countingClock) Now() time.Time { return time.Now() }

func (c *countingClock) After(d time.Duration) <-chan time.Time {
	if d < 10*time.Millisecond {
		c.short.Add(1)
	}
	return time.After(d)
}

// TestReplicaWithoutWorkersDoesNotSpin: while a build waits for a
// holder, a replica without workers does not check for spare slots
// every few milliseconds (it has none to free); a worker registering
// makes it claim the build at once.
func TestReplicaWithoutWorkersDoesNotSpin(t *testing.T) {
	dsn, arts := sharedStores(t)
	clock := &countingClock{}
	a := newReplicaClock(t, dsn, "replica-a", arts, clock)
	sub, err := a.client(t, inClientToken).Submit(t.Context(), inGraph("waiting"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	// Checking every 4ms would be over 100 waits.
	if n := clock.short.Load(); n > 5 {
		t.Errorf("a replica without workers waited %d times for less than 10ms while a build waited", n)
	}
	wcl, reg := a.register(t, "w1", inWorkerToken)
	resp := pollUntil(t, wcl, api.PollRequest{WorkerID: reg, FreeSlots: 1}, "an assignment",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 1 })
	if resp.Assignments[0].BuildID != sub.BuildID {
		t.Errorf("assignment of build %d, want %d", resp.Assignments[0].BuildID, sub.BuildID)
	}
}
