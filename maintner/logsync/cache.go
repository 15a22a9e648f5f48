package logsync

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/tryd-ci/tryd/maintner/internal/segmap"
	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// ErrStale is matched by errors of CacheReader.ReadAt for a reference
// taken before the follower dropped the bytes it covers (the server's
// history diverged, or a cached file was found corrupt): those bytes may
// since have been replaced, so they are never returned.
var ErrStale = errors.New("logsync: reference into the follower's cache is stale")

// ErrNotCached is matched by errors of CacheReader.ReadAt for bytes the
// follower has not verified (yet, or any more): a reference that was not
// delivered by this follower, or one into a segment being refetched.
var ErrNotCached = errors.New("logsync: bytes are not in the follower's cache")

// CacheReader reads record bytes back from a Follower's cache directory,
// so that a consumer can keep references (segment, offset, length) to
// what was delivered instead of copies, as maintner.Corpus.Follow does
// for long text. It is safe for concurrent use, also while the follower
// runs.
//
// References are keyed by segment number, which, unlike a file name,
// does not change when the follower seals its growing segment. Sealed
// segments are read from read-only mappings, the growing one with pread
// below the size the follower has verified: the follower only ever
// appends to a cache file or replaces it whole (rename, remove), never
// rewrites bytes in place, so bytes below that size never change.
//
// Generations make divergence explicit. When the follower drops cached
// bytes it had verified (the server's history diverged, which Run
// reports as ErrDiverged when records were already delivered, or a
// cached file was corrupt), the cache's generation advances. A reference
// remembers the generation it was taken in (Generation, read while the
// record is delivered); ReadAt of a reference covering dropped bytes
// then fails with ErrStale, loudly, instead of returning whatever the
// cache holds at that position now. References wholly before the point
// of divergence stay readable (those in the segment where it diverged
// once the follower has fetched that segment again; until then ReadAt
// fails with ErrNotCached).
type CacheReader struct {
	c      *cache
	closed atomic.Bool
}

// Reader returns a reader over the follower's cache. It stays usable
// after the follower is closed (it reads what the follower verified);
// the cached files are released once the follower and every reader are
// closed.
func (f *Follower) Reader() *CacheReader {
	f.cache.mu.Lock()
	f.cache.refs++
	f.cache.mu.Unlock()
	return &CacheReader{c: f.cache}
}

// Generation returns the cache's current generation. A consumer that
// keeps references to delivered records reads it in the function Run
// calls (on Run's goroutine, so that it is the generation of the record
// being delivered) and passes it back to ReadAt.
func (r *CacheReader) Generation() uint32 {
	r.c.mu.RLock()
	defer r.c.mu.RUnlock()
	return r.c.gen()
}

// ReadAt fills p with the bytes at offset off of segment seg, as they
// were in generation gen. It fails with an error matching ErrStale if
// the follower has since dropped any of them, ErrNotCached if they are
// not verified in the cache, os.ErrClosed after Close.
func (r *CacheReader) ReadAt(p []byte, gen uint32, seg int, off int64) error {
	c := r.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	if r.closed.Load() {
		return fmt.Errorf("logsync: cache reader: %w", os.ErrClosed)
	}
	end := mutlog.Position{Segment: seg, Offset: off + int64(len(p))}
	if gen > c.gen() {
		return fmt.Errorf("%w: segment %d offset %d: generation %d is newer than the cache's %d", ErrNotCached, seg, off, gen, c.gen())
	}
	for _, d := range c.drops[gen:] {
		if d.Less(end) {
			return fmt.Errorf("%w: segment %d bytes %d-%d of generation %d: cache dropped from %v on", ErrStale, seg, off, end.Offset, gen, d)
		}
	}
	if seg < 0 || seg >= len(c.segs) {
		return fmt.Errorf("%w: segment %d", ErrNotCached, seg)
	}
	s := &c.segs[seg]
	if n := int64(len(p)); off < 0 || n > s.size || off > s.size-n {
		return fmt.Errorf("%w: segment %d bytes %d-%d", ErrNotCached, seg, off, end.Offset)
	}
	if s.m != nil {
		copy(p, s.m[off:])
		return nil
	}
	if _, err := s.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("logsync: cache: segment %d: %w", seg, err)
	}
	return nil
}

// Close releases the reader. Reads fail afterwards.
func (r *CacheReader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	return r.c.release()
}

// cache is what the follower has verified of its cache directory, shared
// with CacheReaders. The follower changes it (on its Run goroutine)
// under mu; readers read under mu's read lock, so a mapping is never
// unmapped under a copy.
type cache struct {
	mu   sync.RWMutex
	segs []cachedSeg // by segment number
	// drops[g] is where the cache dropped bytes that were verified
	// while the generation was g or earlier: the drop that ended
	// generation g. The current generation is len(drops).
	drops []mutlog.Position
	refs  int // the follower and open readers
}

// cachedSeg is a segment's verified bytes in the cache: its file open
// (growing) or mapped (sealed), and how many of its bytes are verified.
// size 0 means the segment is not in the cache.
type cachedSeg struct {
	f    *os.File
	m    []byte
	size int64
}

func (s *cachedSeg) close() error {
	var err error
	if s.m != nil {
		err = segmap.Unmap(s.m)
	}
	if s.f != nil {
		err = errors.Join(err, s.f.Close())
	}
	*s = cachedSeg{}
	return err
}

// verified records that the first size bytes of segment i, in the file
// at path, are verified. The file is opened the first time; later calls
// extend the size (the follower appended). A sealed segment is mapped
// (path is its sealed name).
func (c *cache) verified(i int, path string, size int64, sealed bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.segs) <= i {
		c.segs = append(c.segs, cachedSeg{})
	}
	s := &c.segs[i]
	if s.f == nil && s.m == nil {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("logsync: cache: %w", err)
		}
		s.f = f
	}
	s.size = max(s.size, size)
	if sealed {
		c.mapLocked(i)
	}
	return nil
}

// sealed records that segment i was sealed: its bytes are final, so it
// is mapped (where the system allows) and its file closed.
func (c *cache) sealed(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < len(c.segs) {
		c.mapLocked(i)
	}
}

func (c *cache) mapLocked(i int) {
	s := &c.segs[i]
	if s.m != nil || s.f == nil || s.size == 0 {
		return
	}
	m, err := segmap.Map(s.f, s.size, false)
	if err != nil {
		return // read with pread instead
	}
	s.f.Close()
	s.f, s.m = nil, m
}

// drop forgets segments i and later, whose bytes from offset at of
// segment i on are about to change. If any of them were verified (so a
// reference may cover them), the generation advances.
func (c *cache) drop(i int, at int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= len(c.segs) {
		return nil
	}
	var errs []error
	had := false
	for j := i; j < len(c.segs); j++ {
		had = had || c.segs[j].size > 0
		errs = append(errs, c.segs[j].close())
	}
	c.segs = c.segs[:i]
	if had {
		c.drops = append(c.drops, mutlog.Position{Segment: i, Offset: at})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("logsync: cache: %w", err)
	}
	return nil
}

// gen is the current generation: the number of drops so far. The
// caller holds mu.
func (c *cache) gen() uint32 { return uint32(len(c.drops)) }

// release drops a reference; the last one closes every file.
func (c *cache) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs--
	if c.refs > 0 {
		return nil
	}
	var errs []error
	for i := range c.segs {
		errs = append(errs, c.segs[i].close())
	}
	c.segs = nil
	return errors.Join(errs...)
}
