// Package journal is pubsubhelper's durable event journal: every accepted
// webhook is appended here, and fsynced, before it is acknowledged; the
// journal numbers events, deduplicates them by key (GitHub delivery IDs),
// keeps an in-memory index for subscribers (long-poll wake-ups, recent
// events, exact resumption by sequence number or by time) and enforces
// retention by age and total size.
//
// Appends are group-committed and pipelined: a writer goroutine takes
// every append queued since its last write and writes them with one
// write; a syncer goroutine takes every batch written since its last
// fsync, fsyncs once, then acknowledges them all. Concurrent deliveries
// share fsyncs, and the next batch is written while the previous one is
// being synced.
//
// On-disk format, version 1 (a checked-in sample lives in
// testdata/v1 and must keep loading):
//
//	<dir>/id                  the journal ID, 32 hex digits
//	<dir>/lock                flock'ed by the process that has it open
//	<dir>/<%020d>.seg         segments, named by the sequence number of
//	                          the first record they may hold
//
// Each segment starts with the 8 bytes "TRYDJNL1", followed by records:
//
//	offset  size
//	0       4     CRC-32C (Castagnoli) of bytes 4 … end of record
//	4       4     metaLen, little endian
//	8       4     rawLen
//	12      8     sequence number
//	20      8     receipt time, Unix nanoseconds
//	28      metaLen  JSON {"Event": pubsubtypes.Event, "Dedup": key}
//	…       rawLen   the payload exactly as received
//
// A record never spans segments. A crash can leave a torn record at the
// end of the last segment; Open cuts it (the event was never
// acknowledged). A bad record inside an older segment is reported and the
// rest of that segment skipped, leaving the file untouched.
//
// With Options.Dir empty the journal keeps events in memory only (no
// durability): the same code path with journaling off, used as the
// benchmark baseline and for tests.
package journal

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// Errors callers act on.
var (
	// ErrClosed is returned by operations on a closed journal.
	ErrClosed = errors.New("journal: closed")
	// ErrNotFound is returned by Raw for an event no longer retained.
	ErrNotFound = errors.New("journal: event not found")
	// ErrTooLarge is returned by Append for a record over the limits.
	ErrTooLarge = errors.New("journal: record too large")
)

const (
	magic     = "TRYDJNL1"
	headerLen = 28
	// MaxRaw bounds one record's payload.
	MaxRaw = 64 << 20
	// maxMeta bounds one record's metadata.
	maxMeta = 1 << 20
	segExt  = ".seg"
)

// Options configures a Journal. The zero value of every field but Dir
// selects its default.
type Options struct {
	// Dir holds the journal's files; empty keeps events in memory only.
	Dir string
	// SegmentBytes is the size at which a new segment is started
	// (default 32 MiB). Retention deletes whole segments.
	SegmentBytes int64
	// RetentionAge deletes events older than this (default 7 days).
	RetentionAge time.Duration
	// RetentionBytes deletes the oldest events while the journal is
	// larger (default 1 GiB). The segment being written is never deleted.
	RetentionBytes int64
	// MaxBatch bounds the records written per fsync (default 4096).
	MaxBatch int
	// RetainEvery is how often retention runs by itself (default 1
	// minute), so that age applies to a quiet journal too.
	RetainEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives warnings (default: discarded).
	Log logrus.FieldLogger
	// Registry, if set, receives the journal's metrics.
	Registry *prometheus.Registry
}

func (o *Options) setDefaults() error {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 32 << 20
	}
	if o.RetentionAge == 0 {
		o.RetentionAge = 7 * 24 * time.Hour
	}
	if o.RetentionBytes == 0 {
		o.RetentionBytes = 1 << 30
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 4096
	}
	if o.RetainEvery == 0 {
		o.RetainEvery = time.Minute
	}
	if o.SegmentBytes < 1024 || o.RetentionAge < 0 || o.RetentionBytes < 0 || o.MaxBatch < 0 || o.RetainEvery < 0 {
		return errors.New("journal: bad options: SegmentBytes must be at least 1024, the rest non-negative")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	return nil
}

// entry is one committed event in the index.
type entry struct {
	ev      *pubsubtypes.Event
	seg     *segment
	off     int64 // record offset in seg
	metaLen uint32
	rawLen  uint32
	raw     []byte // memory mode only
	key     string
}

