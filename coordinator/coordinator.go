package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// Clock is the coordinator's source of time, injectable so that heartbeat
// timeouts, job timeouts and locality windows are tested without sleeping.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Coordinator. Store, Artifacts and Dir are required.
type Options struct {
	// Store is the durable state (e.g. state/sqlite).
	Store state.Store
	// Artifacts holds blobs (e.g. artifacts.Disk). To evict only what no
	// running build needs, give the disk store Coordinator.Pinned.
	Artifacts artifacts.Store
	// Dir holds the coordinator's files besides the database (job logs).
	Dir string

	// WorkerTokens maps a worker name to its token; only SHA-256 hashes
	// are kept. See ParseWorkerTokens for the file format.
	WorkerTokens map[string]string
	// ClientToken authenticates API clients (trybot, tryd try,
	// dashboard). Empty refuses every client call.
	ClientToken string

	// HeartbeatTimeout is how long a worker may stay silent before its
	// attempts are lost and requeued (default 15s).
	HeartbeatTimeout time.Duration
	// MaxAttempts bounds the attempts of a job whose worker was lost or
	// failed to run it (default 3). Command failures are never retried.
	// Attempts the coordinator abandoned (api.AttemptAbandoned) do not
	// count.
	MaxAttempts int
	// DefaultTimeout applies to jobs without a timeout (default 1h).
	DefaultTimeout time.Duration
	// LocalityWait is how long a ready job waits for a worker that holds
	// its dependencies' outputs before any worker may take it (default
	// 250ms).
	LocalityWait time.Duration
	// PollTimeout bounds a worker's long-poll (default 25s).
	PollTimeout time.Duration
	// MaxLogBytes bounds each attempt's kept log (default 16 MiB).
	MaxLogBytes int64
	// KeepFinished is how many finished builds stay in memory for fast
	// status and event answers (default 16); older ones are read from
	// the store.
	KeepFinished int
	// CommitInterval is the least time between the starts of two state
	// commits (default 2ms; negative: none). A change made after a
	// commit waits at most that long for the next one, with the changes
	// made meanwhile: under a stream of results (thousands of jobs a
	// second) commits stay few and write each job once instead of at
	// every state, while an isolated change is committed at once. What
	// waits is only the acknowledgement of results: assignments never
	// wait for a commit (see PollEarly).
	CommitInterval time.Duration

	// Replica, if set, makes this coordinator one of several sharing the
	// Store (which must implement state.Leaser): see ReplicaOptions.
	Replica *ReplicaOptions

	// Log receives the coordinator's logs; nil discards them.
	Log logrus.FieldLogger
	// Clock is the time source; nil means the real clock.
	Clock Clock
	// Registry receives the coordinator's metrics; nil means none are
	// exported.
	Registry *prometheus.Registry
}

