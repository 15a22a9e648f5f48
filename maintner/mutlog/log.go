// Package mutlog owns tryd's mutation log: an append-only sequence of
// records, framed by maintner/reclog, kept in numbered segments of at most
// 16 MiB in a Store (local disk by default, or Google Cloud Storage through
// mutlog/gcsstore).
//
// Wire and storage format: each segment is a concatenation of reclog
// records ("REC@<hex offset>+<hex length>=" then the payload) whose offsets
// start at 0 in every segment; a record never spans two segments. A
// segment is growing (the last one, still appended to) or sealed
// (complete, immutable, named by the SHA-224 of its bytes). On disk, and in
// the logsync follower's cache, segments are files named as x/build's
// maintner cache names them: "0007.<sha224 hex>.mutlog" when sealed and
// "0007.growing.mutlog" while growing; DiskStore adds a "LOCK" file.
//
// A Log has exactly one writer (a flock on disk, generation preconditions
// on GCS). Append returns only once its records are durable (fsync), and
// concurrent appenders share commits (group commit), so throughput does
// not fall to one fsync per record. On Open a torn tail left by a crash is
// detected and cut; corruption anywhere else is an error naming the segment
// and offset.
package mutlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/maintner/reclog"
)

// DefaultMaxSegmentSize is the size limit of a segment, as in x/build.
const DefaultMaxSegmentSize = 16 << 20

// Options configures Open.
type Options struct {
	// Store holds the segments. Required.
	Store Store
	// MaxSegmentSize bounds segment size in bytes (default
	// DefaultMaxSegmentSize). Smaller values are for tests.
	MaxSegmentSize int64
	// CommitTimeout bounds one write to the store (default 2 minutes).
	// A commit is shared by many callers, so it does not use any one
	// caller's context.
	CommitTimeout time.Duration
	// Log receives lifecycle and error logs; nil discards them.
	Log logrus.FieldLogger
	// Registry, if set, receives the log's metrics (tryd_mutlog_*).
	Registry *prometheus.Registry
	// VerifySealed makes Open read every sealed segment and check it
	// against its SHA-224 (about a second per GiB), so a damaged store
	// is refused rather than served. Off by default: the growing
	// segment is always checked and its torn tail cut.
	VerifySealed bool
}

// Position locates a record: its segment and the segment offset of its
// header.
type Position struct {
	Segment int
	Offset  int64
}

// Less orders positions as the log does.
func (p Position) Less(q Position) bool {
	return p.Segment < q.Segment || (p.Segment == q.Segment && p.Offset < q.Offset)
}

func (p Position) String() string { return fmt.Sprintf("%d:%#x", p.Segment, p.Offset) }

// Func receives a record's position and payload. The payload is valid only
// until the function returns. Returning an error stops the iteration.
type Func func(pos Position, payload []byte) error

// Log is an open, writable mutation log. Its methods are safe for
// concurrent use.
type Log struct {
	opts    Options
	store   Store
	w       Writer
	log     logrus.FieldLogger
	metrics *metrics
	maxSeg  int64

	kick   chan struct{} // wakes the committer
	stop   chan struct{} // closed by Close
	exited chan struct{} // closed when the committer returns

	mu      sync.Mutex
	err     error // sticky: after a failed commit nothing more is accepted
	closed  bool
	sealed  []SegmentInfo
	curNum  int       // the growing segment (may be empty and not yet stored)
	cur     []byte    // its committed bytes; never overwritten, only extended
	curHash hash.Hash // SHA-224 of cur
	size    int64     // committed bytes in all segments
	changed chan struct{}
	// pending, not yet committed:
	pendNum  int
	pendSize int64 // end offset of pending data in segment pendNum
	group    *group
}

// group is a set of appends committed together.
type group struct {
	segs  []pendSeg
	nrec  int
	done  chan struct{}
	err   error
	bytes int
}

type pendSeg struct {
	num  int
	data []byte
}

