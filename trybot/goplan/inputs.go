package goplan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Limits on the module tree the planner lists.
const (
	// maxModuleFiles bounds the files of one walk of the module (its data
	// files, a vendor tree, the tree under a linked directory).
	maxModuleFiles = 100_000
	// maxLinkTarget bounds a symbolic link's target, as the worker does.
	maxLinkTarget = 4096
)

// moduleFiles returns what pins the module's builds outside its own
// packages, which every job reads: go.mod; go.sum, go.work and
// go.work.sum when present; and the whole vendor/ tree when
// vendor/modules.txt is present (the go command then builds the other
// modules' packages from it, and go.sum no longer pins their content).
func moduleFiles(fsys FS) (map[string]bool, error) {
	m := map[string]bool{"go.mod": true}
	for _, f := range []string{"go.sum", "go.work", "go.work.sum"} {
		if _, err := fs.Lstat(fsys, f); err == nil {
			m[f] = true
		}
	}
	if _, err := fs.Lstat(fsys, "vendor/modules.txt"); err == nil {
		if err := walkFiles(fsys, "vendor", func(p string) { m[p] = true }); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// dataFiles returns every file of the module except the Go source of
// packages (see isPackageGo), which the packages' closures cover: what
// a test may open by a relative path (testdata anywhere, ../test.txt,
// a README). Go's test cache learns which files a test opens by running
// it; the planner has to decide before, so it lists them all.
func dataFiles(fsys FS) (map[string]bool, error) {
	m := map[string]bool{}
	err := walkFiles(fsys, ".", func(p string) {
		if !isPackageGo(p) {
			m[p] = true
		}
	})
	return m, err
}

// isPackageGo reports whether the go command would treat p as the Go
// source of a package: a .go file with no path element named testdata
// or starting with "_" or "." (directories and files the go command
// ignores, whose .go files are data).
func isPackageGo(p string) bool {
	if !strings.HasSuffix(p, ".go") {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == "testdata" || strings.HasPrefix(part, "_") || strings.HasPrefix(part, ".") {
			return false
		}
	}
	return true
}

// walkFiles calls f with the path of every regular file and symbolic
// link under root (a directory), refusing more than maxModuleFiles. It
// does not descend into a directory named .git (in any case) and leaves
// out files so named: no revision holds such a path, and a worktree's
// .git file names the checkout, not the source. It leaves out names an
// input cannot have (see validRel): the worker could not give the job
// such a file, so the job never sees it and its result cannot depend
// on it.
func walkFiles(fsys FS, root string, f func(string)) error {
	n := 0
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && isGitName(d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if t := d.Type(); !t.IsRegular() && t&fs.ModeSymlink == 0 || !validRel(p) {
			return nil
		}
		if n++; n > maxModuleFiles {
			return fmt.Errorf("more than %d files", maxModuleFiles)
		}
		f(p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("goplan: list the files under %s: %w", root, err)
	}
	return nil
}

// isGitName reports whether a path element is .git, in any case (as
// the worker refuses it).
func isGitName(name string) bool { return strings.EqualFold(name, ".git") }

// hasGitElement reports whether a slash-separated path has an element
// named .git.
func hasGitElement(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if isGitName(part) {
			return true
		}
	}
	return false
}

// fileSet computes the inputs of jobs, reading each file once.
type fileSet struct {
	fsys FS
	// blobs are HEAD's blobs when fsys is a clean git checkout of it
	// (see gitBlobs), else nil: a file or link found there gets its blob
	// ID as digest instead of being read and hashed.
	blobs map[string]blob
	seen  map[string]*fileEntry
}

func newFileSet(fsys FS, blobs map[string]blob) *fileSet {
	return &fileSet{fsys: fsys, blobs: blobs, seen: map[string]*fileEntry{}}
}

// fileEntry is what the planner found at a path.
type fileEntry struct {
	// digest is the git blob ID of the path at HEAD when the checkout
	// is clean and git lists it as a file or link alike, else the hex
	// SHA-256 of a file's content or of a symbolic link's target (the
	// content of the link's git blob): the worker verifies either; ""
	// when the path is neither, and so no input.
	digest string
	// follow are the paths a link's target brings in (see resolve).
	follow []string
}

// inputs returns the union of sets as a job's inputs, sorted by path:
// with each symbolic link, what its target brings in (see resolve),
// and without paths that are neither files nor links here (go list may
// name such files; the job cannot be given them).
func (s *fileSet) inputs(sets ...map[string]bool) ([]graph.Input, error) {
	all := map[string]bool{}
	var queue []string
	add := func(p string) {
		if !all[p] {
			all[p] = true
			queue = append(queue, p)
		}
	}
	for _, set := range sets {
		for p := range set {
			add(p)
		}
	}
	for len(queue) > 0 {
		p := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		e, err := s.entry(p)
		if err != nil {
			return nil, err
		}
		for _, f := range e.follow {
			add(f)
		}
	}
	out := make([]graph.Input, 0, len(all))
	for _, p := range slices.Sorted(maps.Keys(all)) {
		if d := s.seen[p].digest; d != "" {
			out = append(out, graph.Input{Path: p, Digest: d})
		}
	}
	return out, nil
}

// entry reads the file or link at p, once.
func (s *fileSet) entry(p string) (*fileEntry, error) {
	if e, ok := s.seen[p]; ok {
		return e, nil
	}
	e := &fileEntry{}
	st, err := fs.Lstat(s.fsys, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("goplan: %w", err)
	case st.Mode().IsRegular():
		if st.Size() > MaxFileBytes {
			return nil, fmt.Errorf("goplan: %s is larger than %d bytes", p, MaxFileBytes)
		}
		if b, ok := s.blobs[p]; ok && !b.link {
			e.digest = b.oid
			break
		}
		b, err := s.fsys.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("goplan: %w", err)
		}
		e.digest = sha256Hex(b)
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := fs.ReadLink(s.fsys, p)
		if err != nil {
			return nil, fmt.Errorf("goplan: %w", err)
		}
		if len(target) > maxLinkTarget {
			return nil, fmt.Errorf("goplan: symbolic link %s: target longer than %d bytes", p, maxLinkTarget)
		}
		e.digest = sha256Hex([]byte(target))
		if b, ok := s.blobs[p]; ok && b.link {
			e.digest = b.oid
		}
		if e.follow, err = s.resolve(p, target); err != nil {
			return nil, err
		}
	}
	s.seen[p] = e
	return e, nil
}

// resolve returns what the symbolic link at p with the given target
// brings into a job's inputs so that it resolves there as here: the
// target file or link, or every file under a target directory, when
// the target is inside the module. A link through another link (a
// linked parent directory) brings that link, which brings its own
// target in turn. A target outside the module (absolute, or climbing
// out) or missing brings nothing: the job sees the link as the
// revision holds it, and nothing the planner could list.
func (s *fileSet) resolve(p, target string) ([]string, error) {
	if target == "" || path.IsAbs(target) {
		return nil, nil
	}
	t := path.Join(path.Dir(p), target)
	if !validRel(t) || hasGitElement(t) {
		return nil, nil
	}
	// The first linked parent directory, if any: the path resolves
	// through it.
	for i := 0; i < len(t); i++ {
		if t[i] != '/' {
			continue
		}
		st, err := fs.Lstat(s.fsys, t[:i])
		if err != nil {
			return nil, nil
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return []string{t[:i]}, nil
		}
	}
	st, err := fs.Lstat(s.fsys, t)
	switch {
	case err != nil:
		return nil, nil
	case st.IsDir():
		var under []string
		if err := walkFiles(s.fsys, t, func(f string) { under = append(under, f) }); err != nil {
			return nil, err
		}
		return under, nil
	}
	return []string{t}, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
