package goplan

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/gitexec"
)

// gitTimeout bounds each git command that lists the planner's checkout.
const gitTimeout = time.Minute

// blob is a file or symbolic link of HEAD's tree, as git lists it.
type blob struct {
	link bool   // mode 120000: the blob's content is the link's target
	oid  string // the blob's object ID, in the repository's hash
}

// gitBlobs returns the blobs of HEAD by path relative to dir, when dir is
// the top level of a git work tree whose files match HEAD (the planner's
// checkout of a revision); otherwise nil, and the planner hashes every
// file.
//
// A blob ID is a digest the worker verifies without reading the content
// (it compares it with its own listing of the revision's tree), where a
// SHA-256 makes it hash every input blob of every job as it writes it
// (about 45 ms of a shard's 280 ms checkout CPU on klauspost/compress).
// The planner saves nothing: `git diff HEAD` reads every file whose
// stat data the index cannot vouch for, and in a fresh checkout that is
// all of them (git counts a file written in the same second as the
// index as possibly changed), with a slower hash than SHA-256, so a
// plan of that module costs about 60 ms more CPU (0.19-0.22 s against
// 0.13-0.15 s, go list included), once per build against 4 shards'
// 45 ms each. A blob ID names the content git stores, which is what the
// worker writes for the job (no .gitattributes conversion), so it is the
// right digest even where the checkout converted a file's line endings.
//
// Only the top level: a directory below it may be an uploaded source the
// worker unpacked somewhere inside an unrelated repository, whose inputs
// must be stated by SHA-256 (the coordinator checks them against the
// upload's manifest). Any change against HEAD (`git diff HEAD`: staged or
// not) makes it give up altogether, as does any failure of git: blob IDs
// are an optimisation, and hashing is always right.
func gitBlobs(ctx context.Context, dir string) map[string]blob {
	git := func(args ...string) ([]byte, error) {
		return gitexec.Cmd{Dir: dir, Args: args, Timeout: gitTimeout}.Output(ctx)
	}
	top, err := git("rev-parse", "--show-toplevel")
	if err != nil || !sameDir(strings.TrimSuffix(string(top), "\n"), dir) {
		return nil
	}
	// Exit status 1 is a difference; --no-optional-locks: reading the
	// checkout must not write its index.
	if _, err := git("--no-optional-locks", "diff", "--quiet", "--no-ext-diff", "--no-textconv", "HEAD", "--"); err != nil {
		return nil
	}
	out, err := git("ls-tree", "-r", "-z", "--full-tree", "HEAD")
	if err != nil {
		return nil
	}
	blobs, err := parseLsTree(out)
	if err != nil {
		return nil
	}
	return blobs
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

// parseLsTree parses `git ls-tree -r -z` output, keeping the blobs of
// regular files (modes 100644 and 100755) and symbolic links (120000);
// submodules and anything else are left out, so the planner hashes what
// it finds there.
func parseLsTree(out []byte) (map[string]blob, error) {
	entries, err := gitexec.ParseLsTree(out, maxModuleFiles)
	if err != nil {
		return nil, fmt.Errorf("goplan: %w", err)
	}
	m := make(map[string]blob, len(entries))
	for _, e := range entries {
		if e.Type != "blob" {
			continue
		}
		switch e.Mode {
		case "100644", "100755":
			m[e.Path] = blob{oid: e.OID}
		case "120000":
			m[e.Path] = blob{link: true, oid: e.OID}
		}
	}
	return m, nil
}