type segment struct {
	first int64 // sequence number in the name
	path  string
	size  int64
	last  time.Time // newest event's time
}

type pending struct {
	ev   *pubsubtypes.Event
	meta []byte
	raw  []byte
	key  string
	off  int64
	seg  *segment
	err  error
	done chan struct{}
}

type metaRecord struct {
	Event pubsubtypes.Event
	Dedup string `json:",omitempty"`
}

// Journal is an open journal. It is safe for concurrent use.
type Journal struct {
	opts    Options
	id      string
	memory  bool
	metrics *metrics
	unlock  func()

	// Owned by the writer goroutine.
	f     *os.File
	fsize int64
	buf   []byte

	mu          sync.Mutex
	cond        *sync.Cond
	queue       []*pending
	closed      bool
	broken      error // a write that could not be undone; appends fail
	entries     []entry
	segments    []*segment
	keys        map[string]int64
	pendingKeys map[string]*pending
	nextSeq     int64
	committed   int64     // newest committed sequence number
	assigned    time.Time // newest time handed out
	headTime    time.Time // newest committed time (or open time)
	bytes       int64     // memory mode: retained bytes
	changed     chan struct{}
	written     chan written
	done        chan struct{}
	stop        chan struct{}
	retainDone  chan struct{}
}

// Open opens (creating if needed) the journal in opts.Dir, replays it
// into the index and cuts a torn tail.
func Open(opts Options) (*Journal, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	j := &Journal{
		opts:        opts,
		memory:      opts.Dir == "",
		keys:        map[string]int64{},
		pendingKeys: map[string]*pending{},
		nextSeq:     1,
		changed:     make(chan struct{}),
		written:     make(chan written, 64),
		done:        make(chan struct{}),
		stop:        make(chan struct{}),
		retainDone:  make(chan struct{}),
	}
	j.cond = sync.NewCond(&j.mu)
	j.metrics = newMetrics(opts.Registry)
	if j.memory {
		j.id = newID()
	} else if err := j.load(); err != nil {
		if j.f != nil {
			j.f.Close()
		}
		if j.unlock != nil {
			j.unlock()
		}
		return nil, err
	}
	now := opts.Now().UTC()
	if j.headTime.Before(now) {
		j.headTime = now
	}
	j.assigned = j.headTime
	j.retainLocked()
	j.updateGauges()
	go j.run()
	go j.syncLoop()
	go j.retainLoop()
	return j, nil
}

func (j *Journal) retainLoop() {
	defer close(j.retainDone)
	t := time.NewTicker(j.opts.RetainEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			j.Retain()
		case <-j.stop:
			return
		}
	}
}

// Err reports why the journal cannot accept appends (a write failed and
// could not be undone, or it is closed), or nil.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	return j.broken
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID returns the journal's identity, which changes only when its
// directory is replaced.
func (j *Journal) ID() string { return j.id }

func (j *Journal) load() error {
	dir := j.opts.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, "lock"))
	if err != nil {
		return fmt.Errorf("journal: %s is in use by another process: %w", dir, err)
	}
	j.unlock = unlock
	if err := j.loadID(); err != nil {
		return err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*"+segExt))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	sort.Strings(names)
	for i, p := range names {
		first, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(p), segExt), 10, 64)
		if err != nil || first < 1 {
			return fmt.Errorf("journal: unexpected file %s", p)
		}
		seg := &segment{first: first, path: p}
		if err := j.replay(seg, i == len(names)-1); err != nil {
			return err
		}
		if seg.last.IsZero() {
			// No readable record: age it by its modification time.
			if st, err := os.Stat(p); err == nil {
				seg.last = st.ModTime()
			}
		}
		j.segments = append(j.segments, seg)
	}
	if n := len(j.segments); n > 0 {
		last := j.segments[n-1]
		f, err := os.OpenFile(last.path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		if _, err := f.Seek(last.size, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("journal: %w", err)
		}
		j.f, j.fsize = f, last.size
		return nil
	}
	_, err = j.newSegment(j.nextSeq)
	return err
}

