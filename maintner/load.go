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
// and decoded in parallel (Options.LoadWorkers at a time) while the
// records of earlier segments are applied, so loading is bound by the
// slower of the two rather than their sum. Gerrit changes are derived
// when first read (see GerritChange).
//
// A corrupt or truncated segment, or a record that does not decode,
// stops the load with an error naming segment and offset; records of
// earlier segments stay applied, and so may records of the bad segment
// before the bad one (they are applied in batches as they are decoded),
// never the bad record or any after it.
//
// Text read through Load stays in memory; LoadFiles and LoadLog leave it
// in the log (see Text).
func (c *Corpus) Load(ctx context.Context, n int, read SegmentReader) error {
	return c.load(ctx, n, read, nil, false)
}

// load applies n segments read by read. release, if set, is called once
// segment i is applied (or will not be); it reports whether the data
// read returned for it was not a buffer to reuse (a mapping it
// released), which must then never be handed back to read.
func (c *Corpus) load(ctx context.Context, n int, read SegmentReader, release func(i int) (mapped bool), refs bool) error {
	// Workers read and decode segments (worker w takes segments w,
	// w+workers, ...) and hand the applier batches of decoded records
	// through one channel per segment. A channel holds many batches, so
	// a worker keeps decoding while the applier waits for a CPU, and the
	// applier then finds records ready: on a busy machine, where any
	// goroutine may wait a while to run, a shallow pipeline (it used to
	// hold four batches) stalls each stage on the other.
	type batch struct {
		decs []*decoded
		buf  []byte // the segment buffer, in the last batch only
		err  error
	}
	const (
		batchSize = 512
		// segBatches bounds the batches of one segment in flight:
		// about a quarter of a 16 MiB segment of records of realistic
		// sizes (~30 batches). Deeper costs memory (decoded records
		// waiting, which also makes each record's reuse a cache miss)
		// for little: the applier catches up within a segment.
		segBatches = 8
	)
	if !c.opts.LoadWithGC {
		defer pauseGC(loadBudget(n))()
	}
	workers := c.opts.LoadWorkers
	// Decoded records are recycled, a batch at a time, through free (a
	// channel rather than a sync.Pool, which the collector empties
	// every cycle): loading then allocates per record only what the
	// corpus keeps. A recycled batch is a slice of length 0 whose
	// backing array still holds its records.
	free := make(chan []*decoded, (workers+1)*segBatches)
	newBatch := func() []*decoded {
		select {
		case decs := <-free:
			return decs
		default:
			return make([]*decoded, 0, batchSize)
		}
	}
	slots := make([]chan batch, n)
	for i := range slots {
		slots[i] = make(chan batch, segBatches)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Worker w starts segment i (i >= workers) once segment i-workers,
	// its previous one, is applied, and reads it into that segment's
	// buffer, which the applier hands back through bufs[w]. That bounds
	// the read-ahead to a segment per worker, and because the applier
	// hands buffers back in segment order, no worker can hold one that
	// the segment the applier waits for needs. (A shared pool of
	// buffers could: a worker could take every buffer for segments
	// after one another worker has not started.)
	bufs := make([]chan []byte, workers)
	for w := range bufs {
		bufs[w] = make(chan []byte, 1)
		bufs[w] <- nil
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// pb builds the commits of this worker's records.
			pb := newPrebuilder(refs)
			for i := w; i < n; i += workers {
				var buf []byte
				select {
				case buf = <-bufs[w]:
				case <-ctx.Done():
					return
				}
				send := func(b batch) bool {
					select {
					case slots[i] <- b:
						return true
					case <-ctx.Done():
						return false
					}
				}
				name, data, err := read(ctx, i, buf)
				cur := batch{decs: newBatch()}
				if err == nil {
					_, err = reclog.Scan(name, data, 0, func(off int64, payload []byte) error {
						var d *decoded
						if n := len(cur.decs); n < cap(cur.decs) {
							d = cur.decs[:n+1][n] // a recycled record, or nil
						}
						if d == nil {
							d = &decoded{}
						}
						if err := d.decode(payload); err != nil {
							return fmt.Errorf("segment %s offset %d: %w", name, off, err)
						}
						d.loc = recordLoc{payload: payload, seg: int32(i), off: off + int64(reclog.HeaderLen(off, len(payload)))}
						pb.prebuild(d)
						cur.decs = append(cur.decs, d)
						if len(cur.decs) == batchSize {
							if !send(cur) {
								return ctx.Err()
							}
							cur = batch{decs: newBatch()}
						}
						return nil
					})
				}
				cur.err, cur.buf = err, data
				if !send(cur) {
					return
				}
				close(slots[i])
			}
		}(w)
	}
	for i := 0; i < n; i++ {
		var segBuf []byte
		for {
			var b batch
			var ok bool
			select {
			case b, ok = <-slots[i]:
			case <-ctx.Done():
				// Workers stop without closing their slots.
				return ctx.Err()
			}
			if !ok {
				break
			}
			if b.err != nil {
				cancel()
				return fmt.Errorf("maintner: load segment %d: %w", i, b.err)
			}
			c.mu.Lock()
			for _, d := range b.decs {
				if refs {
					c.cur = &d.loc
				}
				c.applyLocked(d)
				d.reset()
			}
			c.cur = nil
			c.mu.Unlock()
			select {
			case free <- b.decs[:0]:
			default:
			}
			if b.buf != nil {
				segBuf = b.buf
			}
		}
		// Everything applied was copied or referenced by position, so
		// the segment buffer can be reused. (Sent even when nil: the
		// worker waits for it.)
		if release != nil && release(i) {
			segBuf = nil
		}
		bufs[i%workers] <- segBuf[:0]
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.mu.Lock()
		c.version++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if c.opts.LoadProgress != nil {
			c.opts.LoadProgress(i+1, n)
		}
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
