package maintner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/tryd-ci/tryd/maintner/internal/segmap"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// SegmentReader returns the bytes of segment i (0 <= i < n) of a log and
// a name for it in errors. buf is a buffer the reader may reuse (append
// to buf[:0]); Load recycles buffers between segments so that loading a
// long log does not allocate 16 MiB per segment. Load calls it from
// several goroutines.
type SegmentReader func(ctx context.Context, i int, buf []byte) (name string, data []byte, err error)

// Load applies every record of n segments, in order. Segments are read
// ahead (Options.LoadWorkers at a time) and their records decoded in
// parallel while earlier records are applied, so loading is bound by
// the slower of the two rather than their sum. Gerrit changes are
// derived when first read (see GerritChange).
//
// A corrupt or truncated segment, or a record that does not decode,
// stops the load with an error naming segment and offset; records of
// earlier segments stay applied, and so may records of the bad segment
// before the bad one (they are applied in chunks as they are decoded),
// never the bad record or any after it.
//
// Text read through Load stays in memory; LoadFiles and LoadLog leave it
// in the log (see Text).
func (c *Corpus) Load(ctx context.Context, n int, read SegmentReader) error {
	return c.load(ctx, n, read, nil, false)
}

// Loading is a pipeline of four stages:
//
//   - readers (LoadWorkers of them) read segments, reader r segments r,
//     r+readers, ...; reader r starts a segment once its previous one is
//     applied, and reads it into that segment's buffer, which the
//     applier hands back through bufs[r]. That bounds the read-ahead to
//     a segment per reader, and because the applier hands buffers back
//     in segment order, no reader can hold one that the segment the
//     applier waits for needs. (A shared pool of buffers could: a reader
//     could take every buffer for segments after one another reader has
//     not started.)
//   - the splitter takes the segments in order, checks their framing
//     (reclog.Scan) and cuts their records into chunks of chunkRecords,
//     which it queues, in log order, both to the decoders and to the
//     applier;
//   - decoders (LoadWorkers of them) take the next chunk from the queue,
//     decode its records and build their commits (prebuilder);
//   - the applier takes chunks in log order, waits for each to be
//     decoded, and applies it.
//
// The unit of parallel work is a chunk, not a segment: every decoder
// works on the chunks just ahead of the applier, so all of them are busy
// until the last chunk and the applier rarely waits. (Decoding a segment
// per worker, as loading once did, left a decoder idle whenever it was
// further ahead than its share of buffered records allowed, and only
// one decoding the last segment: a quarter of a load ran on one core.)
// The queue holds loadWindow records, which bounds the decoded records
// in memory; they are recycled a chunk at a time.
const (
	// chunkRecords is how many records a chunk holds: small enough that
	// the decoders' last chunks end together, large enough that handing
	// a chunk over (a few channel operations, the corpus lock) costs
	// little next to decoding it (a few µs per record).
	chunkRecords = 128
	// loadWindow bounds the records queued ahead of the applier. A
	// short queue keeps the decoded records, which the applier reads
	// soon after a decoder wrote them and a decoder reuses once they
	// are applied, in the processors' caches: on a 256 MiB log, 2048
	// records (an eighth of a 16 MiB segment) take about 15% less CPU
	// time and wall time than 8192, and 1024 or 512 no less.
	loadWindow = 2048
)

// chunk is a run of consecutive records of one segment.
type chunk struct {
	seg  int
	name string // the segment's name, for errors
	recs []chunkRec
	// decs are the decoded records, set by a decoder. The backing array
	// past len holds recycled records for the next decoder to reset and
	// reuse.
	decs []*decoded
	// err is a read or framing error after recs (set by the splitter),
	// or an error decoding one of recs (set by a decoder): the load
	// stops at it.
	err error
	// last marks the last chunk of a segment, which carries the
	// segment's data, handed back to its reader once applied.
	last bool
	data []byte
	// done gets a value once decs and err are set.
	done chan struct{}
}

type chunkRec struct {
	off     int64
	payload []byte
}

