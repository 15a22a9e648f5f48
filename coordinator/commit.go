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
	// write commits a batch (default: the store's Commit; a replica's
	// is fenced by its leases, see Coordinator.commitHeld).
	write func(context.Context, *state.Batch) error
	// timeout bounds one commit, so that a database that stopped
	// answering (not refusing) is retried, not waited for forever.
	timeout time.Duration
	// failures logs a run of failed commits once (see failureLog).
	failures failureLog

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
	c := &committer{store: store, log: log, m: m, kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1),
		write: store.Commit, timeout: defaultCommitTimeout, failures: failureLog{log: log, what: "commit state"}}
	c.reset()
	return c
}

// defaultCommitTimeout bounds a commit (committer.timeout).
const defaultCommitTimeout = 30 * time.Second

// Failed commits are retried after commitRetryMin, doubling up to
// commitRetryMax: a store that is down for a while (a database restart
// or failover) is asked a few times a second at first, then every few
// seconds, not hammered with connection attempts.
const (
	commitRetryMin = 50 * time.Millisecond
	commitRetryMax = 2 * time.Second
)

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

// forget discards the pending changes of a build this replica no longer
// holds (another replica took it), which must not be written over the
// new holder's: a fenced commit would skip them, unless this replica
// took the build back meanwhile. A batch being written already is left
// to the fence.
func (c *committer) forget(build int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.builds, build)
	for k := range c.jobs {
		if k.build == build {
			delete(c.jobs, k)
		}
	}
	for id, a := range c.attempts {
		if a.BuildID == build {
			delete(c.attempts, id)
		}
	}
	for id, r := range c.results {
		if r.BuildID == build {
			delete(c.results, id)
		}
	}
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

// run commits until ctx ends. A failed commit is retried with backoff
// (its changes are merged back unless newer ones replaced them, and its
// tickets stay open until a commit succeeds) so that a store that is
// down for a while loses nothing acknowledged.
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
		for backoff := commitRetryMin; ; backoff = min(2*backoff, commitRetryMax) {
			err := c.commitOnce(context.Background())
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
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
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	err := c.write(ctx, b)
	cancel()
	c.m.commitSeconds.Observe(time.Since(start).Seconds())
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	if err != nil {
		c.m.commitErrors.Inc()
		c.failures.fail(err)
		c.requeue(b, done)
		return err
	}
	c.failures.ok()
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

// failureLog logs a run of failures of a repeated operation (a commit, a
// lease renewal, a claim) once when it starts and once when it ends,
// with the count and duration, instead of once per attempt: a database
// down for a minute would otherwise fill the log with hundreds of lines
// saying the same. Attempts in between are logged at debug level. Each
// failureLog is used by one goroutine at a time.
type failureLog struct {
	log   logrus.FieldLogger
	what  string
	n     int // failures in the current run
	since time.Time
}

func (f *failureLog) fail(err error) {
	if f.n == 0 {
		f.since = time.Now()
		f.log.WithError(err).Error(f.what + " failed; retrying (logged again once it succeeds)")
	} else {
		f.log.WithError(err).Debug(f.what + " failed again")
	}
	f.n++
}

// ok ends a run of failures.
func (f *failureLog) ok() {
	if f.n == 0 {
		return
	}
	f.log.WithFields(logrus.Fields{"failures": f.n, "for": time.Since(f.since).Round(time.Millisecond).String()}).Warn(f.what + " succeeds again")
	f.n = 0
}