func (j *Journal) loadID() error {
	p := filepath.Join(j.opts.Dir, "id")
	b, err := os.ReadFile(p)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) != 32 {
			return fmt.Errorf("journal: %s: bad journal ID %q", p, id)
		}
		if _, err := hex.DecodeString(id); err != nil {
			return fmt.Errorf("journal: %s: bad journal ID %q", p, id)
		}
		j.id = id
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	j.id = newID()
	tmp := p + ".tmp"
	if err := writeFileSync(tmp, []byte(j.id+"\n")); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return syncDir(j.opts.Dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	return nil
}

// replay reads one segment into the index. In the last segment a bad
// record is a torn write and is cut off.
func (j *Journal) replay(seg *segment, last bool) error {
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [headerLen]byte
	off := int64(0)
	bad := func(why string) error {
		if !last {
			j.opts.Log.WithFields(logrus.Fields{"segment": seg.path, "offset": off}).Errorf("journal: %s; skipping the rest of this segment", why)
			j.metrics.corrupt.Inc()
			seg.size = off
			return nil
		}
		j.opts.Log.WithFields(logrus.Fields{"segment": seg.path, "offset": off}).Warnf("journal: cutting torn tail: %s", why)
		j.metrics.tornTails.Inc()
		if err := os.Truncate(seg.path, off); err != nil {
			return fmt.Errorf("journal: cut torn tail of %s at %d: %w", seg.path, off, err)
		}
		if off < int64(len(magic)) {
			if err := os.WriteFile(seg.path, []byte(magic), 0o644); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			off = int64(len(magic))
		}
		wf, err := os.OpenFile(seg.path, os.O_WRONLY, 0)
		if err == nil {
			err = wf.Sync()
			wf.Close()
		}
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		seg.size = off
		return nil
	}
	if _, err := io.ReadFull(r, hdr[:len(magic)]); err != nil || string(hdr[:len(magic)]) != magic {
		if err == nil && string(hdr[:len(magic)]) != magic {
			return fmt.Errorf("journal: %s is not a journal segment (bad magic)", seg.path)
		}
		return bad("short segment header")
	}
	off = int64(len(magic))
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				seg.size = off
				return nil
			}
			return bad("short record header")
		}
		metaLen := binary.LittleEndian.Uint32(hdr[4:])
		rawLen := binary.LittleEndian.Uint32(hdr[8:])
		seq := int64(binary.LittleEndian.Uint64(hdr[12:]))
		nanos := int64(binary.LittleEndian.Uint64(hdr[20:]))
		if metaLen > maxMeta || rawLen > MaxRaw {
			return bad("record length out of range")
		}
		body := make([]byte, int(metaLen)+int(rawLen))
		if _, err := io.ReadFull(r, body); err != nil {
			return bad("short record")
		}
		crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, body)
		if crc != binary.LittleEndian.Uint32(hdr[0:]) {
			return bad("checksum mismatch")
		}
		var m metaRecord
		if err := json.Unmarshal(body[:metaLen], &m); err != nil {
			return bad("undecodable metadata: " + err.Error())
		}
		if seq < seg.first || seq < j.nextSeq {
			return bad(fmt.Sprintf("sequence number %d out of order", seq))
		}
		ev := m.Event
		ev.Seq, ev.Time, ev.JournalID, ev.Raw = seq, pubsubtypes.Time(time.Unix(0, nanos).UTC()), j.id, nil
		j.entries = append(j.entries, entry{ev: &ev, seg: seg, off: off, metaLen: metaLen, rawLen: rawLen, key: m.Dedup})
		if m.Dedup != "" {
			j.keys[m.Dedup] = seq
		}
		j.nextSeq = seq + 1
		j.committed = seq
		if t := ev.Time.T(); t.After(j.headTime) {
			j.headTime = t
		}
		seg.last = ev.Time.T()
		off += headerLen + int64(metaLen) + int64(rawLen)
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newSegment starts a segment whose first record will be seq and makes
// it the active one; it is called from load and from the writer
// goroutine. It returns the previous active file, which the caller closes
// once it is synced.
func (j *Journal) newSegment(seq int64) (*os.File, error) {
	p := filepath.Join(j.opts.Dir, fmt.Sprintf("%020d%s", seq, segExt))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: new segment: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(p)
		return nil, fmt.Errorf("journal: new segment %s: %w", p, err)
	}
	if err := syncDir(j.opts.Dir); err != nil {
		f.Close()
		return nil, err
	}
	old := j.f
	j.f, j.fsize = f, int64(len(magic))
	seg := &segment{first: seq, path: p, size: j.fsize}
	j.mu.Lock()
	j.segments = append(j.segments, seg)
	j.mu.Unlock()
	return old, nil
}