// load applies n segments read by read. release, if set, is called once
// segment i is applied (or will not be); it reports whether the data
// read returned for it was not a buffer to reuse (a mapping it
// released), which must then never be handed back to read.
func (c *Corpus) load(ctx context.Context, n int, read SegmentReader, release func(i int) (mapped bool), refs bool) error {
	if !c.opts.LoadWithGC {
		defer pauseGC(loadBudget(n))()
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	stage := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	l := newLoader(ctx, c, n, read, release, refs)
	for r := range l.bufs {
		stage(func() { l.readSegments(r) })
	}
	stage(l.split)
	for range c.opts.LoadWorkers {
		stage(l.decode)
	}
	return l.apply()
}

// loader is the state the stages of one load share (see chunk).
type loader struct {
	c       *Corpus
	ctx     context.Context
	n       int
	read    SegmentReader
	release func(i int) (mapped bool)
	refs    bool
	// segs[i] takes segment i from its reader to the splitter; bufs[r]
	// takes reader r's buffer back from the applier.
	segs []chan segment
	bufs []chan []byte
	// order takes chunks to the applier and queue to the decoders, in
	// log order; free recycles them (a channel rather than a
	// sync.Pool, which the collector empties every cycle), so that
	// loading allocates per record only what the corpus keeps.
	order, queue, free chan *chunk
}

// segment is what a reader read.
type segment struct {
	name string
	data []byte
	err  error
}

func newLoader(ctx context.Context, c *Corpus, n int, read SegmentReader, release func(int) bool, refs bool) *loader {
	window := loadWindow / chunkRecords
	l := &loader{c: c, ctx: ctx, n: n, read: read, release: release, refs: refs,
		segs:  make([]chan segment, n),
		bufs:  make([]chan []byte, min(c.opts.LoadWorkers, max(n, 1))),
		order: make(chan *chunk, window),
		queue: make(chan *chunk, window),
		free:  make(chan *chunk, window+c.opts.LoadWorkers+2),
	}
	for i := range l.segs {
		l.segs[i] = make(chan segment, 1)
	}
	for r := range l.bufs {
		l.bufs[r] = make(chan []byte, 1)
		l.bufs[r] <- nil
	}
	return l
}

// readSegments is reader r.
func (l *loader) readSegments(r int) {
	for i := r; i < l.n; i += len(l.bufs) {
		var buf []byte
		select {
		case buf = <-l.bufs[r]:
		case <-l.ctx.Done():
			return
		}
		name, data, err := l.read(l.ctx, i, buf)
		l.segs[i] <- segment{name, data, err} // never blocks: one send per channel
		if err != nil {
			return
		}
	}
}

// newChunk returns an empty chunk of segment seg, a recycled one if
// there is one.
func (l *loader) newChunk(seg int, name string) *chunk {
	select {
	case ch := <-l.free:
		ch.seg, ch.name = seg, name
		return ch
	default:
		return &chunk{seg: seg, name: name, recs: make([]chunkRec, 0, chunkRecords),
			decs: make([]*decoded, 0, chunkRecords), done: make(chan struct{}, 1)}
	}
}

// emit queues ch to the applier and to the decoders; it reports false
// if the load was canceled.
func (l *loader) emit(ch *chunk) bool {
	for _, q := range [...]chan *chunk{l.order, l.queue} {
		select {
		case q <- ch:
		case <-l.ctx.Done():
			return false
		}
	}
	return true
}

// split is the splitter.
func (l *loader) split() {
	defer close(l.queue)
	for i := 0; i < l.n; i++ {
		var s segment
		select {
		case s = <-l.segs[i]:
		case <-l.ctx.Done():
			return
		}
		ch := l.newChunk(i, s.name)
		if s.err == nil {
			_, s.err = reclog.Scan(s.name, s.data, 0, func(off int64, payload []byte) error {
				ch.recs = append(ch.recs, chunkRec{off, payload})
				if len(ch.recs) == chunkRecords {
					if !l.emit(ch) {
						return l.ctx.Err()
					}
					ch = l.newChunk(i, s.name)
				}
				return nil
			})
		}
		ch.err, ch.last, ch.data = s.err, true, s.data
		if !l.emit(ch) || s.err != nil {
			return // the applier stops at the error
		}
	}
	close(l.order)
}

// decode is a decoder.
func (l *loader) decode() {
	// pb builds the commits of this decoder's records.
	pb := newPrebuilder(l.refs)
	for ch := range l.queue {
		if l.ctx.Err() != nil {
			// The applier has stopped: drain the queue so the
			// splitter does not wait on it.
			continue
		}
		decs := ch.decs[:0]
		for _, r := range ch.recs {
			var d *decoded
			if n := len(decs); n < cap(decs) {
				d = decs[:n+1][n] // a recycled record, or nil
			}
			if d == nil {
				d = &decoded{}
			} else {
				// Reset here rather than by the applier, which has
				// less time to spare.
				d.reset()
			}
			if err := d.decode(r.payload); err != nil {
				ch.err = fmt.Errorf("segment %s offset %d: %w", ch.name, r.off, err)
				break
			}
			d.loc = recordLoc{payload: r.payload, seg: int32(ch.seg), off: r.off + int64(reclog.HeaderLen(r.off, len(r.payload)))}
			pb.prebuild(d)
			decs = append(decs, d)
		}
		ch.decs = decs
		ch.done <- struct{}{}
	}
}

// apply is the applier.
func (l *loader) apply() error {
	c := l.c
	for {
		var ch *chunk
		select {
		case next, ok := <-l.order:
			if !ok {
				return nil
			}
			ch = next
		case <-l.ctx.Done():
			return l.ctx.Err()
		}
		select {
		case <-ch.done:
		case <-l.ctx.Done():
			return l.ctx.Err()
		}
		if ch.err != nil {
			return fmt.Errorf("maintner: load segment %d: %w", ch.seg, ch.err)
		}
		c.mu.Lock()
		for _, d := range ch.decs {
			if l.refs {
				c.cur = &d.loc
			}
			c.applyLocked(d)
		}
		c.cur = nil
		c.mu.Unlock()
		if ch.last {
			if err := l.segmentApplied(ch.seg, ch.data); err != nil {
				return err
			}
		}
		clear(ch.recs)
		*ch = chunk{recs: ch.recs[:0], decs: ch.decs[:0], done: ch.done}
		select {
		case l.free <- ch:
		default:
		}
	}
}

// segmentApplied hands segment i's buffer back to its reader and tells
// watchers and LoadProgress.
func (l *loader) segmentApplied(i int, buf []byte) error {
	// Everything applied was copied or referenced by position, so the
	// segment buffer can be reused. (Sent even when nil: the reader
	// waits for it.)
	if l.release != nil && l.release(i) {
		buf = nil
	}
	l.bufs[i%len(l.bufs)] <- buf[:0]
	if err := l.ctx.Err(); err != nil {
		return err
	}
	c := l.c
	c.mu.Lock()
	c.version++
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.opts.LoadProgress != nil {
		c.opts.LoadProgress(i+1, l.n)
	}
	return nil
}

// LoadFiles loads segment files, in the order given: paths[i] must be
// segment i of the log. Long text stays in the files, which must not
// change while the corpus is in use (sealed segments never do); Close
// releases them.
//
// Sealed segments (named as mutlog.SealedName names them) are mapped
// into memory rather than read, where the system allows: loading then
// neither copies the log nor faults in buffers for it. A mapping lasts
// until its segment is applied. Growing segments, which a log may cut
// back after a crash, are read.
func (c *Corpus) LoadFiles(ctx context.Context, paths []string) error {
	refs := false
	c.mu.Lock()
	if c.src == nil {
		c.src = &fileSource{paths: append([]string(nil), paths...), files: make([]*os.File, len(paths))}
		refs = true
	}
	c.mu.Unlock()
	// maps[i] is segment i's mapping until it is released; a worker
	// sets it before sending the segment's records, the applier
	// releases it after applying them, and whatever a failed load left
	// is released once its workers stopped (load waits for them).
	maps := make([][]byte, len(paths))
	release := func(i int) bool {
		m := maps[i]
		if m == nil {
			return false
		}
		maps[i] = nil
		if err := segmap.Unmap(m); err != nil {
			c.log.Warnf("maintner: unmap segment %s: %v", paths[i], err)
		}
		return true
	}
	defer func() {
		for i := range maps {
			release(i)
		}
	}()
	return c.load(ctx, len(paths), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
		name := filepath.Base(paths[i])
		f, err := os.Open(paths[i])
		if err != nil {
			return name, nil, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return name, nil, err
		}
		if _, _, sealed, ok := mutlog.ParseName(name); ok && sealed && st.Size() > 0 && st.Size() <= segmap.MaxSize {
			if m, err := segmap.Map(f, st.Size(), true); err == nil {
				maps[i] = m
				return name, m, nil
			}
			// Not mappable here: read it.
		}
		if int64(cap(buf)) < st.Size() {
			// Segments are at most 16 MiB: one buffer of that size fits
			// every later segment too.
			buf = make([]byte, 0, max(st.Size(), mutlog.DefaultMaxSegmentSize))
		}
		data := buf[:st.Size()]
		if _, err := io.ReadFull(f, data); err != nil {
			return name, nil, fmt.Errorf("read %s: %w", paths[i], err)
		}
		return name, data, nil
	}, release, refs)
}