// Open opens the log in opts.Store for writing, claiming the store (a
// second writer gets ErrLocked) and cutting a torn tail from the growing
// segment.
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.Store == nil {
		return nil, errors.New("mutlog: Options.Store is nil")
	}
	if opts.MaxSegmentSize == 0 {
		opts.MaxSegmentSize = DefaultMaxSegmentSize
	}
	if opts.MaxSegmentSize < 64 {
		return nil, fmt.Errorf("mutlog: Options.MaxSegmentSize %d is too small", opts.MaxSegmentSize)
	}
	if opts.CommitTimeout == 0 {
		opts.CommitTimeout = 2 * time.Minute
	}
	lg := opts.Log
	if lg == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		lg = l
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	w, err := opts.Store.OpenWriter(ctx)
	if err != nil {
		return nil, fmt.Errorf("mutlog: open: %w", err)
	}
	l := &Log{
		opts: opts, store: opts.Store, w: w, log: lg, metrics: m, maxSeg: opts.MaxSegmentSize,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), exited: make(chan struct{}),
		changed: make(chan struct{}), curHash: sha256.New224(),
	}
	if err := l.load(ctx); err != nil {
		w.Close()
		return nil, err
	}
	l.pendNum, l.pendSize = l.curNum, int64(len(l.cur))
	m.size.Set(float64(l.size))
	go l.committer()
	return l, nil
}

// load reads the store's segment list and the growing segment.
func (l *Log) load(ctx context.Context) error {
	segs, err := l.store.Segments(ctx)
	if err != nil {
		return fmt.Errorf("mutlog: open: list segments: %w", err)
	}
	if err := checkSegments(segs); err != nil {
		return fmt.Errorf("mutlog: open: %w", err)
	}
	for _, s := range segs {
		l.size += s.Size
		if s.Sealed && l.opts.VerifySealed {
			data, err := readAll(ctx, l.store, s.Number, s.Size)
			if err != nil {
				return fmt.Errorf("mutlog: open: verify segment %d: %w", s.Number, err)
			}
			sum := sha256.Sum224(data)
			if got := hex.EncodeToString(sum[:]); got != s.SHA224 {
				return fmt.Errorf("mutlog: open: %w: sealed segment %d hashes to %s, not %s", ErrCorrupt, s.Number, got, s.SHA224)
			}
			if _, err := reclog.Scan(SealedName(s.Number, s.SHA224), data, 0, nil); err != nil {
				return fmt.Errorf("mutlog: open: %w: %w", ErrCorrupt, err)
			}
		}
	}
	if len(segs) == 0 || segs[len(segs)-1].Sealed {
		l.sealed = segs
		l.curNum = len(segs)
		return nil
	}
	g := segs[len(segs)-1]
	l.sealed = segs[:len(segs)-1]
	l.curNum = g.Number
	l.size -= g.Size
	data, err := readAll(ctx, l.store, g.Number, g.Size)
	if err != nil {
		return fmt.Errorf("mutlog: open: read growing segment %d: %w", g.Number, err)
	}
	name := GrowingName(g.Number)
	end, serr := reclog.Scan(name, data, 0, nil)
	if serr != nil {
		if validRecordAfter(name, data, end) {
			return fmt.Errorf("mutlog: open: %w: %w (valid records follow, so this is not a torn tail; repair by hand)", ErrCorrupt, serr)
		}
		l.log.WithFields(logrus.Fields{"segment": g.Number, "offset": end, "cut": int64(len(data)) - end}).
			Warnf("mutlog: cutting torn tail: %v", serr)
		if err := l.w.Truncate(ctx, g.Number, end); err != nil {
			return fmt.Errorf("mutlog: open: cut torn tail of segment %d at %d: %w", g.Number, end, err)
		}
		data = data[:end]
	}
	l.cur = data
	l.curHash.Write(data)
	l.size += int64(len(data))
	return nil
}

// validRecordAfter reports whether a complete record starts anywhere in
// data after offset end.
func validRecordAfter(name string, data []byte, end int64) bool {
	for i := end + 1; i < int64(len(data)); {
		j := bytes.Index(data[i:], []byte("REC@"))
		if j < 0 {
			return false
		}
		at := i + int64(j)
		if n, _ := reclog.Scan(name, data[at:], at, nil); n > at {
			return true
		}
		i = at + 1
	}
	return false
}

