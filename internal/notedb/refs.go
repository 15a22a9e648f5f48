package notedb

import (
	"fmt"
	"strconv"
	"strings"
)

// shard is Gerrit's RefNames.shard: the change number mod 100, two digits.
func shard(n int) string { return fmt.Sprintf("%02d", n%100) }

// PatchSetRef returns "refs/changes/<SS>/<N>/<P>", the ref of patch set P.
func PatchSetRef(change, patchSet int) string {
	return fmt.Sprintf("refs/changes/%s/%d/%d", shard(change), change, patchSet)
}

// MetaRef returns "refs/changes/<SS>/<N>/meta", the change's NoteDb ref.
func MetaRef(change int) string {
	return fmt.Sprintf("refs/changes/%s/%d/meta", shard(change), change)
}

// ParseChangeRef recognizes a patch-set or meta ref
// (^refs/changes/[0-9]{2}/([0-9]+)/(meta|[0-9]+)$ with a consistent
// shard). For a meta ref patchSet is 0 and meta is true. Other refs (robot
// comments, drafts, branches) give ok == false.
func ParseChangeRef(ref string) (change, patchSet int, meta, ok bool) {
	rest, found := strings.CutPrefix(ref, "refs/changes/")
	if !found {
		return 0, 0, false, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || len(parts[0]) != 2 {
		return 0, 0, false, false
	}
	n, err := parsePositive(parts[1])
	if err != nil || parts[1] != strconv.Itoa(n) || shard(n) != parts[0] {
		return 0, 0, false, false
	}
	if parts[2] == "meta" {
		return n, 0, true, true
	}
	ps, err := parsePositive(parts[2])
	if err != nil || parts[2] != strconv.Itoa(ps) {
		return 0, 0, false, false
	}
	return n, ps, false, true
}
