package maintner

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
	"github.com/tryd-ci/tryd/maintner/trydpb"
)

// Time is an instant as Unix nanoseconds; zero means unknown. The corpus
// stores times this way (8 bytes instead of time.Time's 24).
type Time int64

// TimeOf converts t to a Time (the zero time.Time to 0).
func TimeOf(t time.Time) Time {
	if t.IsZero() {
		return 0
	}
	return Time(t.UnixNano())
}

// Time returns t as a time.Time in UTC (the zero time.Time for 0).
func (t Time) Time() time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(t)).UTC()
}

// IsZero reports whether t is unknown.
func (t Time) IsZero() bool { return t == 0 }

// Mutation is one record of the mutation log: x/build's maintpb.Mutation
// (fields 1-4) and tryd's extension (fields 100 and up). Either half may
// be nil.
type Mutation struct {
	Base *maintpb.Mutation
	Ext  *trydpb.Ext
}

// Marshal encodes m as a record payload: the deterministic encoding of
// Base followed by that of Ext. Protobuf messages concatenate, so the
// result is one message to x/build's readers (which skip Ext's fields)
// and to tryd's.
func (m *Mutation) Marshal() ([]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	var out []byte
	var err error
	if m.Base != nil {
		if out, err = opts.Marshal(m.Base); err != nil {
			return nil, fmt.Errorf("maintner: marshal mutation: %w", err)
		}
	}
	if m.Ext != nil {
		if out, err = opts.MarshalAppend(out, m.Ext); err != nil {
			return nil, fmt.Errorf("maintner: marshal tryd extension: %w", err)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("maintner: empty mutation")
	}
	return out, nil
}

// UnmarshalMutation decodes a record payload into generated Go messages
// (for tools such as "tryd corpus tail"; loading uses a faster path).
func UnmarshalMutation(payload []byte) (*Mutation, error) {
	opts := proto.UnmarshalOptions{DiscardUnknown: true}
	m := &Mutation{Base: &maintpb.Mutation{}, Ext: &trydpb.Ext{}}
	if err := opts.Unmarshal(payload, m.Base); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if err := opts.Unmarshal(payload, m.Ext); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	return m, nil
}

// Appender durably appends record payloads to the mutation log, as
// consecutive records, and returns once they are on stable storage; the
// corpus reads long text back through ReadSegment (see Text).
// *mutlog.Log satisfies it; the corpus needs nothing else from the log.
type Appender interface {
	Append(ctx context.Context, payloads ...[]byte) ([]mutlog.Position, error)
	SegmentStore
}

// Options configures a Corpus. All fields are optional.
type Options struct {
	// Appender makes the corpus a leader: Log appends through it. Nil
	// makes a read-only corpus (a follower), fed by Follow, Apply and
	// Load.
	Appender Appender
	// Logger receives warnings about records that cannot be applied;
	// nil discards them.
	Logger logrus.FieldLogger
	// Registry, if set, gets the corpus metrics (tryd_corpus_*).
	Registry *prometheus.Registry
	// LoadWorkers is how many goroutines decode records in parallel
	// (and how many segments are read ahead) during Load, and derive
	// Gerrit changes in parallel in GerritProject.Changes (default
	// GOMAXPROCS, at least 2: one goroutine applies what the others
	// decode, so the pipeline keeps two cores busy even on the smallest
	// machines).
	LoadWorkers int
	// LoadProgress, if set, is called by Load, LoadFiles, LoadDir and
	// LoadLog after each segment is applied, with the number of
	// segments applied so far and the total, so that a command can show
	// the progress of a long load. It is called from the loading
	// goroutine, without the corpus lock held, and should return
	// quickly.
	LoadProgress func(done, total int)
	// LoadWithGC keeps the garbage collector running while Load,
	// LoadFiles, LoadDir and LoadLog run. By default they pause it for
	// the length of the load (see gcPause: a load allocates almost only
	// what it keeps, so collecting during it costs a quarter of its CPU
	// time for little memory). The collector belongs to the process:
	// while it is paused, nothing else the process allocates is
	// collected either, so a program that loads a corpus while other
	// work allocates heavily, or that loads through a slow
	// SegmentReader, may want to set this.
	LoadWithGC bool
	// FollowSkipsBad makes Follow log a record that does not decode
	// (counted in Stats and tryd_corpus_records_bad_total) and go on
	// with the next, instead of stopping. Long-running followers that
	// must keep serving (the trybot) want this: one record they cannot
	// read should cost that record, not every later one.
	FollowSkipsBad bool
}

// Corpus is the in-memory model of everything the mutation log says:
// GitHub repositories, issues and pull requests; Gerrit projects and
// changes; git commits and refs.
//
// Writing: a leader (maintnerd) creates the corpus with an Appender and
// records every mutation with Log or LogBatch, which append durably and
// then apply. A follower applies records read from a log with Follow
// (a maintnerd's /logs), Load, LoadFiles, LoadLog or Apply. Watch tells
// either kind of reader when something changed.
//
// Reading: a Corpus is safe for concurrent use. Readers hold RLock while
// they walk it (the accessor methods do not lock); writers take the write
// lock. Values reached through the corpus must be treated as read-only
// and must not be used after RUnlock, because later mutations modify them
// in place.
//
// Representation, chosen so that a large log loads fast into a small
// heap: records are decoded straight from the wire format (no generated
// message per record) on parallel workers, which also build the git
// commits (the bulk of a Gerrit log), so that the one goroutine applying
// records in order does little more than look up and insert; commits
// are cut from slabs and kept in a table indexed by their hash's bytes;
// short repeated strings (logins, labels, names) are interned; times are
// 8-byte Unix nanoseconds; comments, events and reviews are sorted
// slices of values rather than maps of pointers; long text stays in the
// log and is read back on demand (Text); Gerrit changes are derived from
// their NoteDb history when first read (GerritChange). Loading pauses
// the garbage collector, which would otherwise spend a quarter of the
// load marking what the load keeps anyway (Options.LoadWithGC), and maps
// sealed segment files rather than reading them (LoadFiles).
type Corpus struct {
	opts Options
	log  logrus.FieldLogger

	// appendMu orders Log calls so that records are applied in log order.
	appendMu sync.Mutex

	mu sync.RWMutex
	// Everything below is guarded by mu.
	strs    map[string]string // interned short strings
	text    arena             // long text (bodies, messages)
	github  githubState
	gerrit  gerritState
	git     gitState
	records int64
	bad     int64
	version uint64
	changed chan struct{}
	// src reads text left in the log; cur locates the record being
	// applied (nil when unknown, and then text is kept in memory).
	src segmentSource
	cur *recordLoc

	// parsers recycles NoteDb parsers between derivations, which may
	// run on several goroutines at once (GerritProject.Changes).
	parsers sync.Pool

	metrics *corpusMetrics
}

type corpusMetrics struct {
	applied prometheus.Counter
	bad     prometheus.Counter
	logDur  prometheus.Histogram
}

// New returns an empty corpus.
func New(opts Options) (*Corpus, error) {
	if opts.LoadWorkers < 0 {
		return nil, fmt.Errorf("maintner: Options.LoadWorkers %d is negative", opts.LoadWorkers)
	}
	if opts.LoadWorkers == 0 {
		opts.LoadWorkers = max(2, runtime.GOMAXPROCS(0))
	}
	c := &Corpus{opts: opts, log: opts.Logger, changed: make(chan struct{})}
	if c.log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		c.log = l
	}
	c.strs = make(map[string]string)
	if opts.Appender != nil {
		c.src = storeSource{opts.Appender}
	}
	c.github.init()
	c.gerrit.init()
	c.git.init()
	if opts.Registry != nil {
		m := &corpusMetrics{
			applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "tryd_corpus_records_applied_total", Help: "Mutation records applied to the corpus."}),
			bad:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tryd_corpus_records_bad_total", Help: "Mutation records that could not be decoded and were skipped."}),
			logDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tryd_corpus_log_seconds", Help: "Time for Corpus.Log to append durably and apply a mutation.",
				Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		}
		for _, col := range []prometheus.Collector{m.applied, m.bad, m.logDur} {
			if err := opts.Registry.Register(col); err != nil {
				return nil, fmt.Errorf("maintner: register metrics: %w", err)
			}
		}
		c.metrics = m
	}
	return c, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ErrReadOnly is returned by Log on a corpus without an Appender.
