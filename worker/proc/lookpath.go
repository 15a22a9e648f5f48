package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// PathCache remembers where command names were found in a PATH, so that
// a worker running thousands of short commands does not search the PATH
// (one stat per directory before the one that has the program) for
// every one of them. A remembered program is checked with one stat on
// every use (still a regular, executable file, else the PATH is searched
// again), and searched for again once its entry is older than the
// cache's TTL, so that a program installed later in an earlier PATH
// directory takes over within that time. Safe for concurrent use; the
// zero value is not: use NewPathCache.
type PathCache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[pathKey]pathEntry
}

type pathKey struct{ name, pathList string }

type pathEntry struct {
	path  string
	found time.Time
}

// maxPathEntries bounds a PathCache (many distinct names or PATHs clear
// it and it fills again).
const maxPathEntries = 4096

// DefaultPathTTL is the TTL of NewPathCache(0, nil).
const DefaultPathTTL = 2 * time.Second

// NewPathCache returns a PathCache whose entries are searched for again
// after ttl (0: DefaultPathTTL), reading the time from now (nil:
// time.Now).
func NewPathCache(ttl time.Duration, now func() time.Time) *PathCache {
	if ttl <= 0 {
		ttl = DefaultPathTTL
	}
	if now == nil {
		now = time.Now
	}
	return &PathCache{ttl: ttl, now: now, m: map[pathKey]pathEntry{}}
}

// lookPath is lookPathIn through the cache (nil: no cache).
func (c *PathCache) lookPath(name, pathList string) (string, error) {
	if c == nil || strings.Contains(name, "/") {
		return lookPathIn(name, pathList)
	}
	k := pathKey{name, pathList}
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Sub(e.found) < c.ttl && executable(e.path) {
		return e.path, nil
	}
	p, err := lookPathIn(name, pathList)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if len(c.m) >= maxPathEntries {
		clear(c.m)
	}
	c.m[k] = pathEntry{path: p, found: now}
	c.mu.Unlock()
	return p, nil
}

// lookPath resolves name against the PATH in env, falling back to the
// worker's own PATH, so that a job's PATH decides which program runs.
func lookPath(c *PathCache, name string, env []string) (string, error) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return c.lookPath(name, v)
		}
	}
	return c.lookPath(name, os.Getenv("PATH"))
}

// lookPathIn is exec.LookPath with an explicit PATH. A name containing a
// slash is used as is (relative names are resolved against Spec.Dir by
// os/exec).
func lookPathIn(name, pathList string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w", name, exec.ErrNotFound)
}

// executable reports whether p is a regular file with an execute bit.
func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