// SegmentFiles lists the segment files of a directory laid out like a
// disk store or a follower's cache ("0000.<sha224>.mutlog",
// "0001.growing.mutlog", ...; see mutlog.ParseName), in log order.
func SegmentFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("maintner: list segments: %w", err)
	}
	byNum := map[int]string{}
	maxNum := -1
	for _, e := range ents {
		num, _, _, ok := mutlog.ParseName(e.Name())
		if !ok {
			continue
		}
		if _, dup := byNum[num]; dup {
			return nil, fmt.Errorf("maintner: list segments: %s: two files for segment %d", dir, num)
		}
		byNum[num] = filepath.Join(dir, e.Name())
		maxNum = max(maxNum, num)
	}
	out := make([]string, 0, len(byNum))
	for i := 0; i <= maxNum; i++ {
		p, ok := byNum[i]
		if !ok {
			return nil, fmt.Errorf("maintner: list segments: %s: segment %d missing", dir, i)
		}
		out = append(out, p)
	}
	return out, nil
}

var errNoSegments = errors.New("maintner: no segments")

// LoadDir loads every segment file of dir (see SegmentFiles).
func (c *Corpus) LoadDir(ctx context.Context, dir string) error {
	paths, err := SegmentFiles(dir)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("%w in %s", errNoSegments, dir)
	}
	return c.LoadFiles(ctx, paths)
}

// LoadLog loads every committed record of an open log, as of the call,
// reading its segments through the log (so the growing segment is read
// consistently). It returns the log size it loaded, from which a caller
// can continue (records appended later are applied by Log or Apply).
func (c *Corpus) LoadLog(ctx context.Context, l *mutlog.Log) (int64, error) {
	segs := l.Segments()
	refs := false
	c.mu.Lock()
	switch src := c.src.(type) {
	case nil:
		c.src = storeSource{l}
		refs = true
	case storeSource:
		refs = src.st == SegmentStore(l)
	}
	c.mu.Unlock()
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	err := c.load(ctx, len(segs), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
		s := segs[i]
		name := fmt.Sprintf("segment %d", s.Number)
		rc, err := l.ReadSegment(ctx, s.Number, 0, s.Size)
		if err != nil {
			return name, nil, err
		}
		defer rc.Close()
		if int64(cap(buf)) < s.Size {
			buf = make([]byte, 0, max(s.Size, mutlog.DefaultMaxSegmentSize))
		}
		data := buf[:s.Size]
		if _, err := io.ReadFull(rc, data); err != nil {
			return name, nil, fmt.Errorf("read %s: %w", name, err)
		}
		return name, data, nil
	}, nil, refs)
	return total, err
}