var ErrReadOnly = errors.New("maintner: corpus is read-only (no Appender)")

// Log records a mutation: it encodes m, appends it durably through the
// Appender, then applies it to the corpus. When Log returns nil the
// mutation is both on stable storage and visible to readers; on error
// the corpus is unchanged. A mutation that does not decode (for example
// an invalid git commit) is refused before it reaches the log.
//
// Calls are serialized so that the corpus applies mutations in log order,
// the order every follower replays; ingestion that produces many
// mutations at once should use LogBatch, which shares one fsync.
func (c *Corpus) Log(ctx context.Context, m *Mutation) error {
	return c.LogBatch(ctx, m)
}

// LogBatch records several mutations as consecutive records with one
// durable append, then applies them in order. It refuses the whole batch
// if any mutation does not encode or decode.
func (c *Corpus) LogBatch(ctx context.Context, ms ...*Mutation) error {
	if c.opts.Appender == nil {
		return ErrReadOnly
	}
	if len(ms) == 0 {
		return nil
	}
	start := time.Now()
	payloads := make([][]byte, len(ms))
	decs := make([]*decoded, len(ms))
	for i, m := range ms {
		payload, err := m.Marshal()
		if err != nil {
			return err
		}
		d, err := decodeRecord(payload)
		if err != nil {
			return fmt.Errorf("maintner: log: %w", err)
		}
		payloads[i], decs[i] = payload, d
	}
	c.appendMu.Lock()
	defer c.appendMu.Unlock()
	pos, err := c.opts.Appender.Append(ctx, payloads...)
	if err != nil {
		return fmt.Errorf("maintner: log: append: %w", err)
	}
	c.mu.Lock()
	_, fromLog := c.src.(storeSource)
	for i, d := range decs {
		if fromLog && i < len(pos) {
			p := pos[i]
			c.cur = &recordLoc{payload: payloads[i], seg: int32(p.Segment), off: p.Offset + int64(reclog.HeaderLen(p.Offset, len(payloads[i])))}
		}
		c.applyLocked(d)
		c.cur = nil
	}
	c.finishLocked()
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.logDur.Observe(time.Since(start).Seconds())
	}
	return nil
}

