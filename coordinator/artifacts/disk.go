package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// DiskOptions configure a Disk store.
type DiskOptions struct {
	// Dir holds the blobs (created if missing).
	Dir string
	// MaxBytes bounds the total size; when a Put exceeds it, the least
	// recently used blobs that are not pinned are deleted until the total
	// is at most 90% of it. Zero means no limit.
	MaxBytes int64
	// Pinned, if set, reports whether a blob is needed by a running build
	// and must not be evicted. It is called with the store's lock held
	// and must not call back into the store.
	Pinned func(digest string) bool
	// Log receives eviction notices; nil discards them.
	Log logrus.FieldLogger
	// Now is the clock for recency; nil means time.Now.
	Now func() time.Time
}

// Disk is a Store in a local directory: Dir/ab/abcdef... with temporary
// files in Dir/tmp renamed into place, so a crash never leaves a partial
// blob under its name. An index of sizes and last use is kept in memory
// (rebuilt from the directory at open) so that Stat costs no system call.
type Disk struct {
	opts DiskOptions
	log  logrus.FieldLogger

	mu    sync.Mutex
	index map[string]*entry
	total int64
}

type entry struct {
	size int64
	used time.Time
}

var _ Store = (*Disk)(nil)

// OpenDisk opens (creating if needed) a disk store and indexes it.
func OpenDisk(opts DiskOptions) (*Disk, error) {
	if opts.Dir == "" {
		return nil, errors.New("artifacts: DiskOptions.Dir is empty")
	}
	if opts.MaxBytes < 0 {
		return nil, errors.New("artifacts: DiskOptions.MaxBytes is negative")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	d := &Disk{opts: opts, log: log, index: map[string]*entry{}}
	tmp := filepath.Join(opts.Dir, "tmp")
	// Leftover temporary files are from a crash: remove them.
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("artifacts: clean %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("artifacts: %w", err)
	}
	err := filepath.WalkDir(opts.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p == tmp {
				return filepath.SkipDir
			}
			return nil
		}
		name := e.Name()
		if !ValidDigest(name) || filepath.Base(filepath.Dir(p)) != name[:2] {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		d.index[name] = &entry{size: fi.Size(), used: fi.ModTime()}
		d.total += fi.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("artifacts: index %s: %w", opts.Dir, err)
	}
	return d, nil
}

func (d *Disk) path(digest string) string {
	return filepath.Join(d.opts.Dir, digest[:2], digest)
}

// Put implements Store.
func (d *Disk) Put(ctx context.Context, digest string, r io.Reader) error {
	if !ValidDigest(digest) {
		return fmt.Errorf("artifacts: put %q: %w", digest, ErrBadDigest)
	}
	d.mu.Lock()
	if e, ok := d.index[digest]; ok {
		e.used = d.opts.Now()
		d.mu.Unlock()
		_, err := io.Copy(io.Discard, r)
		return err
	}
	d.mu.Unlock()
	f, err := os.CreateTemp(filepath.Join(d.opts.Dir, "tmp"), "put-*")
	if err != nil {
		return fmt.Errorf("artifacts: put %s: %w", digest, err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("artifacts: put %s: %w", digest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("artifacts: put %s: got content with digest %s: %w", digest, got, ErrDigestMismatch)
	}
	dst := d.path(digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("artifacts: put %s: %w", digest, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("artifacts: put %s: %w", digest, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.index[digest]; !ok {
		d.index[digest] = &entry{size: n}
		d.total += n
	}
	d.index[digest].used = d.opts.Now()
	d.evictLocked(digest)
	return nil
}

// evictLocked deletes least recently used, unpinned blobs (never keep) until
// the total is at most 90% of MaxBytes.
func (d *Disk) evictLocked(keep string) {
	if d.opts.MaxBytes == 0 || d.total <= d.opts.MaxBytes {
		return
	}
	type cand struct {
		digest string
		e      *entry
	}
	var cands []cand
	for dg, e := range d.index {
		if dg != keep {
			cands = append(cands, cand{dg, e})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].e.used.Before(cands[j].e.used) })
	target := d.opts.MaxBytes / 10 * 9
	for _, c := range cands {
		if d.total <= target {
			break
		}
		if d.opts.Pinned != nil && d.opts.Pinned(c.digest) {
			continue
		}
		if err := os.Remove(d.path(c.digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.WithError(err).WithField("digest", c.digest).Warn("artifacts: evict")
			continue
		}
		delete(d.index, c.digest)
		d.total -= c.e.size
		d.log.WithField("digest", c.digest).WithField("bytes", c.e.size).Debug("artifacts: evicted")
	}
}

// Open implements Store.
func (d *Disk) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	if !ValidDigest(digest) {
		return nil, 0, fmt.Errorf("artifacts: open %q: %w", digest, ErrBadDigest)
	}
	f, err := os.Open(d.path(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("artifacts: open %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("artifacts: open %s: %w", digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("artifacts: open %s: %w", digest, err)
	}
	d.mu.Lock()
	if e, ok := d.index[digest]; ok {
		e.used = d.opts.Now()
	}
	d.mu.Unlock()
	return f, fi.Size(), nil
}

// Stat implements Store.
func (d *Disk) Stat(ctx context.Context, digest string) (int64, error) {
	if !ValidDigest(digest) {
		return 0, fmt.Errorf("artifacts: stat %q: %w", digest, ErrBadDigest)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.index[digest]
	if !ok {
		return 0, fmt.Errorf("artifacts: stat %s: %w", digest, ErrNotFound)
	}
	return e.size, nil
}

// Delete implements Store.
func (d *Disk) Delete(ctx context.Context, digest string) error {
	if !ValidDigest(digest) {
		return fmt.Errorf("artifacts: delete %q: %w", digest, ErrBadDigest)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Remove(d.path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("artifacts: delete %s: %w", digest, err)
	}
	if e, ok := d.index[digest]; ok {
		d.total -= e.size
		delete(d.index, digest)
	}
	return nil
}

// Size returns the total size of the stored blobs.
func (d *Disk) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