func readAll(ctx context.Context, s Store, num int, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	rc, err := s.ReadSegment(ctx, num, 0, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, size, max(size, 1<<20))
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// Append adds payloads as consecutive records and returns their positions
// once they are durable. Concurrent calls share commits. If ctx ends first,
// Append returns ctx.Err() and the records may or may not be committed.
// After a failed commit the Log accepts nothing more (reopen it).
func (l *Log) Append(ctx context.Context, payloads ...[]byte) ([]Position, error) {
	for _, p := range payloads {
		if reclog.RecordLen(0, len(p)) > l.maxSeg {
			return nil, fmt.Errorf("%w: %d bytes, segment limit %d", ErrTooLarge, len(p), l.maxSeg)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pos := make([]Position, len(payloads))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return nil, err
	}
	g := l.group
	if g == nil {
		g = &group{done: make(chan struct{})}
		l.group = g
	}
	for i, p := range payloads {
		rl := reclog.RecordLen(l.pendSize, len(p))
		if l.pendSize > 0 && l.pendSize+rl > l.maxSeg {
			l.pendNum++
			l.pendSize = 0
			rl = reclog.RecordLen(0, len(p))
		}
		if len(g.segs) == 0 || g.segs[len(g.segs)-1].num != l.pendNum {
			g.segs = append(g.segs, pendSeg{num: l.pendNum})
		}
		ps := &g.segs[len(g.segs)-1]
		pos[i] = Position{l.pendNum, l.pendSize}
		ps.data = reclog.AppendRecord(ps.data, l.pendSize, p)
		l.pendSize += rl
		g.bytes += int(rl)
	}
	g.nrec += len(payloads)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	select {
	case <-g.done:
		if g.err != nil {
			return nil, g.err
		}
		return pos, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// committer writes pending groups, one at a time, until Close.
func (l *Log) committer() {
	defer close(l.exited)
	for {
		select {
		case <-l.kick:
		case <-l.stop:
			// Commit what was accepted before Close.
			l.commitPending()
			return
		}
		l.commitPending()
	}
}

func (l *Log) commitPending() {
	for {
		l.mu.Lock()
		g := l.group
		l.group = nil
		failed := l.err
		l.mu.Unlock()
		if g == nil {
			return
		}
		if failed != nil {
			g.err = failed
			close(g.done)
			continue
		}
		start := time.Now()
		err := l.commit(g)
		l.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			err = fmt.Errorf("mutlog: commit: %w", err)
			l.log.WithError(err).Error("mutlog: commit failed; the log accepts no more appends until reopened")
			l.metrics.failures.Inc()
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
		} else {
			l.metrics.appends.Add(float64(g.nrec))
			l.metrics.bytes.Add(float64(g.bytes))
			l.metrics.groupSize.Observe(float64(g.nrec))
		}
		g.err = err
		close(g.done)
	}
}

// commit writes one group, sealing segments as it crosses them, and
// publishes each step.
func (l *Log) commit(g *group) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.CommitTimeout)
	defer cancel()
	for _, ps := range g.segs {
		l.mu.Lock()
		curNum, curLen := l.curNum, int64(len(l.cur))
		l.mu.Unlock()
		if ps.num != curNum {
			if ps.num != curNum+1 {
				return fmt.Errorf("internal error: pending segment %d after %d", ps.num, curNum)
			}
			if err := l.seal(ctx); err != nil {
				return err
			}
			curLen = 0
		}
		if err := l.w.Append(ctx, ps.num, curLen, ps.data); err != nil {
			return fmt.Errorf("append %d bytes to segment %d at %d: %w", len(ps.data), ps.num, curLen, err)
		}
		l.metrics.commits.Inc()
		l.mu.Lock()
		l.cur = append(l.cur, ps.data...)
		l.curHash.Write(ps.data)
		l.size += int64(len(ps.data))
		l.metrics.size.Set(float64(l.size))
		l.notifyLocked()
		l.mu.Unlock()
	}
	return nil
}

// seal seals the growing segment and starts the next one.
func (l *Log) seal(ctx context.Context) error {
	l.mu.Lock()
	num, size := l.curNum, int64(len(l.cur))
	sum := hex.EncodeToString(l.curHash.Sum(nil))
	l.mu.Unlock()
	if err := l.w.Seal(ctx, num, sum); err != nil {
		return fmt.Errorf("seal segment %d: %w", num, err)
	}
	l.mu.Lock()
	l.sealed = append(l.sealed, SegmentInfo{Number: num, Size: size, SHA224: sum, Sealed: true})
	l.curNum++
	l.cur = nil // readers may still hold slices of the old array
	l.curHash = sha256.New224()
	l.mu.Unlock()
	l.metrics.seals.Inc()
	l.log.WithFields(logrus.Fields{"segment": num, "size": size, "sha224": sum}).Info("mutlog: sealed segment")
	return nil
}

func (l *Log) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Segments returns the committed segments. The growing segment is listed
// (unsealed) only when it holds data.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	segs := make([]SegmentInfo, len(l.sealed), len(l.sealed)+1)
	copy(segs, l.sealed)
	if len(l.cur) > 0 {
		segs = append(segs, SegmentInfo{Number: l.curNum, Size: int64(len(l.cur)), SHA224: hex.EncodeToString(l.curHash.Sum(nil))})
	}
	return segs
}