// Append journals ev (whose Source, Type, summary and DeliveryID the
// caller filled in) with its raw payload, and returns once it is durable,
// with Seq, Time and JournalID assigned. If key is non-empty and an event
// with the same key was appended before (and is still retained), nothing
// is written and that event is returned with dup true; a concurrent
// duplicate waits for the first to be durable.
func (j *Journal) Append(ctx context.Context, ev *pubsubtypes.Event, raw []byte, key string) (pubsubtypes.Event, bool, error) {
	m := metaRecord{Event: *ev, Dedup: key}
	m.Event.Seq, m.Event.Time, m.Event.JournalID, m.Event.Raw = 0, pubsubtypes.Time{}, "", nil
	meta, err := json.Marshal(m)
	if err != nil {
		return pubsubtypes.Event{}, false, fmt.Errorf("journal: encode event: %w", err)
	}
	if len(meta) > maxMeta || len(raw) > MaxRaw {
		return pubsubtypes.Event{}, false, ErrTooLarge
	}
	p := &pending{meta: meta, raw: raw, key: key, done: make(chan struct{})}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return pubsubtypes.Event{}, false, ErrClosed
	}
	if j.broken != nil {
		err := j.broken
		j.mu.Unlock()
		return pubsubtypes.Event{}, false, err
	}
	if key != "" {
		if seq, ok := j.keys[key]; ok {
			if i := j.indexOf(seq); i >= 0 {
				e := *j.entries[i].ev
				j.mu.Unlock()
				j.metrics.appends.WithLabelValues("duplicate").Inc()
				return e, true, nil
			}
		}
		if first, ok := j.pendingKeys[key]; ok {
			j.mu.Unlock()
			select {
			case <-first.done:
			case <-ctx.Done():
				return pubsubtypes.Event{}, false, ctx.Err()
			}
			if first.err != nil {
				return pubsubtypes.Event{}, false, first.err
			}
			j.metrics.appends.WithLabelValues("duplicate").Inc()
			return *first.ev, true, nil
		}
		j.pendingKeys[key] = p
	}
	t := j.opts.Now().UTC()
	if !t.After(j.assigned) {
		t = j.assigned.Add(time.Nanosecond)
	}
	j.assigned = t
	e := m.Event
	e.Seq, e.Time, e.JournalID = j.nextSeq, pubsubtypes.Time(t), j.id
	j.nextSeq++
	p.ev = &e
	j.queue = append(j.queue, p)
	j.cond.Signal()
	j.mu.Unlock()

	select {
	case <-p.done:
	case <-ctx.Done():
		return pubsubtypes.Event{}, false, ctx.Err()
	}
	if p.err != nil {
		j.metrics.appends.WithLabelValues("error").Inc()
		return pubsubtypes.Event{}, false, p.err
	}
	j.metrics.appends.WithLabelValues("ok").Inc()
	return *p.ev, false, nil
}

// written is a batch the writer goroutine has written (not yet synced),
// or a segment file it has retired, on its way to the syncer.
type written struct {
	batch   []*pending
	f       *os.File // the file batch was written to
	err     error    // the write failed (and was undone)
	rotated bool     // a new segment was started for this batch
	retire  *os.File // close this file once everything before it is synced
}

// run is the writer goroutine: it takes queued appends in batches and
// writes each batch with one write, while the syncer goroutine fsyncs
// what was written before, so that writing and syncing overlap.
func (j *Journal) run() {
	defer close(j.written)
	for {
		j.mu.Lock()
		for len(j.queue) == 0 && !j.closed {
			j.cond.Wait()
		}
		if len(j.queue) == 0 {
			j.mu.Unlock()
			return
		}
		n := len(j.queue)
		if n > j.opts.MaxBatch {
			n = j.opts.MaxBatch
		}
		batch := j.queue[:n:n]
		j.queue = j.queue[n:]
		if len(j.queue) == 0 {
			j.queue = nil
		}
		j.mu.Unlock()

		w := j.write(batch)
		if w.retire != nil {
			j.written <- written{retire: w.retire}
			w.retire = nil
		}
		j.written <- w
	}
}

