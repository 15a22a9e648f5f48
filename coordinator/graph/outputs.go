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
	"strings"
	"time"
)

// A job's outputs travel as an output archive: an uncompressed POSIX tar of
// its output directory holding only directories (mode 0755), regular files
// (0644, or 0755 with any execute bit) and relative symbolic links that
// resolve inside the directory, with slash-separated relative names in
// lexical path order (a directory's entries follow it), times at the Unix
// epoch and zero owners, so that equal directories give equal archives
// (and equal digests). worker/artifact stores them by that digest.
//
// Both directions refuse anything that would reach outside the directory:
// PackOutputs refuses absolute symlinks, symlinks that do not resolve
// inside the directory and special files; ReadOutputs refuses absolute or
// ".." names, hard links and special entries, symlinks that point out,
// entries below a symlink of the archive, and writes every file through an
// os.Root with O_EXCL, so that no symlink can redirect a write.

// ErrUnsafeOutput marks an output that may not be packed or unpacked. The
// three kinds below wrap it; callers that only ask whether an output was
// refused check this one.
var ErrUnsafeOutput = errors.New("unsafe output")

// The kinds of unsafe output. A job that produces one fails; the worker
// does not.
var (
	// ErrOutputEscapes: an absolute or ".." path, a symlink pointing out
	// of the directory, or an entry below a symlink.
	ErrOutputEscapes = fmt.Errorf("escapes its directory (%w)", ErrUnsafeOutput)
	// ErrOutputUnsupported: a special file (device, FIFO, socket) or a
	// hard link.
	ErrOutputUnsupported = fmt.Errorf("unsupported file type (%w)", ErrUnsafeOutput)
	// ErrOutputTooLarge: more entries or bytes than the OutputLimits.
	ErrOutputTooLarge = fmt.Errorf("too large (%w)", ErrUnsafeOutput)
)

// OutputLimits bound what PackOutputs and ReadOutputs accept.
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

// WriteOutputs writes the output archive of dir to w, within the default
// limits (see PackOutputs).
func WriteOutputs(w io.Writer, dir string) error {
	_, err := PackOutputs(w, dir, OutputLimits{})
	return err
}

// PackOutputs writes the output archive of dir to w and returns its number
// of entries. Outputs that may not leave the job (see ErrUnsafeOutput) fail
// it, naming the path; dir itself must be a directory, not a symlink a job
// put in its place.
func PackOutputs(w io.Writer, dir string, lim OutputLimits) (entries int, err error) {
	lim = lim.withDefaults()
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return 0, fmt.Errorf("graph: pack outputs of %s: not a directory (replaced by a symlink?): %w", dir, ErrOutputEscapes)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, fmt.Errorf("graph: pack outputs of %s: %w", dir, err)
	}
	root, err := os.OpenRoot(realDir)
	if err != nil {
		return 0, fmt.Errorf("graph: pack outputs of %s: %w", dir, err)
	}
	defer root.Close()
	tw := tar.NewWriter(w)
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
		entries++
		if entries > lim.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", lim.MaxEntries, ErrOutputTooLarge)
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
				return fmt.Errorf("output %s is a symlink to absolute path %s: %w", name, target, ErrOutputEscapes)
			}
			resolved, err := filepath.EvalSymlinks(full)
			if err != nil {
				return fmt.Errorf("output %s: symlink to %s does not resolve: %w", name, target, ErrOutputEscapes)
			}
			if r, err := filepath.Rel(realDir, resolved); err != nil || !filepath.IsLocal(r) {
				return fmt.Errorf("output %s is a symlink to %s, outside the output directory: %w", name, target, ErrOutputEscapes)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, filepath.ToSlash(target), 0o777
			return tw.WriteHeader(hdr)
		case mode.IsRegular():
			total += info.Size()
			if total > lim.MaxBytes {
				return fmt.Errorf("output exceeds %d bytes at %s: %w", lim.MaxBytes, name, ErrOutputTooLarge)
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
			return fmt.Errorf("output %s is a %s: %w", name, mode.Type(), ErrOutputUnsupported)
		}
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("graph: pack outputs of %s: %w", dir, err)
	}
	return entries, nil
}

// ReadOutputs unpacks an output archive (or any tar of the same kinds of
// entries, such as git archive's) into dir, which must exist. Every write
// goes through an os.Root on dir. An entry that may not be unpacked (see
// ErrUnsafeOutput) fails the whole unpack; what was written so far stays
// for the caller to remove with its directory.
func ReadOutputs(r io.Reader, dir string, lim OutputLimits) error {
	lim = lim.withDefaults()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("graph: unpack outputs into %s: %w", dir, err)
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var entries int
	var total int64
	links := map[string]bool{} // symlinks unpacked so far, by slash name
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("graph: unpack outputs into %s: %w", dir, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // git archive's commit comment; no file
		}
		entries++
		if entries > lim.MaxEntries {
			return fmt.Errorf("graph: unpack outputs into %s: more than %d entries: %w", dir, lim.MaxEntries, ErrOutputTooLarge)
		}
		if err := unpackEntry(root, tr, hdr, links, &total, lim); err != nil {
			return fmt.Errorf("graph: unpack outputs into %s: entry %q: %w", dir, truncate(hdr.Name), err)
		}
	}
}

// entryName validates an archive entry name and returns it cleaned, with
// slashes.
func entryName(name string) (string, error) {
	clean := strings.TrimSuffix(name, "/")
	if clean == "" || strings.ContainsRune(clean, 0) || strings.Contains(clean, `\`) ||
		path.IsAbs(clean) || path.Clean(clean) != clean || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", fmt.Errorf("not a clean relative path: %w", ErrOutputEscapes)
	}
	return clean, nil
}

func unpackEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header, links map[string]bool, total *int64, lim OutputLimits) error {
	slashName, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	// No entry may sit below a symlink of the archive: even one that
	// stays inside would let later entries land somewhere else than
	// their names say.
	for p := path.Dir(slashName); p != "."; p = path.Dir(p) {
		if links[p] {
			return fmt.Errorf("below symlink %q: %w", p, ErrOutputEscapes)
		}
	}
	name := filepath.FromSlash(slashName)
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
			return fmt.Errorf("contents exceed %d bytes: %w", lim.MaxBytes, ErrOutputTooLarge)
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
		if target == "" || strings.ContainsRune(target, 0) || path.IsAbs(target) || filepath.IsAbs(target) ||
			!filepath.IsLocal(filepath.Join(filepath.Dir(name), filepath.FromSlash(target))) {
			return fmt.Errorf("symlink to %q: %w", truncate(target), ErrOutputEscapes)
		}
		links[slashName] = true
		return root.Symlink(filepath.FromSlash(target), name)
	default:
		return fmt.Errorf("entry type %q: %w", hdr.Typeflag, ErrOutputUnsupported)
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
