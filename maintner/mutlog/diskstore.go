package mutlog

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
	"strconv"
	"strings"
	"time"
)

// DiskStore keeps segments as files in one directory:
// "NNNN.<sha224>.mutlog" (sealed, read-only) and "NNNN.growing.mutlog",
// plus "LOCK", flocked by the writer and holding its process ID. Other
// files are ignored.
type DiskStore struct {
	dir string
}

var _ Store = (*DiskStore)(nil)

// NewDiskStore returns a store in dir, creating the directory if needed.
func NewDiskStore(dir string) (*DiskStore, error) {
	if dir == "" {
		return nil, errors.New("mutlog: disk store: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mutlog: disk store: %w", err)
	}
	return &DiskStore{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *DiskStore) Dir() string { return s.dir }

// dirSegment is a segment file found in a directory.
type dirSegment struct {
	SegmentInfo
	path string
}

// listDir lists the segment files of dir in order. A number present both
// sealed and growing (a crash between sealing steps cannot leave this, but
// a copy by hand can) is an error. Growing segments get no SHA224.
func listDir(dir string) ([]dirSegment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []dirSegment
	seen := map[int]string{}
	for _, de := range des {
		num, sum, sealed, ok := ParseName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		if prev, dup := seen[num]; dup {
			return nil, fmt.Errorf("%w: %s: segment %d present twice (%s and %s)", ErrCorrupt, dir, num, prev, de.Name())
		}
		seen[num] = de.Name()
		fi, err := de.Info()
		if err != nil {
			return nil, err
		}
		segs = append(segs, dirSegment{
			SegmentInfo: SegmentInfo{Number: num, Size: fi.Size(), SHA224: sum, Sealed: sealed},
			path:        filepath.Join(dir, de.Name()),
		})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Number < segs[j].Number })
	return segs, nil
}

// Segments implements Store. The SHA-224 of the growing segment is
// computed by reading it.
func (s *DiskStore) Segments(ctx context.Context) ([]SegmentInfo, error) {
	ds, err := listDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("mutlog: disk store: %w", err)
	}
	out := make([]SegmentInfo, len(ds))
	for i, d := range ds {
		if !d.Sealed {
			f, err := os.Open(d.path)
			if err != nil {
				return nil, fmt.Errorf("mutlog: disk store: %w", err)
			}
			h := sha256.New224()
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("mutlog: disk store: hash %s: %w", d.path, err)
			}
			d.Size = n
			d.SHA224 = hex.EncodeToString(h.Sum(nil))
		}
		out[i] = d.SegmentInfo
	}
	return out, nil
}

// openSegment opens segment num, sealed or growing. A seal renames the
// file, so a miss is retried once.
func (s *DiskStore) openSegment(num int) (*os.File, error) {
	for try := 0; try < 2; try++ {
		if f, err := os.Open(filepath.Join(s.dir, GrowingName(num))); err == nil {
			return f, nil
		}
		matches, _ := filepath.Glob(filepath.Join(s.dir, fmt.Sprintf("%04d.*.mutlog", num)))
		for _, m := range matches {
			if _, _, sealed, ok := ParseName(filepath.Base(m)); ok && sealed {
				if f, err := os.Open(m); err == nil {
					return f, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("mutlog: disk store: segment %d: %w", num, ErrNotFound)
}

// ReadSegment implements Store.
func (s *DiskStore) ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error) {
	f, err := s.openSegment(num)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mutlog: disk store: %w", err)
	}
	if off < 0 || n < 0 || off+n > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("mutlog: disk store: segment %d bytes [%d,%d) of %d: %w", num, off, off+n, fi.Size(), ErrRange)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, n), f}, nil
}

// OpenWriter implements Store: it takes an exclusive flock on dir/LOCK,
// which the kernel releases if the process dies. A lock that stays held
// for lockWait is ErrLocked.
func (s *DiskStore) OpenWriter(ctx context.Context) (Writer, error) {
	path := filepath.Join(s.dir, "LOCK")
	lf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mutlog: disk store: %w", err)
	}
	// A lock released a moment ago may still be held: a process forked
	// from the one that held it (to run a git command, say) shares its
	// descriptor until it execs, which closes it. So a busy lock is
	// tried again for a while before it is taken for another writer's.
	deadline := time.Now().Add(lockWait)
	for {
		err = lockFile(lf)
		if !errors.Is(err, errWouldBlock) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(lockRetry)
	}
	if err != nil {
		holder, _ := os.ReadFile(path)
		lf.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: %s is held (by pid %s)", ErrLocked, path, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("mutlog: disk store: lock %s: %w", path, err)
	}
	if err := lf.Truncate(0); err == nil {
		lf.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &diskWriter{dir: s.dir, lock: lf, num: -1}, nil
}

// lockWait is how long OpenWriter tries a busy lock, every lockRetry.
const (
	lockWait  = time.Second
	lockRetry = 10 * time.Millisecond
)

type diskWriter struct {
	dir  string
	lock *os.File
	f    *os.File // growing segment num, when open
	num  int
}

func (w *diskWriter) growing(num int, create bool) (*os.File, error) {
	if w.f != nil && w.num == num {
		return w.f, nil
	}
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	path := filepath.Join(w.dir, GrowingName(num))
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: growing segment %d does not exist", ErrConflict, num)
		}
		return nil, err
	}
	if statErr != nil {
		// New file: make its directory entry durable.
		if err := syncDir(w.dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	w.f, w.num = f, num
	return f, nil
}

func (w *diskWriter) Append(ctx context.Context, num int, off int64, data []byte) error {
	if off == 0 && (w.f == nil || w.num != num) {
		// Starting a segment: it must directly follow a sealed last
		// segment (or be the first), unless it exists empty already.
		segs, err := listDir(w.dir)
		if err != nil {
			return fmt.Errorf("mutlog: disk store: %w", err)
		}
		ok := len(segs) == 0 && num == 0
		if n := len(segs); n > 0 {
			last := segs[n-1]
			ok = (last.Sealed && last.Number == num-1) || (!last.Sealed && last.Number == num)
		}
		if !ok {
			return fmt.Errorf("mutlog: disk store: %w: cannot start segment %d after %d existing segments", ErrConflict, num, len(segs))
		}
	}
	f, err := w.growing(num, off == 0)
	if err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	if fi.Size() != off {
		return fmt.Errorf("mutlog: disk store: %w: segment %d has %d bytes, writer expected %d", ErrConflict, num, fi.Size(), off)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("mutlog: disk store: sync %s: %w", f.Name(), err)
	}
	return nil
}

func (w *diskWriter) Truncate(ctx context.Context, num int, size int64) error {
	f, err := w.growing(num, false)
	if err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	return nil
}

func (w *diskWriter) Seal(ctx context.Context, num int, sha224 string) error {
	f, err := w.growing(num, false)
	if err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	f.Close()
	w.f = nil
	from := filepath.Join(w.dir, GrowingName(num))
	to := filepath.Join(w.dir, SealedName(num, sha224))
	if err := os.Chmod(from, 0o444); err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("mutlog: disk store: seal: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		return fmt.Errorf("mutlog: disk store: %w", err)
	}
	return nil
}

func (w *diskWriter) Close() error {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.lock == nil {
		return nil
	}
	err := w.lock.Close() // releases the flock
	w.lock = nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