// syncLoop is the syncer goroutine: it takes every batch written so far,
// fsyncs once for all of them (group commit), then publishes them in
// order and wakes their appenders.
func (j *Journal) syncLoop() {
	defer close(j.done)
	for w := range j.written {
		group := []written{w}
	more:
		for {
			select {
			case w2, ok := <-j.written:
				if !ok {
					break more
				}
				group = append(group, w2)
			default:
				break more
			}
		}
		var serr error
		if !j.memory {
			var files []*os.File
			for _, g := range group {
				if g.batch != nil && g.err == nil && !slices.Contains(files, g.f) {
					files = append(files, g.f)
				}
			}
			start := time.Now()
			for _, f := range files {
				if err := syncData(f); err != nil && serr == nil {
					serr = fmt.Errorf("journal: fsync %s: %w", f.Name(), err)
				}
			}
			if len(files) > 0 {
				j.metrics.fsync.Observe(time.Since(start).Seconds())
			}
		}
		j.mu.Lock()
		if serr != nil && j.broken == nil {
			// After a failed fsync the file's state is unknown: stop
			// accepting events rather than risk acknowledging lost ones.
			j.broken = serr
		}
		rotated := false
		for _, g := range group {
			if g.retire != nil {
				g.retire.Close()
				continue
			}
			err := g.err
			if err == nil {
				err = serr
			}
			j.commitLocked(g.batch, err)
			rotated = rotated || g.rotated
		}
		if rotated {
			j.retainLocked()
		}
		j.mu.Unlock()
	}
}

// write appends batch to the active segment (the syncer fsyncs it). A
// failed write is undone by truncating back; if that fails too the
// journal is broken.
func (j *Journal) write(batch []*pending) (w written) {
	w.batch = batch
	j.metrics.batch.Observe(float64(len(batch)))
	if j.memory {
		return w
	}
	j.mu.Lock()
	broken := j.broken
	j.mu.Unlock()
	if broken != nil {
		w.err = broken
		return w
	}
	if j.fsize >= j.opts.SegmentBytes {
		old, err := j.newSegment(batch[0].ev.Seq)
		if err != nil {
			w.err = err
			return w
		}
		w.rotated, w.retire = true, old
	}
	w.f = j.f
	j.mu.Lock()
	seg := j.segments[len(j.segments)-1]
	j.mu.Unlock()
	buf := j.buf[:0]
	for _, p := range batch {
		p.off = j.fsize + int64(len(buf))
		p.seg = seg
		buf = appendRecord(buf, p)
	}
	start := time.Now()
	_, err := j.f.Write(buf)
	j.metrics.write.Observe(time.Since(start).Seconds())
	if err != nil {
		w.err = fmt.Errorf("journal: write %s: %w", seg.path, err)
		if terr := j.f.Truncate(j.fsize); terr != nil {
			j.mu.Lock()
			j.broken = fmt.Errorf("%w (and undoing it failed: %v)", w.err, terr)
			j.mu.Unlock()
		} else if _, serr := j.f.Seek(j.fsize, io.SeekStart); serr != nil {
			j.mu.Lock()
			j.broken = fmt.Errorf("%w (and seeking back failed: %v)", w.err, serr)
			j.mu.Unlock()
		}
		return w
	}
	j.fsize += int64(len(buf))
	if cap(buf) <= 4<<20 {
		j.buf = buf
	} else {
		j.buf = nil
	}
	return w
}

func appendRecord(buf []byte, p *pending) []byte {
	start := len(buf)
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(p.meta)))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(p.raw)))
	binary.LittleEndian.PutUint64(hdr[12:], uint64(p.ev.Seq))
	binary.LittleEndian.PutUint64(hdr[20:], uint64(p.ev.Time.T().UnixNano()))
	buf = append(buf, hdr[:]...)
	buf = append(buf, p.meta...)
	buf = append(buf, p.raw...)
	crc := crc32.Checksum(buf[start+4:], castagnoli)
	binary.LittleEndian.PutUint32(buf[start:], crc)
	return buf
}

