package gitexec

import (
	"bytes"
	"fmt"
	"strings"
)

// TreeEntry is one entry of `git ls-tree -z` output.
type TreeEntry struct {
	Mode string // e.g. 100644, 100755, 120000 (symlink), 160000 (gitlink), 040000
	Type string // blob, tree or commit
	OID  string // object ID, lower-case hex
	Path string // as git prints it with -z (not quoted)
}

// ParseLsTree parses the output of `git ls-tree -z` (with or without -r
// and -t; not --long or --name-only), refusing more than max entries
// (max <= 0: no limit) and any entry that is not "MODE TYPE OID\tPATH"
// with a non-empty path and an object ID (see IsObjectID). Errors quote
// the entry, shortened.
func ParseLsTree(out []byte, max int) ([]TreeEntry, error) {
	var t []TreeEntry
	for len(out) > 0 {
		rec, rest, ok := bytes.Cut(out, []byte{0})
		if !ok {
			return nil, fmt.Errorf("gitexec: ls-tree: unterminated entry")
		}
		out = rest
		meta, p, ok := strings.Cut(string(rec), "\t")
		f := strings.Split(meta, " ")
		if !ok || len(f) != 3 || p == "" || !IsObjectID(f[2]) {
			return nil, fmt.Errorf("gitexec: ls-tree: bad entry %.80q", rec)
		}
		if max > 0 && len(t) == max {
			return nil, fmt.Errorf("gitexec: ls-tree: more than %d entries", max)
		}
		t = append(t, TreeEntry{Mode: f[0], Type: f[1], OID: f[2], Path: p})
	}
	return t, nil
}

// IsObjectID reports whether s is a git object ID: 40 (SHA-1) or 64
// (SHA-256) lower-case hex digits, as git prints them.
func IsObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