// Apply decodes one record payload read from the log and applies it.
// A malformed record returns an error wrapping ErrBadRecord and changes
// nothing.
func (c *Corpus) Apply(payload []byte) error { return c.applyAt(payload, nil, nil) }

// applyAt is Apply of a record at loc in the log src reads: its text is
// left there while the corpus still reads from src (it is kept in
// memory when loc is nil, or after Close).
func (c *Corpus) applyAt(payload []byte, loc *recordLoc, src segmentSource) error {
	d, err := decodeRecord(payload)
	if err != nil {
		c.mu.Lock()
		c.bad++
		c.mu.Unlock()
		if c.metrics != nil {
			c.metrics.bad.Inc()
		}
		return err
	}
	c.mu.Lock()
	if loc != nil && c.src == src {
		c.cur = loc
	}
	c.applyLocked(d)
	c.cur = nil
	c.finishLocked()
	c.mu.Unlock()
	return nil
}

// RLock locks the corpus for reading.
func (c *Corpus) RLock() { c.mu.RLock() }

// RUnlock undoes RLock.
func (c *Corpus) RUnlock() { c.mu.RUnlock() }

// Watch returns the corpus version (the number of records applied) and a
// channel that is closed at the next change. Followers and long-polls
// wait on it instead of polling.
func (c *Corpus) Watch() (version uint64, changed <-chan struct{}) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version, c.changed
}