func (o *Options) validate() error {
	switch {
	case o.Store == nil:
		return errors.New("coordinator: Options.Store is nil")
	case o.Artifacts == nil:
		return errors.New("coordinator: Options.Artifacts is nil")
	case o.Dir == "":
		return errors.New("coordinator: Options.Dir is empty")
	case o.HeartbeatTimeout < 0, o.MaxAttempts < 0, o.DefaultTimeout < 0, o.LocalityWait < 0, o.PollTimeout < 0, o.MaxLogBytes < 0, o.KeepFinished < 0:
		return errors.New("coordinator: negative option")
	}
	for name, tok := range o.WorkerTokens {
		if !workerNameRE.MatchString(name) {
			return fmt.Errorf("coordinator: bad worker name %q", name)
		}
		if len(tok) < 16 {
			return fmt.Errorf("coordinator: token of worker %s is shorter than 16 characters", name)
		}
	}
	if o.ClientToken != "" && len(o.ClientToken) < 16 {
		return errors.New("coordinator: client token is shorter than 16 characters")
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 15 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.DefaultTimeout == 0 {
		o.DefaultTimeout = time.Hour
	}
	if o.LocalityWait == 0 {
		o.LocalityWait = 250 * time.Millisecond
	}
	if o.PollTimeout == 0 {
		o.PollTimeout = 25 * time.Second
	}
	if o.MaxLogBytes == 0 {
		o.MaxLogBytes = 16 << 20
	}
	if o.KeepFinished == 0 {
		o.KeepFinished = 16
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = 2 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return nil
}

// Coordinator runs build graphs on workers. Create it with New, serve
// Handler, and call Close when done.
type Coordinator struct {
	opts  Options
	log   logrus.FieldLogger
	store state.Store
	arts  artifacts.Store
	clock Clock
	auth  *auth
	logs  *logStore
	m     *metrics
	epoch string

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	commit *committer
	rep    *replicas // nil unless Options.Replica is set

	mu       sync.Mutex
	builds   map[int64]*build    // running builds and recently finished ones
	finished []int64             // finished builds kept in memory, oldest first
	sessions map[string]*session // by worker ID
	byName   map[string]*session // current session of each worker name
	attempts map[string]*attempt // running attempts
	results  map[string]state.Result
	// ready holds, per priority rank, the builds with queued jobs.
	ready [3]map[*build]bool
	// enqueued counts jobs made ready (see enqueue), so that a poll can
	// tell whether it left ready jobs for other workers.
	enqueued int
	// prefetchedN counts the prefetched attempts of all sessions (see
	// prefetch.go), so that enqueue looks for ones to take back only
	// when there are some.
	prefetchedN int
	// prefetchSeq numbers prefetched attempts in the order they are
	// handed out (pendingAttempt.seq).
	prefetchSeq uint64
	// prefetchedRank counts them by their builds' priority rank, so
	// that a poll looks for one of a higher priority than the job it
	// picked only when there is one (see stealPrefetched).
	prefetchedRank [3]int

	pinMu sync.Mutex
	pins  map[string]int // artifact digest → active builds needing it
}

// New restores unfinished builds from the store and returns a running
// coordinator (its heartbeat monitor and group committer are started).
func New(ctx context.Context, opts Options) (*Coordinator, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	log = log.WithField("component", "coordinator")
	logs, err := newLogStore(filepath.Join(opts.Dir, "logs"))
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		opts:     opts,
		log:      log,
		store:    opts.Store,
		arts:     opts.Artifacts,
		clock:    opts.Clock,
		auth:     newAuth(opts.WorkerTokens, opts.ClientToken),
		logs:     logs,
		m:        newMetrics(opts.Registry),
		epoch:    randomID(),
		builds:   map[int64]*build{},
		sessions: map[string]*session{},
		byName:   map[string]*session{},
		attempts: map[string]*attempt{},
		results:  map[string]state.Result{},
		pins:     map[string]int{},
	}
	for i := range c.ready {
		c.ready[i] = map[*build]bool{}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.commit = newCommitter(c.store, log, c.m)
	c.commit.barrier = &c.mu
	c.commit.interval = max(opts.CommitInterval, 0)
	if opts.Replica != nil {
		l, err := opts.Replica.validate(opts.Store)
		if err != nil {
			return nil, err
		}
		c.log = c.log.WithField("replica", opts.Replica.ID)
		c.rep = newReplicas(*opts.Replica, l, opts.Registry, c.log)
		c.commit.log = c.log
		c.commit.failures.log = c.log
		c.commit.write = c.commitHeld
		c.commit.timeout = c.rep.opts.LeaseTTL
	}
	if err := c.registerWorkers(ctx); err != nil {
		return nil, err
	}
	if c.rep == nil {
		// A replica resumes only the builds it claims (leaseLoop).
		if err := c.restore(ctx); err != nil {
			return nil, err
		}
	}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.commit.run(c.ctx) }()
	go func() { defer c.wg.Done(); c.monitor() }()
	if c.rep != nil {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.leaseLoop() }()
	}
	return c, nil
}

// Close stops the background work and flushes pending state. It does not
// close the store or the artifact store, which the caller owns.
func (c *Coordinator) Close() error {
	c.cancel()
	c.wg.Wait()
	// Wake long-polls and event streams so that they return.
	c.mu.Lock()
	for _, s := range c.sessions {
		s.wakeUp()
	}
	for _, b := range c.builds {
		b.notify()
	}
	c.mu.Unlock()
	err := c.commit.flush(context.Background())
	if err == nil {
		// Everything is stored: other replicas may resume the builds.
		c.releaseLeases()
	}
	return err
}

// registerWorkers records the configured workers (token hashes only).
func (c *Coordinator) registerWorkers(ctx context.Context) error {
	known, err := c.store.Workers(ctx)
	if err != nil {
		return fmt.Errorf("coordinator: load workers: %w", err)
	}
	byName := map[string]state.Worker{}
	for _, w := range known {
		byName[w.Name] = w
	}
	var batch state.Batch
	for name, hash := range c.auth.workerHashes() {
		w := byName[name]
		if w.TokenHash == hash {
			continue
		}
		w.Name, w.TokenHash = name, hash
		batch.Workers = append(batch.Workers, w)
	}
	if err := c.store.Commit(ctx, &batch); err != nil {
		return fmt.Errorf("coordinator: record workers: %w", err)
	}
	return nil
}

// Pinned reports whether a running build needs the artifact: give it to
// the artifact store's eviction (artifacts.DiskOptions.Pinned).
func (c *Coordinator) Pinned(digest string) bool {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	return c.pins[digest] > 0
}

func (c *Coordinator) pin(digests []string, delta int) {
	if len(digests) == 0 {
		return
	}
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	for _, d := range digests {
		if d == "" {
			continue
		}
		c.pins[d] += delta
		if c.pins[d] <= 0 {
			delete(c.pins, d)
		}
	}
}

// Epoch identifies this run of the coordinator in event streams.
func (c *Coordinator) Epoch() string { return c.epoch }

// Health reports whether the store answers and the last commit of state
// changes succeeded.
func (c *Coordinator) Health(ctx context.Context) error {
	if err := c.commit.lastErr(); err != nil {
		return fmt.Errorf("coordinator: last state commit failed: %w", err)
	}
	if _, err := c.store.UnfinishedBuilds(ctx); err != nil {
		return fmt.Errorf("coordinator: store: %w", err)
	}
	return nil
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ensureDir creates a directory.
func ensureDir(d string) error {
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	return nil
}

// errNotRunning marks calls made after Close.
var errNotRunning = fmt.Errorf("coordinator: shutting down: %w", api.ErrUnavailable)
