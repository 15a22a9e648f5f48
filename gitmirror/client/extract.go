package client

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Limits that keep a hostile or corrupt tarball from filling the disk with
// metadata; file contents are bounded only by the disk.
const (
	maxEntries  = 1 << 20
	maxNameLen  = 4096
	maxLinkLen  = 4096
	maxFileSize = 8 << 30
)

// ErrBadArchive is wrapped by Extract for archives it refuses.
var ErrBadArchive = errors.New("bad archive")

// Extract unpacks the gzip'd tar stream r into dir. It accepts what git
// archive produces (directories, regular files with their executable bit,
// symbolic links, and the pax global header carrying the commit id) and
// refuses everything else. Every file system operation goes through
// os.Root, so no entry, however named, and no symbolic link, however
// aimed, can write outside dir.
func Extract(r io.Reader, dir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("extract: %w: %w", ErrBadArchive, err)
	}
	defer zr.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	tr := tar.NewReader(zr)
	for n := 0; ; n++ {
		if n >= maxEntries {
			return fmt.Errorf("extract: %w: more than %d entries", ErrBadArchive, maxEntries)
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract: %w: %w", ErrBadArchive, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanEntryName(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the archive root "./"
		}
		if err := extractEntry(root, tr, h, name); err != nil {
			return fmt.Errorf("extract: %s: %w", name, err)
		}
	}
}

func cleanEntryName(name string) (string, error) {
	if len(name) > maxNameLen {
		return "", fmt.Errorf("extract: %w: entry name longer than %d bytes", ErrBadArchive, maxNameLen)
	}
	clean := strings.TrimSuffix(name, "/")
	if clean == "" || clean == "." {
		return "", nil
	}
	if !fs.ValidPath(clean) || strings.Contains(clean, "\\") {
		return "", fmt.Errorf("extract: %w: entry name %q is not a relative path inside the archive", ErrBadArchive, name)
	}
	return path.Clean(clean), nil
}

func extractEntry(root *os.Root, tr *tar.Reader, h *tar.Header, name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	case tar.TypeReg:
		if h.Size < 0 || h.Size > maxFileSize {
			return fmt.Errorf("%w: file size %d", ErrBadArchive, h.Size)
		}
		mode := os.FileMode(0o644)
		if h.Mode&0o111 != 0 {
			mode = 0o755
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, tr, h.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if len(h.Linkname) > maxLinkLen || h.Linkname == "" {
			return fmt.Errorf("%w: bad symbolic link target", ErrBadArchive)
		}
		// The link is created as git stored it; os.Root refuses to
		// follow it out of dir when later entries are written.
		return root.Symlink(h.Linkname, name)
	default:
		return fmt.Errorf("%w: entry type %q not supported", ErrBadArchive, h.Typeflag)
	}
}
