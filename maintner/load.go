package maintner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

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
// once at the end rather than after every record.
//
// A corrupt or truncated segment, or a record that does not decode,
// stops the load with an error naming segment and offset; records of
// earlier segments stay applied, nothing of the bad segment is.
func (c *Corpus) Load(ctx context.Context, n int, read SegmentReader) error {
	type result struct {
		name string
		data []byte
		decs []*decoded
		err  error
	}
	workers := c.opts.LoadWorkers
	slots := make([]chan result, n)
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// tokens bounds how many decoded segments wait in memory; each token
	// carries a segment buffer for reuse.
	tokens := make(chan []byte, workers+1)
	for i := 0; i < workers+1; i++ {
		tokens <- nil
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				var buf []byte
				select {
				case buf = <-tokens:
				case <-ctx.Done():
					return
				}
				var r result
				r.name, r.data, r.err = read(ctx, i, buf)
				if r.err == nil {
					_, r.err = reclog.Scan(r.name, r.data, 0, func(off int64, payload []byte) error {
						d, err := decodeRecord(payload)
						if err != nil {
							return fmt.Errorf("segment %s offset %d: %w", r.name, off, err)
						}
						r.decs = append(r.decs, d)
						return nil
					})
				}
				slots[i] <- r
			}
		}(w)
	}
	for i := 0; i < n; i++ {
		var r result
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err != nil {
			cancel()
			return fmt.Errorf("maintner: load segment %d: %w", i, r.err)
		}
		c.mu.Lock()
		for _, d := range r.decs {
			c.applyLocked(d)
		}
		if i == n-1 {
			c.finishGerrit()
		}
		c.version++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		// Everything applied was copied out of the segment, so its buffer
		// can be reused.
		tokens <- r.data[:0]
	}
	if n == 0 {
		c.mu.Lock()
		c.finishGerrit()
		c.mu.Unlock()
	}
	return nil
}

// LoadFiles loads segment files, in the order given.
func (c *Corpus) LoadFiles(ctx context.Context, paths []string) error {
	return c.Load(ctx, len(paths), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
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
		if int64(cap(buf)) < st.Size() {
			buf = make([]byte, 0, st.Size())
		}
		data := buf[:st.Size()]
		if _, err := io.ReadFull(f, data); err != nil {
			return name, nil, fmt.Errorf("read %s: %w", paths[i], err)
		}
		return name, data, nil
	})
}

// SegmentFiles lists the segment files of a directory laid out like a
// disk store or a follower's cache ("0000.<sha224>.mutlog",
// "0001.growing.mutlog", ...), in log order.
func SegmentFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("maintner: list segments: %w", err)
	}
	byNum := map[int]string{}
	maxNum := -1
	for _, e := range ents {
		num, ok := segmentNumber(e.Name())
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

// segmentNumber parses "NNNN.<sha224|growing>.mutlog".
func segmentNumber(name string) (int, bool) {
	const suffix = ".mutlog"
	if len(name) < 4+1+len(suffix) || name[len(name)-len(suffix):] != suffix {
		return 0, false
	}
	n := 0
	i := 0
	for ; i < len(name) && name[i] >= '0' && name[i] <= '9'; i++ {
		n = n*10 + int(name[i]-'0')
		if n > 1e9 {
			return 0, false
		}
	}
	if i < 4 || name[i] != '.' {
		return 0, false
	}
	return n, true
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
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	err := c.Load(ctx, len(segs), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
		s := segs[i]
		name := fmt.Sprintf("segment %d", s.Number)
		rc, err := l.ReadSegment(ctx, s.Number, 0, s.Size)
		if err != nil {
			return name, nil, err
		}
		defer rc.Close()
		if int64(cap(buf)) < s.Size {
			buf = make([]byte, 0, s.Size)
		}
		data := buf[:s.Size]
		if _, err := io.ReadFull(rc, data); err != nil {
			return name, nil, fmt.Errorf("read %s: %w", name, err)
		}
		return name, data, nil
	})
	return total, err
}
