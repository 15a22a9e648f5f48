package gerritsim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/internal/notedb"
)

// zeroSHA is git's null object id, used in ref-updated events for created
// and deleted refs.
const zeroSHA = "0000000000000000000000000000000000000000"

// repo runs git plumbing commands in one bare repository. Commits are
// built with hash-object/commit-tree, never "git commit", so messages stay
// byte-exact (NoteDb relies on trailing spaces and double blank lines).
type repo struct {
	git string
	dir string
}

// person is a git identity with a time, for commit headers.
type person struct {
	notedb.Ident
	When time.Time
}

func (p person) header() string {
	return fmt.Sprintf("%s <%s> %d +0000", p.Name, p.Email, p.When.Unix())
}

// run runs git on the repository and returns its standard output
// without the final newline. The host's system configuration is ignored
// and messages are in English, so what the simulator writes does not
// depend on the machine.
func (r *repo) run(ctx context.Context, stdin []byte, env []string, args ...string) (string, error) {
	c := gitexec.Cmd{
		Git:  r.git,
		Dir:  r.dir,
		Env:  slices.Concat(os.Environ(), []string{"GIT_DIR=" + r.dir, "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C"}, env),
		Args: args,
	}
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	out, err := c.Output(ctx)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// initBare creates the bare repository with HEAD pointing at branch.
func (r *repo) initBare(ctx context.Context, branch string) error {
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o755); err != nil {
		return err
	}
	init := gitexec.Cmd{Git: r.git, Env: append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1"), Args: []string{"init", "--bare", "--quiet", r.dir}}
	if err := init.Run(ctx); err != nil {
		return err
	}
	if _, err := r.run(ctx, nil, nil, "symbolic-ref", "HEAD", "refs/heads/"+branch); err != nil {
		return err
	}
	// http-backend serves only repositories that opt in.
	_, err := r.run(ctx, nil, nil, "config", "http.uploadpack", "true")
	return err
}

func (r *repo) hashBlob(ctx context.Context, content []byte) (string, error) {
	return r.run(ctx, content, nil, "hash-object", "-w", "--stdin")
}

// buildTree returns the tree of base (a commit, or "" for the empty tree)
// with files written over it.
func (r *repo) buildTree(ctx context.Context, base string, files map[string]string, remove ...string) (string, error) {
	idx, err := os.CreateTemp("", "gerritsim-index-*")
	if err != nil {
		return "", err
	}
	idxPath := idx.Name()
	idx.Close()
	os.Remove(idxPath)
	defer os.Remove(idxPath)
	env := []string{"GIT_INDEX_FILE=" + idxPath}
	if base != "" {
		if _, err := r.run(ctx, nil, env, "read-tree", base+"^{tree}"); err != nil {
			return "", err
		}
	} else if _, err := r.run(ctx, nil, env, "read-tree", "--empty"); err != nil {
		return "", err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var info strings.Builder
	for _, p := range paths {
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") || strings.Contains(p, "\n") {
			return "", fmt.Errorf("%w: bad file path %q", ErrBadRequest, p)
		}
		sha, err := r.hashBlob(ctx, []byte(files[p]))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&info, "100644 %s\t%s\n", sha, p)
	}
	for _, p := range remove {
		if _, ok := files[p]; ok || p == "" || strings.ContainsAny(p, "\x00\n") {
			return "", fmt.Errorf("%w: bad path to delete %q", ErrBadRequest, p)
		}
		// Mode 0 removes the path from the index.
		fmt.Fprintf(&info, "0 %s\t%s\n", zeroSHA, p)
	}
	if info.Len() > 0 {
		if _, err := r.run(ctx, []byte(info.String()), env, "update-index", "--add", "--index-info"); err != nil {
			return "", err
		}
	}
	return r.run(ctx, nil, env, "write-tree")
}

// patchID returns git's stable patch id of a commit against parent: equal
// ids mean the same change, whatever it is based on.
func (r *repo) patchID(ctx context.Context, parent, commit string) (string, error) {
	diff, err := r.run(ctx, nil, nil, "diff-tree", "-p", "--no-renames", parent, commit)
	if err != nil {
		return "", err
	}
	out, err := r.run(ctx, []byte(diff+"\n"), nil, "patch-id", "--stable")
	if err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(out, " ")
	return id, nil
}

// commit writes a commit object verbatim with git hash-object, so that no
// cleanup touches the message.
func (r *repo) commit(ctx context.Context, tree string, parents []string, author, committer person, msg string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "tree %s\n", tree)
	for _, p := range parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	fmt.Fprintf(&b, "author %s\ncommitter %s\n\n%s", author.header(), committer.header(), msg)
	return r.run(ctx, []byte(b.String()), nil, "hash-object", "-w", "-t", "commit", "--stdin")
}