// commitLocked publishes a written batch to the index and wakes its
// appenders and the subscribers.
func (j *Journal) commitLocked(batch []*pending, err error) {
	for _, p := range batch {
		if p.key != "" {
			delete(j.pendingKeys, p.key)
		}
		p.err = err
		if err == nil {
			e := entry{ev: p.ev, seg: p.seg, off: p.off, metaLen: uint32(len(p.meta)), rawLen: uint32(len(p.raw)), key: p.key}
			size := int64(headerLen + len(p.meta) + len(p.raw))
			if j.memory {
				e.raw = p.raw
				j.bytes += size
			} else {
				p.seg.size += size
				p.seg.last = p.ev.Time.T()
			}
			j.entries = append(j.entries, e)
			if p.key != "" {
				j.keys[p.key] = p.ev.Seq
			}
			j.headTime = p.ev.Time.T()
			j.committed = p.ev.Seq
		}
		close(p.done)
	}
	if err == nil {
		close(j.changed)
		j.changed = make(chan struct{})
		if j.memory && j.bytes > j.opts.RetentionBytes {
			j.retainLocked()
		}
		j.updateGauges()
	} else {
		j.opts.Log.WithError(err).Error("journal: write failed; deliveries answered with an error")
	}
}

// Retain enforces the retention limits now. It runs by itself after each
// new segment; servers also call it periodically so that age applies to
// a quiet journal.
func (j *Journal) Retain() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.retainLocked()
}

func (j *Journal) retainLocked() {
	cutoff := j.opts.Now().Add(-j.opts.RetentionAge)
	drop := 0 // entries to drop from the front
	if j.memory {
		// Over the size limit, trim to 90% of it, so that a journal at
		// its limit does not copy its index on every commit.
		limit := j.opts.RetentionBytes
		if j.bytes > limit {
			limit -= limit / 10
		}
		for drop < len(j.entries) {
			e := j.entries[drop]
			if !e.ev.Time.T().Before(cutoff) && j.bytes <= limit {
				break
			}
			j.bytes -= int64(headerLen) + int64(e.metaLen) + int64(e.rawLen)
			drop++
		}
	} else {
		var total int64
		for _, s := range j.segments {
			total += s.size
		}
		for len(j.segments) > 1 {
			s := j.segments[0]
			if !s.last.Before(cutoff) && total <= j.opts.RetentionBytes {
				break
			}
			if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				j.opts.Log.WithError(err).Warn("journal: retention: cannot delete segment")
				break
			}
			total -= s.size
			j.segments = j.segments[1:]
			for drop < len(j.entries) && j.entries[drop].seg == s {
				drop++
			}
			j.metrics.deleted.Inc()
		}
	}
	if drop == 0 {
		return
	}
	for _, e := range j.entries[:drop] {
		if e.key != "" && j.keys[e.key] == e.ev.Seq {
			delete(j.keys, e.key)
		}
	}
	j.entries = append([]entry(nil), j.entries[drop:]...)
	j.updateGauges()
}

// indexOf returns the index of the entry with sequence number seq, or -1.
func (j *Journal) indexOf(seq int64) int {
	i := sort.Search(len(j.entries), func(i int) bool { return j.entries[i].ev.Seq >= seq })
	if i < len(j.entries) && j.entries[i].ev.Seq == seq {
		return i
	}
	return -1
}

// startLocked returns the index of the first entry after cur.
func (j *Journal) startLocked(cur pubsubtypes.Cursor) int {
	switch {
	case cur.JournalID == j.id || (cur.JournalID == "" && cur.Seq > 0):
		return sort.Search(len(j.entries), func(i int) bool { return j.entries[i].ev.Seq > cur.Seq })
	case !cur.T().IsZero():
		t := cur.T()
		return sort.Search(len(j.entries), func(i int) bool { return j.entries[i].ev.Time.T().After(t) })
	case cur.JournalID != "":
		// Another journal, and no time: everything retained is new.
		return 0
	default:
		// The zero cursor: from now on.
		return len(j.entries)
	}
}

// headLocked is the cursor after everything committed, never earlier in
// time than cur.
func (j *Journal) headLocked(cur pubsubtypes.Cursor) pubsubtypes.Cursor {
	h := pubsubtypes.Cursor{JournalID: j.id, Seq: j.committed, Time: pubsubtypes.Time(j.headTime)}
	if cur.T().After(j.headTime) {
		h.Time = cur.Time
	}
	return h
}

