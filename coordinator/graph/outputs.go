package graph

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// A job's outputs travel as an output archive: an uncompressed tar of its
// output directory holding only directories, regular files (mode 0644 or
// 0755) and relative symbolic links that resolve inside the directory,
// entries sorted by name, with zero times and owners so that equal
// directories give equal archives (and equal digests).

// ErrUnsafeOutput marks an output that would escape its directory: an
// absolute or ".." path, a symlink pointing outside, or a special file.
var ErrUnsafeOutput = errors.New("unsafe output")

// OutputLimits bound what ReadOutputs unpacks.
type OutputLimits struct {
	// MaxBytes bounds the total size of the files (default 4 GiB).
	MaxBytes int64
	// MaxEntries bounds the number of entries (default 1,000,000).
	MaxEntries int
}

func (l OutputLimits) withDefaults() OutputLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 4 << 30
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 1_000_000
	}
	return l
}

// WriteOutputs writes the output archive of dir to w. It refuses (with
// ErrUnsafeOutput) symlinks that are absolute or resolve outside dir, and
// special files, so that a hostile job cannot smuggle out other files.
func WriteOutputs(w io.Writer, dir string) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("graph: collect outputs of %s: %w", dir, err)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		p := filepath.Join(dir, filepath.FromSlash(name))
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("graph: collect outputs: %w", err)
		}
		hdr := &tar.Header{Name: name, Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("graph: collect outputs: %w", err)
			}
			if err := checkLink(name, target); err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, fi.Size(), 0o644
			if fi.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
		default:
			return fmt.Errorf("graph: output %q is a special file (%s): %w", name, fi.Mode().Type(), ErrUnsafeOutput)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("graph: write outputs: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("graph: collect outputs: %w", err)
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("graph: write output %q: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("graph: write outputs: %w", err)
	}
	return nil
}

// checkLink refuses a symlink at name whose target is absolute or leaves
// the output directory.
func checkLink(name, target string) error {
	if target == "" || path.IsAbs(target) || filepath.IsAbs(target) || strings.ContainsRune(target, 0) {
		return fmt.Errorf("graph: output %q: symlink to %q points outside the output directory: %w", name, target, ErrUnsafeOutput)
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("graph: output %q: symlink to %q points outside the output directory: %w", name, target, ErrUnsafeOutput)
	}
	return nil
}

// ReadOutputs unpacks an output archive into dir (which must exist). It
// refuses entries that would land outside dir: absolute or ".." names,
// symlinks pointing out, writing through a symlink, special files, and
// archives over the limits.
func ReadOutputs(r io.Reader, dir string, lim OutputLimits) error {
	lim = lim.withDefaults()
	tr := tar.NewReader(r)
	var total int64
	links := map[string]bool{}
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("graph: read outputs: %w", err)
		}
		if n >= lim.MaxEntries {
			return fmt.Errorf("graph: read outputs: more than %d entries: %w", lim.MaxEntries, ErrUnsafeOutput)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if err := checkRelPath(name); err != nil {
			return fmt.Errorf("graph: output %q: %v: %w", truncate(hdr.Name), err, ErrUnsafeOutput)
		}
		// No entry may sit below a symlink of the archive: writing
		// through it could reach anywhere.
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if links[p] {
				return fmt.Errorf("graph: output %q lies below symlink %q: %w", name, p, ErrUnsafeOutput)
			}
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("graph: unpack outputs: %w", err)
			}
		case tar.TypeReg:
			total += hdr.Size
			if hdr.Size < 0 || total > lim.MaxBytes {
				return fmt.Errorf("graph: read outputs: more than %d bytes: %w", lim.MaxBytes, ErrUnsafeOutput)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("graph: unpack outputs: %w", err)
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			// O_EXCL: never follow a symlink or overwrite an entry.
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("graph: unpack outputs: %w", err)
			}
			_, err = io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("graph: unpack output %q: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := checkLink(name, hdr.Linkname); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("graph: unpack outputs: %w", err)
			}
			if err := os.Symlink(hdr.Linkname, dst); err != nil {
				return fmt.Errorf("graph: unpack outputs: %w", err)
			}
			links[name] = true
		default:
			return fmt.Errorf("graph: output %q has unsupported type %q: %w", name, hdr.Typeflag, ErrUnsafeOutput)
		}
	}
}

// ReadOutputFile returns the contents of one regular file of an output
// archive (at most max bytes), e.g. a planner's graph.json.
func ReadOutputFile(r io.Reader, name string, max int64) ([]byte, error) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("graph: output %q not found: %w", name, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("graph: read outputs: %w", err)
		}
		if hdr.Name != name {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("graph: output %q is not a regular file: %w", name, ErrUnsafeOutput)
		}
		if hdr.Size > max {
			return nil, fmt.Errorf("graph: output %q is larger than %d bytes", name, max)
		}
		return io.ReadAll(io.LimitReader(tr, hdr.Size))
	}
}
