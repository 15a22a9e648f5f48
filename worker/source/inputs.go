package source

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sync/singleflight"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/gitexec"
)

// ErrBadInput is wrapped when a job's input is refused before anything
// is read: a path that is not clean and relative, climbs out with "..",
// or names a .git directory, or an input of a git source without a
// digest. It is the graph's fault: retrying elsewhere would only repeat
// it.
var ErrBadInput = errors.New("bad input")

// ErrInputMismatch is wrapped when an input's digest does not describe
// its content at the job's revision (or in the uploaded manifest), or the
// input does not exist there. The job's ID covers only its inputs, so
// running it would cache a result under an ID that promises content the
// job never saw; like ErrBadInput it is the graph's fault.
var ErrInputMismatch = errors.New("input does not match the source")

// Limits on what an inputs checkout reads from git.
const (
	// maxTreeEntries bounds the entries of a revision's tree listing.
	maxTreeEntries = 1_000_000
	// maxSymlinkBytes bounds a symbolic link's target.
	maxSymlinkBytes = 4096
	// keptTrees is how many revisions' tree listings a Store keeps: the
	// jobs of one build share a revision, and a few builds run at once.
	keptTrees = 8
)

// CheckInputPath accepts a slash-separated, clean, relative path of at
// most graph.MaxNameLen bytes of valid UTF-8, without "..", NUL, a
// backslash, a line break, or a component named .git (in any case: git
// never checks one out). (A path under a directory input is written if
// it is merely safe: see safeTreePath.)
//
// Paths never reach git's command line (CheckoutInputs lists the whole
// tree of the revision and matches paths itself), so a path that looks
// like an option or a pathspec ("-x", ":(glob)*") is an ordinary name.
func CheckInputPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty input path: %w", ErrBadInput)
	case len(p) > graph.MaxNameLen:
		return fmt.Errorf("input path longer than %d bytes: %w", graph.MaxNameLen, ErrBadInput)
	case !utf8.ValidString(p) || strings.ContainsAny(p, "\x00\\\n\r"):
		return fmt.Errorf("input path %q has invalid characters: %w", p, ErrBadInput)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("input path %q is absolute: %w", p, ErrBadInput)
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Errorf("input path %q escapes the source with ..: %w", p, ErrBadInput)
	case p == "." || path.Clean(p) != p:
		return fmt.Errorf("input path %q is not clean: %w", p, ErrBadInput)
	}
	if hasGitComponent(p) {
		return fmt.Errorf("input path %q names a .git directory: %w", p, ErrBadInput)
	}
	return nil
}

