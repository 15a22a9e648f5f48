package notedb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RawCommit is a git commit object's headers as ParseRawCommit reads them.
type RawCommit struct {
	Commit
	Tree    string
	Parents []string
	// AuthorTime is the author's timestamp (Commit.Time is the
	// committer's).
	AuthorTime time.Time
}

// maxRawCommit bounds the size of a commit object ParseRawCommit accepts.
const maxRawCommit = 16 << 20

// ParseRawCommit parses a git commit object's bytes (the output of
// "git cat-file commit <sha>", or maintner's GitCommit.Raw) into the
// Commit that ParseCommit takes. Multi-line headers (gpgsig, mergetag) are
// skipped. Errors wrap ErrInvalid.
func ParseRawCommit(sha string, raw []byte) (*RawCommit, error) {
	rc, err := parseRaw(sha, raw)
	if err != nil {
		return nil, fmt.Errorf("notedb: raw commit %s: %w: %w", sha, ErrInvalid, err)
	}
	return rc, nil
}

func parseRaw(sha string, raw []byte) (*RawCommit, error) {
	if len(raw) > maxRawCommit {
		return nil, errors.New("commit object too large")
	}
	s := string(raw)
	header, msg, ok := strings.Cut(s, "\n\n")
	if !ok {
		// A commit with an empty message may end right after the headers.
		header, msg = strings.TrimSuffix(s, "\n"), ""
	}
	rc := &RawCommit{Commit: Commit{SHA: sha, Message: msg}}
	var haveAuthor, haveCommitter bool
	for _, line := range strings.Split(header, "\n") {
		if strings.HasPrefix(line, " ") {
			continue // continuation of a multi-line header
		}
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case "tree":
			if !isHex(val, 40) {
				return nil, fmt.Errorf("bad tree %q", val)
			}
			rc.Tree = val
		case "parent":
			if !isHex(val, 40) {
				return nil, fmt.Errorf("bad parent %q", val)
			}
			rc.Parents = append(rc.Parents, val)
		case "author":
			id, t, err := parseSignature(val)
			if err != nil {
				return nil, fmt.Errorf("author: %w", err)
			}
			rc.Author, rc.AuthorTime, haveAuthor = id, t, true
		case "committer":
			id, t, err := parseSignature(val)
			if err != nil {
				return nil, fmt.Errorf("committer: %w", err)
			}
			rc.Committer, rc.Time, haveCommitter = id, t, true
		}
	}
	if rc.Tree == "" || !haveAuthor || !haveCommitter {
		return nil, errors.New("missing tree, author or committer header")
	}
	return rc, nil
}

// parseSignature reads "Name <email> <seconds> <+zzzz>".
func parseSignature(s string) (Ident, time.Time, error) {
	gt := strings.LastIndexByte(s, '>')
	if gt < 0 {
		return Ident{}, time.Time{}, fmt.Errorf("bad signature %q", s)
	}
	id, err := parseIdent(s[:gt+1])
	if err != nil {
		return Ident{}, time.Time{}, err
	}
	f := strings.Fields(s[gt+1:])
	if len(f) == 0 {
		return Ident{}, time.Time{}, fmt.Errorf("signature %q has no time", s)
	}
	secs, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return Ident{}, time.Time{}, fmt.Errorf("signature %q: bad time", s)
	}
	return id, time.Unix(secs, 0).UTC(), nil
}
