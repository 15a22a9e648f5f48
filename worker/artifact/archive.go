// Package artifact moves job outputs between directories and the
// coordinator's content-addressed artifact store.
//
// Format: an artifact is an uncompressed POSIX tar archive, identified by
// the lowercase hex SHA-256 of its bytes. Pack writes entries in lexical
// path order with slash-separated relative names, directories as 0755,
// files as 0644 or 0755 (any execute bit), relative symlinks, and zero
// owners and times, so that equal directory trees give equal digests.
//
// Both directions refuse anything that would reach outside the directory:
// Pack rejects absolute symlinks, symlinks resolving outside the output
// directory and special files (devices, FIFOs, sockets); Unpack rejects
// absolute or ".." names, hard links and special entries, symlinks whose
// target is absolute or climbs out, and performs every write through an
// os.Root so that no symlink, planted by an earlier entry or not, can
// redirect a write outside. A hostile job therefore cannot write outside
// its directories through its outputs.
package artifact

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ErrEscape marks an output or archive entry that would reach outside its
// directory. Callers report it as a failure of the job, not of the worker.
var ErrEscape = errors.New("escapes its directory")

// ErrUnsupported marks a file type that outputs may not contain.
var ErrUnsupported = errors.New("unsupported file type")

// ErrTooLarge marks an output or archive over its Limits.
var ErrTooLarge = errors.New("too large")

// Limits bound what Pack and Unpack accept. Zero fields take the defaults.
type Limits struct {
	// MaxBytes bounds the total size of file contents (default 4 GiB).
	MaxBytes int64
	// MaxFiles bounds the number of entries (default 1,000,000).
	MaxFiles int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 4 << 30
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = 1_000_000
	}
	return l
}

// EmptySize is the size of the archive of an empty directory (a tar
// end-of-archive marker: two zero blocks).
const EmptySize = 1024

// EmptyDigest is the digest of the archive of an empty directory, which
// Pack produces for a job without outputs.
var EmptyDigest = func() string {
	h := sha256.Sum256(make([]byte, EmptySize))
	return hex.EncodeToString(h[:])
}()

// ValidDigest reports whether s is a lowercase hex SHA-256.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Packed describes an archive written by Pack.
type Packed struct {
	// Digest is the hex SHA-256 of the archive bytes.
	Digest string
	// Size is the archive's length in bytes.
	Size int64
	// Files is the number of entries.
	Files int
}