// Stats summarizes the corpus. TextBytes is the length of all the text
// it holds (titles, bodies, messages), whether in memory or left in the
// log (see Text): the same for the same log in a leader, a follower and
// a restarted maintnerd.
type Stats struct {
	Records         int64 `json:"records"`
	BadRecords      int64 `json:"bad_records"`
	GitHubRepos     int   `json:"github_repos"`
	GitHubIssues    int   `json:"github_issues"`
	GitHubPRs       int   `json:"github_pull_requests"`
	GitHubComments  int   `json:"github_comments"`
	GitHubEvents    int   `json:"github_events"`
	GerritProjects  int   `json:"gerrit_projects"`
	GerritChanges   int   `json:"gerrit_changes"`
	GerritPatchSets int   `json:"gerrit_patch_sets"`
	GerritMessages  int   `json:"gerrit_messages"`
	GitCommits      int   `json:"git_commits"`
	TextBytes       int64 `json:"text_bytes"`
}

// Stats counts what the corpus holds. It takes the read lock.
func (c *Corpus) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := Stats{Records: c.records, BadRecords: c.bad, TextBytes: c.text.used}
	for _, r := range c.github.repos {
		s.GitHubRepos++
		for _, is := range r.issues {
			s.GitHubIssues++
			if is.PullRequest {
				s.GitHubPRs++
			}
			s.GitHubComments += len(is.Comments)
			s.GitHubEvents += len(is.Events)
		}
	}
	for _, p := range c.gerrit.projects {
		s.GerritProjects++
		s.GitCommits += p.commits.Len()
		for _, ch := range p.Changes() {
			s.GerritChanges++
			s.GerritPatchSets += len(ch.PatchSets)
			s.GerritMessages += len(ch.Messages)
		}
	}
	for _, r := range c.git.repos {
		s.GitCommits += r.commits.Len()
	}
	return s
}

// applyLocked applies a decoded record. c.mu must be held for writing.
// Applying never fails: everything that can be wrong was checked while
// decoding.
func (c *Corpus) applyLocked(d *decoded) {
	if d.issue != nil {
		c.applyIssue(d.issue)
	}
	if d.github != nil {
		c.applyGithub(d.github)
	}
	if d.git != nil {
		c.applyGit(d.git)
	}
	if d.gerrit != nil {
		c.applyGerrit(d.gerrit)
	}
	if d.ext != nil {
		c.applyExt(d.ext)
	}
	c.records++
	if c.metrics != nil {
		c.metrics.applied.Inc()
	}
}

// finishLocked wakes watchers after records were applied.
func (c *Corpus) finishLocked() {
	c.version++
	close(c.changed)
	c.changed = make(chan struct{})
}

// str interns a short string.
func (c *Corpus) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := c.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	c.strs[s] = s
	return s
}

// arena copies long strings into large shared chunks: one allocation per
// chunk instead of one per string, and chunks hold no pointers, so the
// garbage collector never scans them.
type arena struct {
	cur  []byte
	used int64
}

const arenaChunk = 1 << 20

// copy returns a string with b's contents, backed by the arena.
func (a *arena) copy(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	a.used += int64(len(b))
	if len(b) > arenaChunk/8 {
		return string(b)
	}
	if cap(a.cur)-len(a.cur) < len(b) {
		a.cur = make([]byte, 0, arenaChunk)
	}
	start := len(a.cur)
	a.cur = append(a.cur, b...)
	// The chunk's bytes up to len are never written again, so the string
	// is immutable as Go requires.
	return unsafe.String(&a.cur[start], len(b))
}