// Next returns the first event after cur that matches f, or nil and the
// cursor after everything committed so far. It does not block.
func (j *Journal) Next(cur pubsubtypes.Cursor, f pubsubtypes.Filter) (*pubsubtypes.Event, pubsubtypes.Cursor) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.nextLocked(cur, f)
}

func (j *Journal) nextLocked(cur pubsubtypes.Cursor, f pubsubtypes.Filter) (*pubsubtypes.Event, pubsubtypes.Cursor) {
	for i := j.startLocked(cur); i < len(j.entries); i++ {
		if ev := j.entries[i].ev; f.Match(ev) {
			e := *ev
			return &e, e.Cursor()
		}
	}
	return nil, j.headLocked(cur)
}

// Wait returns the first event after cur that matches f, waiting up to
// timeout for one to be committed. With no event it returns nil and the
// cursor to resume from (which passes over events the filter rejected).
func (j *Journal) Wait(ctx context.Context, cur pubsubtypes.Cursor, f pubsubtypes.Filter, timeout time.Duration) (*pubsubtypes.Event, pubsubtypes.Cursor, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		j.mu.Lock()
		ev, head := j.nextLocked(cur, f)
		ch, closed := j.changed, j.closed
		j.mu.Unlock()
		if ev != nil {
			return ev, head, nil
		}
		if closed {
			return nil, head, ErrClosed
		}
		// Resume the scan after what was just examined.
		cur = head
		select {
		case <-ch:
		case <-timer.C:
			return nil, head, nil
		case <-ctx.Done():
			return nil, head, ctx.Err()
		}
	}
}

// Recent returns up to limit events after cur that match f, newest first.
func (j *Journal) Recent(cur pubsubtypes.Cursor, f pubsubtypes.Filter, limit int) []pubsubtypes.Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	start := 0
	if !cur.IsZero() {
		start = j.startLocked(cur)
	}
	var out []pubsubtypes.Event
	for i := len(j.entries) - 1; i >= start && len(out) < limit; i-- {
		if ev := j.entries[i].ev; f.Match(ev) {
			out = append(out, *ev)
		}
	}
	return out
}

// Raw returns the payload of event seq as it was received.
func (j *Journal) Raw(seq int64) ([]byte, error) {
	j.mu.Lock()
	i := j.indexOf(seq)
	if i < 0 {
		j.mu.Unlock()
		return nil, fmt.Errorf("%w: seq %d", ErrNotFound, seq)
	}
	e := j.entries[i]
	j.mu.Unlock()
	if j.memory {
		return e.raw, nil
	}
	f, err := os.Open(e.seg.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: seq %d", ErrNotFound, seq)
		}
		return nil, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	b := make([]byte, e.rawLen)
	if _, err := f.ReadAt(b, e.off+headerLen+int64(e.metaLen)); err != nil {
		return nil, fmt.Errorf("journal: read seq %d from %s: %w", seq, e.seg.path, err)
	}
	return b, nil
}

// Stats describes the journal's contents.
type Stats struct {
	Events   int
	Segments int
	Bytes    int64
	FirstSeq int64
	LastSeq  int64
}

// Stats returns the journal's current size.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.statsLocked()
}

func (j *Journal) statsLocked() Stats {
	s := Stats{Events: len(j.entries), Segments: len(j.segments), Bytes: j.bytes}
	for _, seg := range j.segments {
		s.Bytes += seg.size
	}
	if len(j.entries) > 0 {
		s.FirstSeq = j.entries[0].ev.Seq
		s.LastSeq = j.entries[len(j.entries)-1].ev.Seq
	}
	return s
}

func (j *Journal) updateGauges() {
	s := j.statsLocked()
	j.metrics.events.Set(float64(s.Events))
	j.metrics.bytes.Set(float64(s.Bytes))
	j.metrics.segments.Set(float64(s.Segments))
}

// Close writes what is queued, stops the writer and wakes every waiter.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.cond.Broadcast()
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
	close(j.stop)
	<-j.retainDone
	<-j.done
	var err error
	if j.f != nil {
		err = j.f.Close()
	}
	if j.unlock != nil {
		j.unlock()
	}
	return err
}
