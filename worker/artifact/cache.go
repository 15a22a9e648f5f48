package artifact

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sync/singleflight"
)

// ErrDigestMismatch is returned when fetched bytes do not hash to the
// digest they were requested by.
var ErrDigestMismatch = errors.New("content does not match its digest")

// Cache is a size-bounded local cache of artifacts by digest, in one
// directory (files named by digest). The least recently used artifacts are
// evicted when the total exceeds the bound; an artifact opened by a caller
// stays readable after eviction (the open file outlives the name).
type Cache struct {
	dir string
	max int64

	group singleflight.Group

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, front = most recent
	byDig map[string]*list.Element
	total int64
	// evicted collects digests evicted since the last TakeEvicted, so
	// that the worker can tell the coordinator it no longer holds them.
	evicted []string
}

type cacheEntry struct {
	digest string
	size   int64
}

// OpenCache opens (creating) the cache directory dir bounded to maxBytes
// (at least one artifact is always kept, however large). Artifacts left by
// an earlier run are adopted; stray temporary files are removed.
func OpenCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("artifact: cache %s: size bound must be positive", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("artifact: cache: %w", err)
	}
	c := &Cache{dir: dir, max: maxBytes, lru: list.New(), byDig: map[string]*list.Element{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact: cache: %w", err)
	}
	type old struct {
		e   cacheEntry
		mod int64
	}
	var olds []old
	for _, e := range ents {
		full := filepath.Join(dir, e.Name())
		if !ValidDigest(e.Name()) || !e.Type().IsRegular() {
			os.RemoveAll(full)
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		olds = append(olds, old{cacheEntry{e.Name(), info.Size()}, info.ModTime().UnixNano()})
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].mod < olds[j].mod })
	c.mu.Lock()
	for _, o := range olds {
		c.addLocked(o.e.digest, o.e.size)
	}
	c.mu.Unlock()
	return c, nil
}

func (c *Cache) path(digest string) string { return filepath.Join(c.dir, digest) }

// addLocked records an artifact as most recently used and evicts beyond
// the bound.
func (c *Cache) addLocked(digest string, size int64) {
	if el, ok := c.byDig[digest]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.byDig[digest] = c.lru.PushFront(&cacheEntry{digest, size})
	c.total += size
	for c.total > c.max && c.lru.Len() > 1 {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.byDig, e.digest)
		c.total -= e.size
		os.Remove(c.path(e.digest))
		if len(c.evicted) < 10000 {
			c.evicted = append(c.evicted, e.digest)
		}
	}
}

// Has reports whether the artifact is cached.
func (c *Cache) Has(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.byDig[digest]
	return ok
}

// Digests lists the cached artifacts, most recently used first (the
// worker reports them to the coordinator for locality).
func (c *Cache) Digests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, c.lru.Len())
	for el := c.lru.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*cacheEntry).digest)
	}
	return out
}

// TakeEvicted returns the digests evicted since the last call (at most
// 10,000 are remembered between calls).
func (c *Cache) TakeEvicted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.evicted
	c.evicted = nil
	return out
}

// Size returns the bytes held.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Open returns the cached artifact for reading, or an error wrapping
// fs.ErrNotExist.
func (c *Cache) Open(digest string) (*os.File, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("artifact: bad digest %q", digest)
	}
	c.mu.Lock()
	el, ok := c.byDig[digest]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("artifact: %s: %w", digest, os.ErrNotExist)
	}
	return os.Open(c.path(digest))
}

// Add moves the file at src (which must be on the cache's file system,
// e.g. from TempFile) into the cache under digest. The caller vouches for
// the digest.
func (c *Cache) Add(digest, src string) error {
	if !ValidDigest(digest) {
		return fmt.Errorf("artifact: bad digest %q", digest)
	}
	info, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("artifact: cache add: %w", err)
	}
	if err := os.Rename(src, c.path(digest)); err != nil {
		return fmt.Errorf("artifact: cache add: %w", err)
	}
	c.mu.Lock()
	c.addLocked(digest, info.Size())
	c.mu.Unlock()
	return nil
}

// TempFile creates a temporary file in the cache directory, for an
// artifact being written before Add.
func (c *Cache) TempFile() (*os.File, error) {
	return os.CreateTemp(c.dir, "tmp-*")
}

// download is the writer Fetch gives its get function: the file being
// written and the running hash. Seek(0, io.SeekStart) starts both over, so
// that get can retry a broken transfer.
type download struct {
	f *os.File
	h hash.Hash
}

func (d *download) Write(p []byte) (int, error) {
	d.h.Write(p)
	return d.f.Write(p)
}

// Seek supports only rewinding to the start.
func (d *download) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return 0, errors.New("artifact: download can only rewind to the start")
	}
	if err := d.f.Truncate(0); err != nil {
		return 0, err
	}
	d.h.Reset()
	return d.f.Seek(0, io.SeekStart)
}

// Fetch returns the artifact, downloading it with get when it is not
// cached. Concurrent fetches of one digest download once. The download is
// verified against the digest before it enters the cache. The writer get
// receives is an io.Seeker: seeking to the start discards what was
// written, for retries.
func (c *Cache) Fetch(ctx context.Context, digest string, get func(ctx context.Context, digest string, w io.Writer) error) (*os.File, error) {
	if f, err := c.Open(digest); err == nil {
		return f, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, err, _ := c.group.Do(digest, func() (any, error) {
		if c.Has(digest) {
			return nil, nil
		}
		tmp, err := c.TempFile()
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		d := &download{f: tmp, h: sha256.New()}
		err = get(ctx, digest, d)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("artifact: fetch %s: %w", digest, err)
		}
		if got := hex.EncodeToString(d.h.Sum(nil)); got != digest {
			return nil, fmt.Errorf("artifact: fetch %s: got %s: %w", digest, got, ErrDigestMismatch)
		}
		return nil, c.Add(digest, tmp.Name())
	})
	if err != nil {
		return nil, err
	}
	return c.Open(digest)
}
