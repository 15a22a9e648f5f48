package gitmirror

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

// tarCache is the tarball cache: finished tarballs on disk under dir,
// named <key>.tar.gz, with an LRU index bounded in bytes, and builds in
// progress that any number of requests stream from while they are
// written. The key is a tree hash, so equal trees share one tarball: the
// first commit archived with a tree sets its file times and pax comment,
// and a repository that uses export-subst attributes gets that commit's
// substitutions. File names, modes and contents are always the tree's.
type tarCache struct {
	dir, tmp string
	limit    int64
	metrics  *metrics
	log      logrus.FieldLogger

	mu       sync.Mutex
	lru      *list.List               // of *cacheEntry, most recent first
	entries  map[string]*list.Element // key -> element of lru
	total    int64
	building map[string]*build

	// create makes the scratch file a build writes to (os.CreateTemp in
	// tmp); tests replace it to simulate a full disk.
	create func() (*os.File, error)
}

type cacheEntry struct {
	key  string
	size int64
}

const tarSuffix = ".tar.gz"

// newTarCache indexes the tarballs already in dir (oldest modification
// first in eviction order) and evicts down to limit.
func newTarCache(dir, tmp string, limit int64, m *metrics, log logrus.FieldLogger) (*tarCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gitmirror: tarball cache: %w", err)
	}
	c := &tarCache{dir: dir, tmp: tmp, limit: limit, metrics: m, log: log,
		lru: list.New(), entries: map[string]*list.Element{}, building: map[string]*build{}}
	c.create = func() (*os.File, error) { return os.CreateTemp(tmp, "tarball-") }
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("gitmirror: tarball cache: %w", err)
	}
	type found struct {
		key  string
		size int64
		mod  int64
	}
	var fs []found
	for _, de := range des {
		key, ok := strings.CutSuffix(de.Name(), tarSuffix)
		info, err := de.Info()
		if !ok || !client.IsFullHash(key) || err != nil || !info.Mode().IsRegular() {
			continue
		}
		fs = append(fs, found{key, info.Size(), info.ModTime().UnixNano()})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod > fs[j].mod })
	for _, f := range fs {
		c.entries[f.key] = c.lru.PushBack(&cacheEntry{f.key, f.size})
		c.total += f.size
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

func (c *tarCache) path(key string) string { return filepath.Join(c.dir, key+tarSuffix) }

// open returns the cached tarball for key, or a build to stream from
// (joined is true when another request started it), or, if neither
// exists, starts a build with produce writing the tarball.
func (c *tarCache) open(key string, produce func(ctx context.Context, w io.Writer) error) (f *os.File, b *build, joined bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		f, err := os.Open(c.path(key))
		if err == nil {
			c.lru.MoveToFront(el)
			return f, nil, false, nil
		}
		// Removed behind our back (or unreadable): forget it and rebuild.
		c.log.WithError(err).Warn("cached tarball unreadable; rebuilding")
		c.removeLocked(el)
	}
	if b, ok := c.building[key]; ok {
		b.mu.Lock()
		b.refs++
		b.mu.Unlock()
		return nil, b, true, nil
	}
	tf, err := c.create()
	if err != nil {
		return nil, nil, false, fmt.Errorf("gitmirror: tarball cache: %w", err)
	}
	b = &build{f: tf, refs: 2, changed: make(chan struct{})} // the writer and this reader
	c.building[key] = b
	go c.runBuild(key, b, produce)
	return nil, b, false, nil
}

// runBuild writes the tarball, lets readers finish, then syncs and
// renames the file into the cache. Readers never wait for the fsync.
func (c *tarCache) runBuild(key string, b *build, produce func(ctx context.Context, w io.Writer) error) {
	err := produce(context.Background(), b)
	if err != nil {
		// Forget the build before failing its readers, so that a request
		// arriving now starts a new build instead of joining this one.
		c.mu.Lock()
		delete(c.building, key)
		c.mu.Unlock()
		b.finish(err)
		os.Remove(b.f.Name())
		c.log.WithError(err).WithField("tree", key).Warn("tarball build failed")
		b.release()
		return
	}
	b.finish(nil)
	err = b.f.Sync()
	if err == nil {
		err = os.Rename(b.f.Name(), c.path(key))
	}
	c.mu.Lock()
	delete(c.building, key)
	if err == nil {
		c.entries[key] = c.lru.PushFront(&cacheEntry{key, b.size})
		c.total += b.size
		c.evictLocked()
	}
	c.mu.Unlock()
	if err != nil {
		// The readers got the whole tarball; only the cache copy failed.
		os.Remove(b.f.Name())
		c.log.WithError(err).WithField("tree", key).Warn("tarball not cached")
	}
	b.release()
}

// evictLocked removes least recently used tarballs until the cache fits
// its limit. Readers that still have one open keep reading it.
func (c *tarCache) evictLocked() {
	for c.total > c.limit && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
	c.metrics.cacheBytes.Set(float64(c.total))
	c.metrics.cacheEntries.Set(float64(c.lru.Len()))
}

func (c *tarCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	c.total -= e.size
	if err := os.Remove(c.path(e.key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.WithError(err).Warn("evict tarball")
	}
}

// build is a tarball being written. The writer appends to f; readers read
// it at their own offsets with ReadAt (safe concurrently) and wait on
// changed when they catch up.
type build struct {
	f *os.File

	mu      sync.Mutex
	size    int64
	done    bool
	err     error
	changed chan struct{} // closed and replaced on every write and at the end
	refs    int           // holders of f: the writer plus each reader
}

// Write appends p to the file and wakes readers.
func (b *build) Write(p []byte) (int, error) {
	n, err := b.f.Write(p)
	b.mu.Lock()
	b.size += int64(n)
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	return n, err
}

func (b *build) finish(err error) {
	b.mu.Lock()
	b.done, b.err = true, err
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// release drops one holder; the last one closes the file.
func (b *build) release() {
	b.mu.Lock()
	b.refs--
	last := b.refs == 0
	b.mu.Unlock()
	if last {
		b.f.Close()
	}
}

// streamTo copies the tarball to w as it is written, until the build
// finishes (returning its error) or ctx is cancelled. The caller must
// release the build afterwards.
func (b *build) streamTo(ctx context.Context, w io.Writer) error {
	buf := make([]byte, 256<<10)
	var off int64
	for {
		b.mu.Lock()
		size, done, berr, ch := b.size, b.done, b.err, b.changed
		b.mu.Unlock()
		for off < size {
			n, err := b.f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				off += int64(n)
			}
			if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
				return fmt.Errorf("gitmirror: read tarball being built: %w", err)
			}
		}
		if done {
			return berr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// treeCache remembers what full commit hashes resolve to; a commit's tree
// never changes, so warm tarball requests by hash need no git at all. It
// is bounded by forgetting everything when full (cheap, and correct).
type treeCache struct {
	mu  sync.Mutex
	max int
	m   map[string]string // commit -> tree
}

func newTreeCache(max int) *treeCache { return &treeCache{max: max, m: map[string]string{}} }

func (t *treeCache) get(commit string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tree, ok := t.m[commit]
	return tree, ok
}

func (t *treeCache) put(commit, tree string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		clear(t.m)
	}
	t.m[commit] = tree
}