// Pack writes the tree under dir to w as a deterministic tar archive and
// returns its digest. It fails with ErrEscape, ErrUnsupported or
// ErrTooLarge (wrapped, naming the path) on outputs that may not leave the
// worker.
func Pack(dir string, w io.Writer, lim Limits) (Packed, error) {
	lim = lim.withDefaults()
	// The job may have replaced its output directory by a symlink.
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return Packed{}, fmt.Errorf("artifact: pack %s: not a directory (replaced by a symlink?): %w", dir, ErrEscape)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return Packed{}, fmt.Errorf("artifact: pack %s: %w", dir, err)
	}
	root, err := os.OpenRoot(realDir)
	if err != nil {
		return Packed{}, fmt.Errorf("artifact: pack %s: %w", dir, err)
	}
	defer root.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	tw := tar.NewWriter(cw)
	var p Packed
	var total int64
	err = filepath.WalkDir(realDir, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(realDir, full)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		p.Files++
		if p.Files > lim.MaxFiles {
			return fmt.Errorf("output has more than %d files: %w", lim.MaxFiles, ErrTooLarge)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch mode := info.Mode(); {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				return fmt.Errorf("output %s is a symlink to absolute path %s: %w", name, target, ErrEscape)
			}
			resolved, err := filepath.EvalSymlinks(full)
			if err != nil {
				return fmt.Errorf("output %s: symlink to %s does not resolve: %w", name, target, ErrEscape)
			}
			if r, err := filepath.Rel(realDir, resolved); err != nil || !filepath.IsLocal(r) {
				return fmt.Errorf("output %s is a symlink to %s, outside the output directory: %w", name, target, ErrEscape)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, filepath.ToSlash(target), 0o777
			return tw.WriteHeader(hdr)
		case mode.IsRegular():
			total += info.Size()
			if total > lim.MaxBytes {
				return fmt.Errorf("output exceeds %d bytes at %s: %w", lim.MaxBytes, name, ErrTooLarge)
			}
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), 0o644
			if mode.Perm()&0o111 != 0 {
				hdr.Mode = 0o755
			}
			f, err := root.Open(rel)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			n, err := io.Copy(tw, io.LimitReader(f, info.Size()))
			if err != nil {
				return err
			}
			if n != info.Size() {
				return fmt.Errorf("output %s changed size while packing", name)
			}
			return nil
		default:
			return fmt.Errorf("output %s is a %s: %w", name, mode.Type(), ErrUnsupported)
		}
	})
	if err != nil {
		return Packed{}, fmt.Errorf("artifact: pack %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return Packed{}, fmt.Errorf("artifact: pack %s: %w", dir, err)
	}
	p.Digest = hex.EncodeToString(h.Sum(nil))
	p.Size = cw.n
	return p, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Unpack extracts the tar archive r into dir, which must exist. Every
// write goes through an os.Root on dir. Entries that would escape fail the
// whole unpack with ErrEscape; what was written so far stays for the
// caller to remove with the job directory.
func Unpack(r io.Reader, dir string, lim Limits) error {
	lim = lim.withDefaults()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("artifact: unpack into %s: %w", dir, err)
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var files int
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("artifact: unpack into %s: %w", dir, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // git archive's commit comment; no file
		}
		files++
		if files > lim.MaxFiles {
			return fmt.Errorf("artifact: unpack into %s: more than %d entries: %w", dir, lim.MaxFiles, ErrTooLarge)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return fmt.Errorf("artifact: unpack into %s: %w", dir, err)
		}
		if err := unpackEntry(root, tr, hdr, name, &total, lim); err != nil {
			return fmt.Errorf("artifact: unpack into %s: entry %q: %w", dir, hdr.Name, err)
		}
	}
}

// entryName validates an archive entry name and returns it as a local
// OS path.
func entryName(name string) (string, error) {
	clean := strings.TrimSuffix(name, "/")
	if clean == "" || strings.ContainsRune(clean, 0) || strings.Contains(clean, `\`) {
		return "", fmt.Errorf("entry name %q is not a clean relative path: %w", name, ErrEscape)
	}
	if path.IsAbs(clean) || path.Clean(clean) != clean || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", fmt.Errorf("entry name %q is not a clean relative path: %w", name, ErrEscape)
	}
	return filepath.FromSlash(clean), nil
}

func unpackEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header, name string, total *int64, lim Limits) error {
	if parent := filepath.Dir(name); parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err := root.Mkdir(name, 0o755)
		if errors.Is(err, fs.ErrExist) {
			if st, serr := root.Lstat(name); serr == nil && st.IsDir() {
				return nil
			}
		}
		return err
	case tar.TypeReg:
		if hdr.Size < 0 {
			return fmt.Errorf("negative size")
		}
		*total += hdr.Size
		if *total > lim.MaxBytes {
			return fmt.Errorf("contents exceed %d bytes: %w", lim.MaxBytes, ErrTooLarge)
		}
		mode := fs.FileMode(0o644)
		if hdr.Mode&0o111 != 0 {
			mode = 0o755
		}
		// O_EXCL: never write through an existing file or symlink.
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		target := hdr.Linkname
		if target == "" || strings.ContainsRune(target, 0) || path.IsAbs(target) || filepath.IsAbs(target) {
			return fmt.Errorf("symlink to %q: %w", target, ErrEscape)
		}
		if !filepath.IsLocal(filepath.Join(filepath.Dir(name), filepath.FromSlash(target))) {
			return fmt.Errorf("symlink to %q: %w", target, ErrEscape)
		}
		return root.Symlink(filepath.FromSlash(target), name)
	default:
		return fmt.Errorf("entry type %q: %w", hdr.Typeflag, ErrUnsupported)
	}
}
