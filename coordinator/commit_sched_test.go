package coordinator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/internal/logging"
)

// countingStore counts commits and does nothing else.
type countingStore struct {
	state.Store
	commits atomic.Int32
}

func (s *countingStore) Commit(ctx context.Context, b *state.Batch) error {
	s.commits.Add(1)
	return nil
}

// TestCommitIntervalSched checks the pacing of commits: a change after a
// quiet time commits at once; changes right after a commit wait for the
// rest of the interval and commit together; an urgent waiter does not
// wait for the interval.
func TestCommitIntervalSched(t *testing.T) {
	store := &countingStore{}
	c := newCommitter(store, logging.Discard(), newMetrics(nil))
	c.interval = 400 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, tk ticket, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case <-tk:
		case <-time.After(within):
			t.Fatalf("%s: not committed within %v", what, within)
		}
		return time.Since(start)
	}
	if d := waitFor("first change", c.job(state.Job{BuildID: 1, JobID: "a"}), 5*time.Second); d > 200*time.Millisecond {
		t.Errorf("a change after a quiet time waited %v", d)
	}
	t1 := c.job(state.Job{BuildID: 1, JobID: "b"})
	t2 := c.job(state.Job{BuildID: 1, JobID: "c"})
	if d := waitFor("paced changes", t1, 5*time.Second); d < 200*time.Millisecond {
		t.Errorf("a change right after a commit waited only %v of the interval", d)
	}
	waitFor("second paced change", t2, time.Second)
	if n := store.commits.Load(); n != 2 {
		t.Errorf("%d commits, want 2 (the paced changes together)", n)
	}
	c.job(state.Job{BuildID: 1, JobID: "d"})
	if d := waitFor("urgent", c.currentUrgent(), 5*time.Second); d > 200*time.Millisecond {
		t.Errorf("an urgent waiter waited %v", d)
	}
}
