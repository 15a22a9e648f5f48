package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/state"
)

// committer writes state changes in batches (group commit): changes made
// while one transaction runs are collected and written by the next one, so
// that thousands of job transitions a second cost a few transactions.
// Records are keyed, so a job that changes three times between commits is
// written once. Callers that must not answer before their change is
// durable wait on the ticket that add returns.
type committer struct {
	store state.Store
	log   logrus.FieldLogger
	m     *metrics
	// barrier, if set, is held while a batch is taken: the scheduler
	// makes related changes (a planner's success and its spliced jobs, a
	// failure and the skips it causes) under it, so a batch never holds
	// half of them.
	barrier sync.Locker
	// interval is the least time between the starts of two commits
	// (Options.CommitInterval).
	interval time.Duration

	mu   sync.Mutex
	kick chan struct{}
	// urgent cuts the wait for the rest of the interval short: a
	// waiter's next step depends on the commit.
	urgent   chan struct{}
	builds   map[int64]state.BuildUpdate
	jobs     map[jobKey]state.Job
	attempts map[string]state.Attempt
	results  map[string]state.Result
	workers  map[string]state.Worker
	done     chan struct{} // closed when the pending changes are committed
	err      error         // of the last failed commit
}

type jobKey struct {
	build int64
	job   string
}

func newCommitter(store state.Store, log logrus.FieldLogger, m *metrics) *committer {
	c := &committer{store: store, log: log, m: m, kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
	c.reset()
	return c
}

func (c *committer) reset() {
	c.builds = map[int64]state.BuildUpdate{}
	c.jobs = map[jobKey]state.Job{}
	c.attempts = map[string]state.Attempt{}
	c.results = map[string]state.Result{}
	c.workers = map[string]state.Worker{}
	c.done = make(chan struct{})
}

// ticket is closed when the changes added before it are durable.
type ticket <-chan struct{}

func (c *committer) job(j state.Job) ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.jobs[jobKey{j.BuildID, j.JobID}] = j
	return c.kickLocked()
}

// jobList records many jobs under one lock (a submission's initial
// states).
func (c *committer) jobList(js []state.Job) ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range js {
		c.jobs[jobKey{j.BuildID, j.JobID}] = j
	}
	return c.kickLocked()
}

func (c *committer) attempt(a state.Attempt) ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts[a.ID] = a
	return c.kickLocked()
}

func (c *committer) build(u state.BuildUpdate) ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.builds[u.ID]; ok && u.Graph == nil {
		u.Graph = old.Graph
	}
	c.builds[u.ID] = u
	return c.kickLocked()
}

func (c *committer) result(r state.Result) ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results[r.JobID] = r
	return c.kickLocked()
}

func (c *committer) worker(w state.Worker) ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.workers[w.Name] = w
	return c.kickLocked()
}

// current returns the ticket of the changes added so far.
func (c *committer) current() ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kickLocked()
}

// currentUrgent is current for a waiter that can do nothing else until
// the commit (a worker of the previous protocol version, whose next
// assignment comes with the acknowledgement of its results): the commit
// starts without waiting for the rest of the interval.
func (c *committer) currentUrgent() ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case c.urgent <- struct{}{}:
	default:
	}
	return c.kickLocked()
}

func (c *committer) kickLocked() ticket {
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return c.done
}

// take returns the pending batch and its done channel, leaving an empty
// one behind.
func (c *committer) take() (*state.Batch, chan struct{}) {
	if c.barrier != nil {
		c.barrier.Lock()
		defer c.barrier.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &state.Batch{}
	for _, u := range c.builds {
		b.Builds = append(b.Builds, u)
	}
	for _, j := range c.jobs {
		b.Jobs = append(b.Jobs, j)
	}
	for _, a := range c.attempts {
		b.Attempts = append(b.Attempts, a)
	}
	for _, r := range c.results {
		b.Results = append(b.Results, r)
	}
	for _, w := range c.workers {
		b.Workers = append(b.Workers, w)
	}
	done := c.done
	c.reset()
	return b, done
}

// run commits until ctx ends. A failed commit is retried (its changes are
// merged back unless newer ones replaced them) so that a transient store
// error loses nothing.
func (c *committer) run(ctx context.Context) {
	var last time.Time // start of the last commit
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		if wait := c.interval - time.Since(last); wait > 0 {
			// Let changes gather for the rest of the interval.
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-c.urgent:
				t.Stop()
			}
		}
		last = time.Now()
		for {
			err := c.commitOnce(context.Background())
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func (c *committer) commitOnce(ctx context.Context) error {
	b, done := c.take()
	if b.Empty() {
		close(done)
		return nil
	}
	start := time.Now()
	err := c.store.Commit(ctx, b)
	c.m.commitSeconds.Observe(time.Since(start).Seconds())
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	if err != nil {
		c.m.commitErrors.Inc()
		c.log.WithError(err).Error("commit state; will retry")
		c.requeue(b, done)
		return err
	}
	close(done)
	return nil
}

// lastErr returns the error of the last commit, nil if it succeeded.
func (c *committer) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// requeue merges a failed batch back under newer changes and chains its
// waiters to the next commit.
func (c *committer) requeue(b *state.Batch, done chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range b.Builds {
		if _, ok := c.builds[u.ID]; !ok {
			c.builds[u.ID] = u
		}
	}
	for _, j := range b.Jobs {
		if _, ok := c.jobs[jobKey{j.BuildID, j.JobID}]; !ok {
			c.jobs[jobKey{j.BuildID, j.JobID}] = j
		}
	}
	for _, a := range b.Attempts {
		if _, ok := c.attempts[a.ID]; !ok {
			c.attempts[a.ID] = a
		}
	}
	for _, r := range b.Results {
		if _, ok := c.results[r.JobID]; !ok {
			c.results[r.JobID] = r
		}
	}
	for _, w := range b.Workers {
		if _, ok := c.workers[w.Name]; !ok {
			c.workers[w.Name] = w
		}
	}
	next := c.done
	go func() { <-next; close(done) }()
	c.kickLocked()
}

// flush commits everything pending now.
func (c *committer) flush(ctx context.Context) error {
	if err := c.commitOnce(ctx); err != nil {
		return fmt.Errorf("coordinator: flush state: %w", err)
	}
	return nil
}

// wait blocks until t is committed or ctx ends.
func wait(ctx context.Context, t ticket) error {
	select {
	case <-t:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