// Size returns the total committed size of all segments, the figure
// followers long-poll on.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// WaitSizeNot blocks until the committed size differs from n and returns
// it, or returns ctx.Err() (or ErrClosed) with the current size.
func (l *Log) WaitSizeNot(ctx context.Context, n int64) (int64, error) {
	for {
		l.mu.Lock()
		size, ch, closed := l.size, l.changed, l.closed
		l.mu.Unlock()
		if size != n {
			return size, nil
		}
		if closed {
			return size, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return size, ctx.Err()
		}
	}
}

// ReadSegment returns n committed bytes of segment num from offset off.
// The growing segment is served from memory.
func (l *Log) ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error) {
	l.mu.Lock()
	var size int64 = -1
	var mem []byte
	switch {
	case num >= 0 && num < len(l.sealed):
		size = l.sealed[num].Size
	case num == l.curNum && len(l.cur) > 0:
		mem = l.cur
		size = int64(len(mem))
	}
	l.mu.Unlock()
	if size < 0 {
		return nil, fmt.Errorf("mutlog: read segment %d: %w", num, ErrNotFound)
	}
	if off < 0 || n < 0 || off+n > size {
		return nil, fmt.Errorf("mutlog: read segment %d bytes [%d,%d) of %d: %w", num, off, off+n, size, ErrRange)
	}
	if mem != nil {
		return io.NopCloser(bytes.NewReader(mem[off : off+n])), nil
	}
	return l.store.ReadSegment(ctx, num, off, n)
}

// ForEach calls fn for every committed record at or after from, in order,
// reading sealed segments from the store. Records committed while ForEach
// runs may or may not be included.
func (l *Log) ForEach(ctx context.Context, from Position, fn Func) error {
	segs := l.Segments()
	var buf []byte
	for _, s := range segs {
		if s.Number < from.Segment {
			continue
		}
		var data []byte
		l.mu.Lock()
		if s.Number == l.curNum {
			data = l.cur[:s.Size]
		}
		l.mu.Unlock()
		if data == nil {
			rc, err := l.store.ReadSegment(ctx, s.Number, 0, s.Size)
			if err != nil {
				return fmt.Errorf("mutlog: read segment %d: %w", s.Number, err)
			}
			if int64(cap(buf)) < s.Size {
				buf = make([]byte, s.Size)
			}
			data = buf[:s.Size]
			_, err = io.ReadFull(rc, data)
			rc.Close()
			if err != nil {
				return fmt.Errorf("mutlog: read segment %d: %w", s.Number, err)
			}
		}
		if err := scanFrom(s.Number, data, from, fn); err != nil {
			return err
		}
	}
	return nil
}

// scanFrom delivers the records of one segment's bytes at or after from.
func scanFrom(num int, data []byte, from Position, fn Func) error {
	name := fmt.Sprintf("%04d", num)
	_, err := reclog.Scan(name, data, 0, func(off int64, p []byte) error {
		pos := Position{num, off}
		if pos.Less(from) {
			return nil
		}
		return fn(pos, p)
	})
	var re *reclog.Error
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// Close commits what was accepted, stops the committer and releases the
// store. Appends after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.notifyLocked()
	l.mu.Unlock()
	close(l.stop)
	<-l.exited
	l.metrics.unregister()
	if err := l.w.Close(); err != nil {
		return fmt.Errorf("mutlog: close: %w", err)
	}
	return nil
}

// Err returns the error that stopped the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