// refUpdate is one ref change; Old "" means the ref must not exist.
type refUpdate struct {
	Ref, Old, New string
}

// updateRefs applies updates atomically.
func (r *repo) updateRefs(ctx context.Context, ups ...refUpdate) error {
	var b strings.Builder
	b.WriteString("start\n")
	for _, u := range ups {
		old := u.Old
		if old == "" {
			old = zeroSHA
		}
		fmt.Fprintf(&b, "update %s %s %s\n", u.Ref, u.New, old)
	}
	b.WriteString("prepare\ncommit\n")
	_, err := r.run(ctx, []byte(b.String()), nil, "update-ref", "--stdin")
	return err
}

func (r *repo) resolve(ctx context.Context, ref string) (string, error) {
	out, err := r.run(ctx, nil, nil, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return out, nil
}

// treeOf returns the tree SHA of a commit.
func (r *repo) treeOf(ctx context.Context, commit string) (string, error) {
	return r.run(ctx, nil, nil, "rev-parse", commit+"^{tree}")
}

// isAncestor reports whether a is an ancestor of b.
func (r *repo) isAncestor(ctx context.Context, a, b string) bool {
	_, err := r.run(ctx, nil, nil, "merge-base", "--is-ancestor", a, b)
	return err == nil
}

// mergeTree computes the merge of two commits' trees; ErrConflict on
// conflicts.
func (r *repo) mergeTree(ctx context.Context, ours, theirs string) (string, error) {
	out, err := r.run(ctx, nil, nil, "merge-tree", "--write-tree", "--no-messages", ours, theirs)
	if err != nil {
		return "", fmt.Errorf("%w: merge conflict", ErrConflict)
	}
	tree, _, _ := strings.Cut(out, "\n")
	return tree, nil
}

// diffStat returns insertions and deletions between two commits.
func (r *repo) diffStat(ctx context.Context, from, to string) (ins, del int, files []fileStat, err error) {
	raw, err := r.run(ctx, nil, nil, "diff-tree", "-z", "-r", "--no-renames", "--raw", from, to)
	if err != nil {
		return 0, 0, nil, err
	}
	num, err := r.run(ctx, nil, nil, "diff-tree", "-z", "-r", "--no-renames", "--numstat", from, to)
	if err != nil {
		return 0, 0, nil, err
	}
	byPath := map[string]int{}
	f := strings.Split(raw, "\x00")
	var blobs []string
	for i := 0; i+1 < len(f); i += 2 {
		meta := strings.Fields(strings.TrimPrefix(f[i], ":"))
		if len(meta) != 5 {
			continue
		}
		byPath[f[i+1]] = len(files)
		files = append(files, fileStat{Path: f[i+1], OldBlob: meta[2], NewBlob: meta[3], Status: meta[4]})
		blobs = append(blobs, meta[2], meta[3])
	}
	for _, rec := range strings.Split(num, "\x00") {
		p := strings.SplitN(rec, "\t", 3)
		if len(p) != 3 {
			continue
		}
		a, _ := strconv.Atoi(p[0])
		d, _ := strconv.Atoi(p[1])
		ins += a
		del += d
		if i, ok := byPath[p[2]]; ok {
			files[i].Inserted, files[i].Deleted = a, d
		}
	}
	sizes, err := r.blobSizes(ctx, blobs)
	if err != nil {
		return 0, 0, nil, err
	}
	for i := range files {
		files[i].OldSize, files[i].NewSize = sizes[files[i].OldBlob], sizes[files[i].NewBlob]
	}
	return ins, del, files, nil
}

// blobSizes returns the size of each object (zeroSHA and unknown ids: 0).
func (r *repo) blobSizes(ctx context.Context, ids []string) (map[string]int64, error) {
	var in strings.Builder
	for _, id := range ids {
		if id != zeroSHA {
			in.WriteString(id + "\n")
		}
	}
	out := map[string]int64{}
	if in.Len() == 0 {
		return out, nil
	}
	res, err := r.run(ctx, []byte(in.String()), nil, "cat-file", "--batch-check=%(objectname) %(objectsize)")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(res, "\n") {
		id, size, ok := strings.Cut(line, " ")
		if n, err := strconv.ParseInt(size, 10, 64); ok && err == nil {
			out[id] = n
		}
	}
	return out, nil
}

// fileStat is one file of a patch set's diff against its parent.
type fileStat struct {
	Path              string
	Status            string // A, D, M, T
	OldBlob, NewBlob  string
	OldSize, NewSize  int64
	Inserted, Deleted int
}
