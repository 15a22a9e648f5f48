package maintner

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// GitHash is a git object id (SHA-1).
type GitHash [20]byte

// String returns the lowercase 40-hex form.
func (h GitHash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash.
func (h GitHash) IsZero() bool { return h == GitHash{} }

// MarshalText encodes h as 40 hex digits.
func (h GitHash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// ParseGitHash parses a 40-hex git object id (either case).
func ParseGitHash(s string) (GitHash, error) { return parseGitHash([]byte(s)) }

func parseGitHash(b []byte) (GitHash, error) {
	var h GitHash
	if len(b) != 40 {
		return h, fmt.Errorf("git hash %q: want 40 hex digits", truncate(b, 48))
	}
	// Loading parses a few hashes per Gerrit commit: one table lookup
	// per digit and a single check at the end (a digit that is not one
	// maps to 0xff, which sets a high bit that valid ones never do).
	b = b[:40]
	var bad byte
	for i := range h {
		hi, lo := unhex[b[2*i]], unhex[b[2*i+1]]
		bad |= hi | lo
		h[i] = hi<<4 | lo
	}
	if bad > 0xf {
		return GitHash{}, fmt.Errorf("git hash %q: not hex", truncate(b, 48))
	}
	return h, nil
}

// unhex maps a byte to its value as a hex digit, 0xff if it is not one.
const unhex = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// GitPerson is an author or committer identity. Identities are interned:
// every commit by the same "Name <email>" shares one *GitPerson.
type GitPerson struct {
	Name  string
	Email string
}

// String formats the person as "Name <email>".
func (p *GitPerson) String() string { return p.Name + " <" + p.Email + ">" }

// GitCommit is a git commit, as parsed from "git cat-file commit".
type GitCommit struct {
	Hash       GitHash
	Tree       GitHash
	Parents    []GitHash
	Author     *GitPerson
	Committer  *GitPerson
	AuthorTime Time
	CommitTime Time
	// AuthorTZ and CommitTZ are the zone offsets in minutes east of UTC.
	AuthorTZ, CommitTZ int16
	// Subject is the first line of the message.
	Subject string
	// Msg is the full commit message (subject and body), read with
	// Corpus.Text. NoteDb meta commits keep theirs in memory, since the
	// change state is derived from them.
	Msg Text
	// Files is the diff-tree numstat against the first parent, when the
	// log carried it.
	Files []GitFileStat
}

// GitFileStat is one line of "git diff-tree --numstat".
type GitFileStat struct {
	Name           string
	Added, Deleted int32
	Binary         bool
}

// rawCommit is a parsed "git cat-file commit" whose byte fields alias the
// record.
type rawCommit struct {
	tree               GitHash
	parents            []GitHash
	authorIdent        []byte // "Name <email>"
	committerIdent     []byte
	authorName         []byte
	authorEmail        []byte
	authorTime         Time
	authorTZ           int16
	committerName      []byte
	committerEmail     []byte
	committerTime      Time
	committerTZ        int16
	msg                []byte
	hasAuthor, hasComm bool
}

var errNoHeaderEnd = errors.New("no blank line after the commit header")

// parseRawCommit parses the output of "git cat-file commit": header lines
// (tree, parent, author, committer, and others that are ignored), a blank
// line, then the message. The header ends at the first "\n\n" (a newline
// that starts raw is an empty header line, not a blank line after one);
// the lines are walked once, finding that end on the way.
func parseRawCommit(raw []byte, c *rawCommit) error {
	rest := raw
	for {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return errNoHeaderEnd
		}
		line := rest[:nl]
		rest = rest[nl+1:]
		if nl == 0 && len(rest)+1 < len(raw) {
			break
		}
		if err := parseHeaderLine(line, c); err != nil {
			return err
		}
	}
	c.msg = rest
	if !c.hasAuthor || !c.hasComm {
		return errors.New("missing author or committer line")
	}
	return nil
}

// parseHeaderLine parses one line of a commit header into c.
func parseHeaderLine(line []byte, c *rawCommit) error {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return nil
	}
	key, val := line[:sp], line[sp+1:]
	var err error
	switch string(key) {
	case "tree":
		c.tree, err = parseGitHash(val)
	case "parent":
		var h GitHash
		h, err = parseGitHash(val)
		c.parents = append(c.parents, h)
	case "author":
		c.authorIdent, c.authorName, c.authorEmail, c.authorTime, c.authorTZ, err = parsePerson(val)
		c.hasAuthor = true
	case "committer":
		c.committerIdent, c.committerName, c.committerEmail, c.committerTime, c.committerTZ, err = parsePerson(val)
		c.hasComm = true
	}
	if err != nil {
		return fmt.Errorf("%s line: %w", key, err)
	}
	return nil
}

// parsePerson parses "Name <email> 1700000000 +0100"; ident is the
// "Name <email>" part.
func parsePerson(v []byte) (ident, name, email []byte, t Time, tz int16, err error) {
	lt := lastIndexByte(v, '<')
	gt := lastIndexByte(v, '>')
	if lt < 0 || gt < lt {
		return nil, nil, nil, 0, 0, fmt.Errorf("person %q: no <email>", truncate(v, 80))
	}
	ident = v[:gt+1]
	name = bytes.TrimRight(v[:lt], " ")
	email = v[lt+1 : gt]
	rest := bytes.TrimLeft(v[gt+1:], " ")
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return nil, nil, nil, 0, 0, fmt.Errorf("person %q: no time zone", truncate(v, 80))
	}
	sec, perr := parseDecimal(rest[:sp])
	if perr != nil || sec < 0 || sec > 1<<33 {
		return nil, nil, nil, 0, 0, fmt.Errorf("person %q: bad time", truncate(v, 80))
	}
	z := rest[sp+1:]
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return nil, nil, nil, 0, 0, fmt.Errorf("person %q: bad time zone", truncate(v, 80))
	}
	hh, e1 := parseDecimal(z[1:3])
	mm, e2 := parseDecimal(z[3:5])
	if e1 != nil || e2 != nil {
		return nil, nil, nil, 0, 0, fmt.Errorf("person %q: bad time zone", truncate(v, 80))
	}
	tz = int16(hh*60 + mm)
	if z[0] == '-' {
		tz = -tz
	}
	return ident, name, email, Time(sec * 1e9), tz, nil
}

// parseDecimal parses a base-10 int64 as strconv.ParseInt does, without
// converting b to a string for the common case of plain digits (every
// commit has four such numbers).
func parseDecimal(b []byte) (int64, error) {
	if n := len(b); n > 0 && n <= 18 {
		var v int64
		for _, c := range b {
			if c < '0' || c > '9' {
				return strconv.ParseInt(string(b), 10, 64)
			}
			v = v*10 + int64(c-'0')
		}
		return v, nil
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// lastIndexByte is bytes.LastIndexByte, eight bytes at a time: loading
// searches every commit's identities and the end of its message
// backwards, and the standard one compares a byte at a time.
func lastIndexByte(s []byte, c byte) int {
	const (
		low7 = 0x7f7f7f7f7f7f7f7f
		ones = 0x0101010101010101
	)
	i := len(s)
	for ; i >= 8; i -= 8 {
		w := binary.LittleEndian.Uint64(s[i-8:]) ^ ones*uint64(c)
		// The high bit of each byte of w that is zero: (b&0x7f)+0x7f
		// sets it in every byte with a low bit set, and never carries
		// into the next byte.
		if zero := ^((w&low7 + low7) | w | low7); zero != 0 {
			return i - 8 + (63-bits.LeadingZeros64(zero))/8
		}
	}
	for i--; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}