// isSHA256 reports whether d is 64 lower-case hex digits.
func isSHA256(d string) bool {
	if len(d) != 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckoutInputs puts only the given inputs of repo at rev into dst (a
// directory that must not exist yet) and returns the full commit hash
// and a function that removes dst. It is the checkout of a job with
// source_mode inputs: the job promises to read nothing else, and its
// result is cached under an ID that covers only these inputs, so
// nothing else is there to be read by mistake.
//
// A file input is written alone; a directory input brings everything
// under it. Files get mode 0644, or 0755 when git records them
// executable; symbolic links are made as git records them, submodules
// (gitlinks) as empty directories. Contents are written as stored in
// git: no .gitattributes conversion applies (a partial tree would apply
// it inconsistently).
//
// Before the job may run, every input is verified against the
// revision: its Digest must be either the git object ID of the path at
// rev (a blob or tree ID, in the repository's hash) or, for a file, the
// lower-case hex SHA-256 of its content (what trybot/goplan computes).
// An input that is missing at rev or whose digest matches neither fails
// with ErrInputMismatch naming it; an input without a digest, or a
// refused path (see CheckInputPath), with ErrBadInput.
//
// The clone is fetched as by Checkout, with the same retries; the
// tarball fallback is not used, because the digests are verified
// against git's objects.
func (s *Store) CheckoutInputs(ctx context.Context, repo, rev, dst string, inputs []graph.Input) (commit string, release func(), err error) {
	if err := CheckRepoURL(repo); err != nil {
		return "", nil, fmt.Errorf("source: %w", err)
	}
	if err := CheckRevision(rev); err != nil {
		return "", nil, fmt.Errorf("source: %w", err)
	}
	if err := checkInputs(inputs, true); err != nil {
		return "", nil, fmt.Errorf("source: %w", err)
	}
	gitDir := s.clonePath(repo)
	commit, _, err = s.retrying(ctx, repo, rev, func() (string, func(), error) {
		m := s.lock(gitDir)
		m.Lock()
		defer m.Unlock()
		c, err := s.update(ctx, gitDir, repo, rev)
		if err != nil {
			return "", nil, fmt.Errorf("source: fetch %s at %s: %w", repo, rev, err)
		}
		return c, nil, nil
	})
	if err != nil {
		return "", nil, err
	}
	release = func() { os.RemoveAll(dst) }
	if err := s.writeInputs(ctx, gitDir, commit, inputs, dst); err != nil {
		release()
		return "", nil, s.inputsError(repo, commit, err)
	}
	return commit, release, nil
}

// inputsError wraps a failure to check out or verify the inputs of
// repo at commit, counting refused inputs.
func (s *Store) inputsError(repo, commit string, err error) error {
	if errors.Is(err, ErrInputMismatch) || errors.Is(err, ErrBadInput) {
		s.m.checkouts.WithLabelValues("bad_inputs").Inc()
	}
	return fmt.Errorf("source: inputs of %s at %s: %w", repo, commit, err)
}

// checkInputs checks every input's path and, when needDigest, that it
// has a digest.
func checkInputs(inputs []graph.Input, needDigest bool) error {
	if len(inputs) == 0 {
		return fmt.Errorf("source_mode inputs with no input: %w", ErrBadInput)
	}
	for _, in := range inputs {
		if err := CheckInputPath(in.Path); err != nil {
			return err
		}
		if needDigest && in.Digest == "" {
			return fmt.Errorf("input %q has no digest (a job reading a git source must state each input's digest, which the worker verifies, since its ID covers only those): %w", in.Path, ErrBadInput)
		}
	}
	return nil
}

// treeEntry is one entry of `git ls-tree -r -t` of a revision.
type treeEntry struct {
	path string
	mode string // 100644, 100755, 120000, 160000 or 040000
	typ  string // blob, tree or commit
	oid  string
	// unsafe marks a path the worker will not write (see safeTreePath);
	// an input cannot name it, and a directory input holding it fails.
	unsafe bool
}

// safeTreePath reports whether a path from a revision's tree may be
// written below a checkout: relative, with no empty, ".", ".." or .git
// component and no NUL. Git allows more than inputs may name (a
// backslash, a line break, invalid UTF-8): those are written when they
// are under a directory input.
func safeTreePath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || hasGitComponent(p) {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}

// tree is the listing of a revision's whole tree, sorted by path, so
// that everything under a directory is one contiguous run.
type tree []treeEntry

// find returns the index of the entry named p, or -1.
func (t tree) find(p string) int {
	i := sort.Search(len(t), func(i int) bool { return t[i].path >= p })
	if i < len(t) && t[i].path == p {
		return i
	}
	return -1
}

// under returns the entries below directory p.
func (t tree) under(p string) tree {
	prefix := p + "/"
	i := sort.Search(len(t), func(i int) bool { return t[i].path >= prefix })
	j := i
	for j < len(t) && strings.HasPrefix(t[j].path, prefix) {
		j++
	}
	return t[i:j]
}

// treeCache keeps the listings of the last keptTrees revisions, loading
// each once however many jobs ask at the same time.
type treeCache struct {
	group singleflight.Group
	mu    sync.Mutex
	trees map[string]tree
	order []string // oldest first
}

// listTree returns the listing of commit in gitDir.
func (s *Store) listTree(ctx context.Context, gitDir, commit string) (tree, error) {
	c := &s.trees
	key := gitDir + "\x00" + commit
	c.mu.Lock()
	t, ok := c.trees[key]
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		out, err := s.git(ctx, gitDir, "ls-tree", "-r", "-t", "-z", "--full-tree", "--end-of-options", commit)
		if err != nil {
			return nil, err
		}
		t, err := parseTree(out)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.trees == nil {
			c.trees = map[string]tree{}
		}
		if _, ok := c.trees[key]; !ok {
			if len(c.order) >= keptTrees {
				delete(c.trees, c.order[0])
				c.order = c.order[1:]
			}
			c.trees[key] = t
			c.order = append(c.order, key)
		}
		return t, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the tree of %s: %w", commit, err)
	}
	return v.(tree), nil
}

// parseTree parses the output of `git ls-tree -r -t -z`: entries
// "<mode> SP <type> SP <object> TAB <path> NUL". A path that is not
// safeTreePath is kept, marked unsafe, so that no entry can be written
// outside the checkout while the rest of the revision stays usable.
func parseTree(out []byte) (tree, error) {
	entries, err := gitexec.ParseLsTree(out, maxTreeEntries)
	if err != nil {
		return nil, err
	}
	t := make(tree, len(entries))
	for i, e := range entries {
		t[i] = treeEntry{path: e.Path, mode: e.Mode, typ: e.Type, oid: e.OID, unsafe: !safeTreePath(e.Path)}
	}
	sort.Slice(t, func(i, j int) bool { return t[i].path < t[j].path })
	return t, nil
}

// inputPlan is what verifying inputs against a revision's tree found:
// what to write, and the SHA-256 sums still to check as blobs are read.
type inputPlan struct {
	files   tree              // blobs and gitlinks under the inputs, by path
	dirs    []string          // directory inputs, made even if empty
	wantSum map[string]string // blob ID → the SHA-256 its content must have
	sumFor  map[string]string // blob ID → the input that stated that sum
}

// planInputs checks every input against commit's tree: it must exist
// and its digest must be the object ID of its entry, or, for a blob,
// a SHA-256 (checked when the blob is read: see inputWriter.write).
func (s *Store) planInputs(ctx context.Context, gitDir, commit string, inputs []graph.Input) (*inputPlan, error) {
	t, err := s.listTree(ctx, gitDir, commit)
	if err != nil {
		return nil, err
	}
	p := &inputPlan{wantSum: map[string]string{}, sumFor: map[string]string{}}
	seen := map[string]bool{}
	add := func(e treeEntry) error {
		if e.unsafe {
			return fmt.Errorf("the revision holds %q, which the worker refuses to write: %w", e.path, ErrBadInput)
		}
		if e.typ != "tree" && !seen[e.path] {
			seen[e.path] = true
			p.files = append(p.files, e)
		}
		return nil
	}
	for _, in := range inputs {
		i := t.find(in.Path)
		if i < 0 || t[i].unsafe {
			return nil, fmt.Errorf("input %q does not exist at %s: %w", in.Path, commit, ErrInputMismatch)
		}
		e := t[i]
		switch {
		case in.Digest == e.oid:
		case e.typ == "blob" && isSHA256(in.Digest):
			if prev, ok := p.wantSum[e.oid]; ok && prev != in.Digest {
				// Two inputs with the same content, stated differently:
				// one of them is wrong.
				return nil, fmt.Errorf("input %q: digest %s, but input %q has the same content and digest %s: %w",
					in.Path, in.Digest, p.sumFor[e.oid], prev, ErrInputMismatch)
			}
			p.wantSum[e.oid], p.sumFor[e.oid] = in.Digest, in.Path
		default:
			return nil, fmt.Errorf("input %q: digest %s does not match its content at %s (a %s, git object %s; want that object ID or, for a file, the hex SHA-256 of its content): %w",
				in.Path, in.Digest, commit, e.typ, e.oid, ErrInputMismatch)
		}
		if e.typ == "tree" {
			p.dirs = append(p.dirs, e.path)
			for _, sub := range t.under(e.path) {
				if err := add(sub); err != nil {
					return nil, fmt.Errorf("input %q: %w", in.Path, err)
				}
			}
		} else if err := add(e); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// writeInputs verifies inputs against commit's tree and writes them into
// dst.
func (s *Store) writeInputs(ctx context.Context, gitDir, commit string, inputs []graph.Input, dst string) error {
	p, err := s.planInputs(ctx, gitDir, commit, inputs)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, d := range p.dirs {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	w := &inputWriter{root: root, paths: map[string][]treeEntry{}, wantSum: p.wantSum, sumFor: p.sumFor}
	var oids []string
	for _, e := range p.files {
		if e.typ == "commit" {
			// A submodule: git leaves an empty directory.
			if err := root.MkdirAll(e.path, 0o755); err != nil {
				return err
			}
			continue
		}
		if e.typ != "blob" {
			return fmt.Errorf("path %q is a %s, which cannot be checked out", e.path, e.typ)
		}
		if len(w.paths[e.oid]) == 0 {
			oids = append(oids, e.oid)
		}
		w.paths[e.oid] = append(w.paths[e.oid], e)
	}
	return s.catBlobs(ctx, gitDir, oids, w.write)
}

// hasGitComponent reports whether a slash-separated path has a component
// named .git, in any case.
func hasGitComponent(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if strings.EqualFold(part, ".git") {
			return true
		}
	}
	return false
}

// catBlobs streams the contents of the blobs oids through one
// `git cat-file --batch`, calling f with each in order.
func (s *Store) catBlobs(ctx context.Context, gitDir string, oids []string, f func(oid string, size int64, r io.Reader) error) error {
	if len(oids) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := gitexec.Cmd{
			Git:     s.opts.Git,
			Env:     s.env,
			Args:    []string{"--git-dir=" + gitDir, "cat-file", "--batch"},
			Stdin:   strings.NewReader(strings.Join(oids, "\n") + "\n"),
			Stdout:  pw,
			Timeout: s.opts.CommandTimeout,
		}.Run(ctx)
		pw.CloseWithError(err)
		done <- err
	}()
	err := readBatch(pr, oids, f)
	if err != nil {
		cancel() // git may still be writing what nobody reads
	}
	pr.CloseWithError(errors.New("reader gone"))
	gitErr := <-done
	if err != nil {
		return err
	}
	return gitErr
}

// readBatch reads `git cat-file --batch` answers for oids: for each, a
// header "<oid> <type> <size>" LF, the content, and LF.
func readBatch(r io.Reader, oids []string, f func(oid string, size int64, r io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for _, oid := range oids {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("cat-file: reading the header of %s: %w", oid, err)
		}
		h := strings.Fields(string(line))
		if len(h) != 3 || h[0] != oid || h[1] != "blob" {
			return fmt.Errorf("cat-file: object %s: unexpected answer %q", oid, strings.TrimSpace(string(line)))
		}
		size, err := strconv.ParseInt(h[2], 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("cat-file: object %s: bad size %q", oid, h[2])
		}
		lr := &io.LimitedReader{R: br, N: size}
		if err := f(oid, size, lr); err != nil {
			return err
		}
		if lr.N > 0 {
			if _, err := io.Copy(io.Discard, lr); err != nil {
				return fmt.Errorf("cat-file: object %s: %w", oid, err)
			}
		}
		if lr.N > 0 {
			return fmt.Errorf("cat-file: object %s: %w", oid, io.ErrUnexpectedEOF)
		}
		if b, err := br.ReadByte(); err != nil || b != '\n' {
			return fmt.Errorf("cat-file: object %s: missing terminator", oid)
		}
	}
	return nil
}

// inputWriter writes each blob read from git to the paths that hold it,
// verifying its SHA-256 where an input stated one.
type inputWriter struct {
	root    *os.Root
	paths   map[string][]treeEntry // blob ID → entries with that content
	wantSum map[string]string
	sumFor  map[string]string
}

func (w *inputWriter) write(oid string, size int64, r io.Reader) error {
	var h hash.Hash
	if _, ok := w.wantSum[oid]; ok {
		h = sha256.New()
		r = io.TeeReader(r, h)
	}
	entries := w.paths[oid]
	links := false
	for _, e := range entries {
		links = links || e.mode == "120000"
	}
	if links {
		// A symbolic link's target is the blob's content: read it once
		// for every path that holds it.
		if size > maxSymlinkBytes {
			return fmt.Errorf("symbolic link %q: target longer than %d bytes", entries[0].path, maxSymlinkBytes)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.mode == "120000" {
				err = w.symlink(e.path, string(b))
			} else {
				err = w.file(e, bytes.NewReader(b))
			}
			if err != nil {
				return err
			}
		}
	} else {
		// The first path is written from git; the others (the same
		// content under other names) are copied from it.
		if err := w.file(entries[0], r); err != nil {
			return err
		}
		for _, e := range entries[1:] {
			if err := w.copy(entries[0].path, e); err != nil {
				return err
			}
		}
	}
	return w.checkSum(oid, h)
}

// checkSum compares the SHA-256 h of blob oid, if one was wanted.
func (w *inputWriter) checkSum(oid string, h hash.Hash) error {
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != w.wantSum[oid] {
			return fmt.Errorf("input %q: digest %s does not match its content at the revision (SHA-256 %s): %w",
				w.sumFor[oid], w.wantSum[oid], got, ErrInputMismatch)
		}
	}
	return nil
}

// symlink makes a symbolic link, as git checks one out.
func (w *inputWriter) symlink(p, target string) error {
	if err := w.mkParent(p); err != nil {
		return err
	}
	return w.root.Symlink(target, p)
}

func (w *inputWriter) mkParent(p string) error {
	if d := path.Dir(p); d != "." {
		return w.root.MkdirAll(d, 0o755)
	}
	return nil
}

func mode(e treeEntry) os.FileMode {
	if e.mode == "100755" {
		return 0o755
	}
	return 0o644
}

func (w *inputWriter) file(e treeEntry, r io.Reader) error {
	if err := w.mkParent(e.path); err != nil {
		return err
	}
	f, err := w.root.OpenFile(e.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode(e))
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *inputWriter) copy(from string, e treeEntry) error {
	src, err := w.root.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	return w.file(e, src)
}

// SelectFiles returns the files of an uploaded source's manifest that a
// job with source_mode inputs may see: each input's file, or everything
// under a directory input, sorted by path. Every input must be in the
// manifest (ErrInputMismatch otherwise), and a file input's digest, when
// stated, must be the file's. (The coordinator computes the inputs'
// digests of an uploaded source from the manifest itself, so a client
// cannot state a wrong one; this check guards against a coordinator
// that dispatched the wrong manifest.)
func SelectFiles(files []graph.File, inputs []graph.Input) ([]graph.File, error) {
	if err := checkInputs(inputs, false); err != nil {
		return nil, err
	}
	sorted := make([]graph.File, len(files))
	copy(sorted, files)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var out []graph.File
	seen := map[string]bool{}
	for _, in := range inputs {
		i := sort.Search(len(sorted), func(i int) bool { return sorted[i].Path >= in.Path })
		if i < len(sorted) && sorted[i].Path == in.Path {
			if in.Digest != "" && in.Digest != sorted[i].Digest {
				return nil, fmt.Errorf("input %q: digest %s is not the uploaded file's (%s): %w", in.Path, in.Digest, sorted[i].Digest, ErrInputMismatch)
			}
			if !seen[in.Path] {
				seen[in.Path] = true
				out = append(out, sorted[i])
			}
			continue
		}
		prefix := in.Path + "/"
		i = sort.Search(len(sorted), func(i int) bool { return sorted[i].Path >= prefix })
		n := 0
		for ; i < len(sorted) && strings.HasPrefix(sorted[i].Path, prefix); i++ {
			n++
			if !seen[sorted[i].Path] {
				seen[sorted[i].Path] = true
				out = append(out, sorted[i])
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("input %q is not in the uploaded source: %w", in.Path, ErrInputMismatch)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
