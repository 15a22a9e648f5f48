package coordinator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate"
)

// slowReads is a PostgreSQL store whose next read of a build's jobs or
// attempts (method), once armed, blocks until release is closed: a
// store round trip that takes long, as on a CPU-starved replica. The
// blocked read's build is sent on entered.
type slowReads struct {
	*pgstate.Store
	method  string
	armed   atomic.Bool
	entered chan int64
	release chan struct{}
}

func (s *slowReads) block(ctx context.Context, method string, id int64) {
	if method != s.method || !s.armed.CompareAndSwap(true, false) {
		return
	}
	s.entered <- id
	select {
	case <-s.release:
	case <-ctx.Done():
	}
}

func (s *slowReads) Jobs(ctx context.Context, id int64) ([]state.Job, error) {
	s.block(ctx, "Jobs", id)
	return s.Store.Jobs(ctx, id)
}

func (s *slowReads) Attempts(ctx context.Context, id int64) ([]state.Attempt, error) {
	s.block(ctx, "Attempts", id)
	return s.Store.Attempts(ctx, id)
}

// TestClaimReadsWithoutLock: while a replica reads a claimed build back
// from the store (its reads slowed), its worker polls and build
// statuses are answered: the reads do not hold the coordinator's lock.
// The build is resumed once they end, and runs; a Cancel of it that
// arrives meanwhile waits for the resume and cancels it.
func TestClaimReadsWithoutLock(t *testing.T) {
	tests := []struct {
		name string
		// method is the store read that blocks.
		method string
		// held says the claim is not fresh (a store without fresh
		// claims: the build may have run elsewhere), so its attempts
		// are read; otherwise the replica forgets what it kept when
		// it offered the build, so that the claim reads it back.
		held   bool
		cancel bool
	}{
		{"fresh claim of a build not kept", "Jobs", false, false},
		{"claim of a build that may have run elsewhere", "Attempts", true, false},
		{"cancel while the claim reads", "Jobs", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var slow *slowReads
			a := newEnv(t, postgresBackend, envOpts{mod: func(o *Options) {
				slow = &slowReads{Store: o.Store.(*pgstate.Store), method: tt.method, entered: make(chan int64, 1), release: make(chan struct{})}
				o.Store = slow
				o.Replica = &ReplicaOptions{ID: "a", URL: "http://127.0.0.1:1", LeaseTTL: time.Minute}
			}})
			released := false
			t.Cleanup(func() {
				if !released {
					close(slow.release)
				}
			})
			if tt.held {
				// No worker is registered: the claim loop reads this
				// only after the registration below.
				a.c.rep.freshClaims = nil
			}
			sub := a.submit(twoJobs, api.PriorityTry) // no workers: offered
			if !tt.held && a.c.rep.offered.take(sub.BuildID) == nil {
				t.Fatal("the offered build was not kept")
			}
			slow.armed.Store(true)
			w := newTestWorker(t, a, "w1", tokenW1, nil) // kicks the claim loop
			select {
			case id := <-slow.entered:
				if id != sub.BuildID {
					t.Fatalf("blocked reading build %d, want %d", id, sub.BuildID)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the claim did not read the build back")
			}

			// The claim is blocked in the store: the replica answers.
			w.waitMS = 50
			polled := make(chan error, 1)
			go func() {
				resp, err := w.poll(1, nil)
				if err == nil && len(resp.Assignments) != 0 {
					t.Errorf("assigned %+v before the build was resumed", resp.Assignments)
				}
				polled <- err
			}()
			select {
			case err := <-polled:
				if err != nil {
					t.Fatalf("poll: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a worker poll waited for the claim's store reads")
			}
			if st := a.build(sub.BuildID); st.State != api.BuildRunning {
				t.Fatalf("build %s while it is claimed", st.State)
			}

			var cancelled chan error
			if tt.cancel {
				cancelled = make(chan error, 1)
				go func() { cancelled <- a.c.Cancel(context.Background(), sub.BuildID) }()
				select {
				case err := <-cancelled:
					t.Fatalf("cancel answered (%v) before the claimed build was resumed", err)
				case <-time.After(200 * time.Millisecond):
				}
			}
			close(slow.release)
			released = true
			if tt.cancel {
				if err := <-cancelled; err != nil {
					t.Fatalf("cancel: %v", err)
				}
				awaitCancelled(t, a, sub.BuildID)
				if n := count(a.c.rep.claimed); n != 1 {
					t.Errorf("%v builds claimed, want 1", n)
				}
				return
			}
			waitFor(t, func() bool { return count(a.c.rep.claimed) == 1 })
			w.waitMS = 0
			w.drain(a, sub.BuildID, nil)
			if st := a.build(sub.BuildID); st.State != api.BuildSucceeded || len(names(st.Jobs, api.JobSucceeded)) != 2 {
				t.Fatalf("build = %+v", st)
			}
			if n := count(a.c.rep.claimedOffered); n != 0 {
				t.Errorf("%v builds resumed from memory, want 0", n)
			}
		})
	}
}
