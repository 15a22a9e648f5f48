package maintner

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestParseChangeRef(t *testing.T) {
	for _, tc := range []struct {
		ref    string
		cl, ps int32
		ok     bool
	}{
		{"refs/changes/45/12345/meta", 12345, 0, true},
		{"refs/changes/45/12345/3", 12345, 3, true},
		{"refs/changes/07/7/1", 7, 1, true},
		{"refs/changes/00/100/meta", 100, 0, true},
		{"refs/changes/46/12345/meta", 0, 0, false}, // wrong shard
		{"refs/changes/5/5/1", 0, 0, false},
		{"refs/changes/45/12345/0", 0, 0, false},
		{"refs/changes/45/12345/03", 0, 0, false},
		{"refs/changes/45/012345/1", 0, 0, false},
		{"refs/changes/45/12345/robot-comments", 0, 0, false},
		{"refs/changes/45/12345", 0, 0, false},
		{"refs/changes/45/99999999999/1", 0, 0, false},
		{"refs/heads/main", 0, 0, false},
		{"", 0, 0, false},
	} {
		cl, ps, ok := parseChangeRef([]byte(tc.ref))
		if cl != tc.cl || ps != tc.ps || ok != tc.ok {
			t.Errorf("parseChangeRef(%q) = %d, %d, %v; want %d, %d, %v", tc.ref, cl, ps, ok, tc.cl, tc.ps, tc.ok)
		}
	}
}

func TestParseRawCommit(t *testing.T) {
	raw := "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
		"parent 1111111111111111111111111111111111111111\n" +
		"parent 2222222222222222222222222222222222222222\n" +
		"author Gerrit User 5 <5@abc> 1700000000 +0130\n" +
		"committer Gerrit Code Review <gerrit@example.com> 1700000060 -0700\n" +
		"gpgsig -----BEGIN-----\n -----END-----\n" +
		"\nUpdate patch set 1\n\nPatch-set: 1\n"
	var c rawCommit
	if err := parseRawCommit([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.parents) != 2 || string(c.authorName) != "Gerrit User 5" || string(c.authorEmail) != "5@abc" || string(c.authorIdent) != "Gerrit User 5 <5@abc>" ||
		c.authorTZ != 90 || c.committerTZ != -420 || c.committerTime != Time(1700000060e9) || string(c.msg) != "Update patch set 1\n\nPatch-set: 1\n" {
		t.Errorf("parsed %+v", c)
	}
	if !isMetaCommit(c.msg) {
		t.Error("not recognized as a meta commit")
	}
	for name, bad := range map[string]string{
		"no blank line": "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n",
		"no author":     "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ncommitter a <b> 1 +0000\n\nmsg",
		"bad tree":      "tree xyz\nauthor a <b> 1 +0000\ncommitter a <b> 1 +0000\n\nmsg",
		"bad time":      "author a <b> x +0000\ncommitter a <b> 1 +0000\n\nmsg",
		"bad zone":      "author a <b> 1 0000\ncommitter a <b> 1 +0000\n\nmsg",
		"no email":      "author a b 1 +0000\ncommitter a <b> 1 +0000\n\nmsg",
	} {
		if err := parseRawCommit([]byte(bad), &rawCommit{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// parseRawCommitTwoPass is the definition parseRawCommit implements:
// find the first "\n\n", then parse the header lines before it.
func parseRawCommitTwoPass(raw []byte, c *rawCommit) error {
	i := bytes.Index(raw, []byte("\n\n"))
	if i < 0 {
		return errNoHeaderEnd
	}
	c.msg = raw[i+2:]
	for line := range bytes.Lines(raw[:i+1]) {
		if err := parseHeaderLine(bytes.TrimSuffix(line, []byte("\n")), c); err != nil {
			return err
		}
	}
	if !c.hasAuthor || !c.hasComm {
		return errors.New("missing author or committer line")
	}
	return nil
}

// FuzzParseRawCommit checks parseRawCommit, which finds the end of the
// header while it walks the header lines, against the two-pass
// definition: the same commits accepted, parsed the same.
func FuzzParseRawCommit(f *testing.F) {
	const ok = "author a <b> 1 +0000\ncommitter a <b> 1 +0000\n"
	for _, s := range []string{
		"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 1111111111111111111111111111111111111111\n" + ok + "gpgsig x\n y\n\nmsg\n\nbody\n",
		"\n" + ok + "\nmsg", // a newline first is an empty header line
		"\n\n" + ok,         // ... unless a blank line follows it
		ok + "\n",
		ok,
		"tree xyz\n" + ok + "\nmsg",
		ok + "x\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var got, want rawCommit
		err := parseRawCommit([]byte(raw), &got)
		werr := parseRawCommitTwoPass([]byte(raw), &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("parseRawCommit(%q) error %v, two passes %v", raw, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("parseRawCommit(%q) = %+v, two passes %+v", raw, got, want)
		}
	})
}

// FuzzFieldIter checks fieldIter's fast path against protowire's general
// decoding: the same fields, values and error for any input (field
// numbers above protowire.MaxValidNumber being errors, as they are to
// proto.Unmarshal).
func FuzzFieldIter(f *testing.F) {
	for _, seed := range [][]byte{
		{0x08, 0x01, 0x12, 0x02, 'h', 'i'},
		{0x12, 0x05, 'h'},                    // truncated bytes
		{0x00, 0x01},                         // field number 0
		{0x08, 0x96, 0x01},                   // two-byte varint
		{0x08, 0x80, 0xe1, 0xeb, 0x97, 0x06}, // five-byte varint (a time in seconds)
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // ten-byte varint
		{0x08, 0x96},            // truncated varint
		{0xa2, 0x06, 0x01, 'x'}, // field 100
		{0x0d, 1, 2, 3, 4, 0x0b, 0x0c},
		{0x80, 0xff, 0xff, 0xff, 0x30, 0x00}, // field number above 2^29-1
		{0x12, 0x81, 0x01, 'x'},              // two-byte length, truncated
		{0x12, 0x80, 0x00},                   // two-byte length 0 (overlong)
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		type got struct {
			num protowire.Number
			typ protowire.Type
			x   uint64
			b   string
		}
		var fast []got
		var fl field
		it := fieldIter{b: b}
		for it.next(&fl) {
			fast = append(fast, got{fl.num, fl.typ, fl.x, string(fl.b)})
		}
		var slow []got
		var slowErr bool
		for rest := b; len(rest) > 0; {
			num, typ, n := protowire.ConsumeTag(rest)
			if n < 0 || num > protowire.MaxValidNumber {
				slowErr = true
				break
			}
			rest = rest[n:]
			g := got{num: num, typ: typ}
			switch typ {
			case protowire.VarintType:
				g.x, n = protowire.ConsumeVarint(rest)
			case protowire.Fixed32Type:
				var v uint32
				v, n = protowire.ConsumeFixed32(rest)
				g.x = uint64(v)
			case protowire.Fixed64Type:
				g.x, n = protowire.ConsumeFixed64(rest)
			case protowire.BytesType:
				var v []byte
				v, n = protowire.ConsumeBytes(rest)
				g.b = string(v)
			default:
				n = protowire.ConsumeFieldValue(num, typ, rest)
			}
			if n < 0 {
				slowErr = true
				break
			}
			rest = rest[n:]
			slow = append(slow, g)
		}
		if (it.err != nil) != slowErr || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fieldIter: %v (err %v), protowire: %v (err %v)", fast, it.err, slow, slowErr)
		}
	})
}

// FuzzParseDecimal checks the digits-only fast path against
// strconv.ParseInt, which it must agree with on every input.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"1700000000", "0", "+5", "-07", "999999999999999999", "9999999999999999999", "", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseDecimal([]byte(s))
		want, werr := strconv.ParseInt(s, 10, 64)
		if got != want || (err == nil) != (werr == nil) {
			t.Fatalf("parseDecimal(%q) = %d, %v; strconv.ParseInt %d, %v", s, got, err, want, werr)
		}
	})
}

// isMetaCommitLines is the definition isMetaCommit implements: walking
// the lines of the last paragraph backwards.
func isMetaCommitLines(msg []byte) bool {
	lines := strings.Split(strings.TrimRight(string(msg), "\n"), "\n")
	found := false
	// The first line is the subject: even empty, it is not the blank
	// line that starts the footer paragraph.
	for i := len(lines) - 1; i > 0; i-- {
		if lines[i] == "" {
			return found
		}
		if strings.HasPrefix(lines[i], "Patch-set: ") {
			found = true
		}
	}
	return false // no blank line: the whole message is one paragraph
}

func TestIsMetaCommit(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      bool
	}{
		{"meta", "Update patch set 1\n\nPatch Set 1: Code-Review+2\n\nPatch-set: 1\nLabel: Code-Review=+2\n", true},
		{"footer first in paragraph", "Update\n\nPatch-set: 3", true},
		{"footer in an earlier paragraph", "Update\n\nPatch-set: 3\n\nChange-Id: I1\n", false},
		{"one paragraph", "Patch-set: 1\n", false},
		{"patch set commit", "net/http: fix\n\nBody.\n\nChange-Id: I0123\n", false},
		{"blank lines run", "a\n\n\nPatch-set: 1\n\n\n", true},
		{"leading blank line", "\n\nPatch-set: 1", true},
		{"footer not at line start", "a\n\nx Patch-set: 1", false},
		{"empty", "", false},
		{"empty subject line", "\nPatch-set: 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isMetaCommit([]byte(tc.msg)); got != tc.want {
				t.Errorf("isMetaCommit(%q) = %v, want %v", tc.msg, got, tc.want)
			}
			if ref := isMetaCommitLines([]byte(tc.msg)); ref != tc.want {
				t.Errorf("reference says %v for %q: the case is wrong", ref, tc.msg)
			}
		})
	}
}

func FuzzIsMetaCommit(f *testing.F) {
	for _, s := range []string{"a\n\nPatch-set: 1\n", "a\n\n\n", "Patch-set: 1", "a\n\nb\nPatch-set: 2\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		if got, want := isMetaCommit([]byte(msg)), isMetaCommitLines([]byte(msg)); got != want {
			t.Fatalf("isMetaCommit(%q) = %v, walking lines says %v", msg, got, want)
		}
	})
}

// TestLastIndexByte checks lastIndexByte against bytes.LastIndexByte
// with the byte sought at every position of inputs of every length up
// to three words, among bytes that differ from it in one bit (a carry
// or borrow between lanes would show there) and bytes with the high bit
// set.
func TestLastIndexByte(t *testing.T) {
	for _, c := range []byte{'\n', '<', 0x00, 0x80, 0xff} {
		for n := 0; n <= 24; n++ {
			for _, fill := range []byte{c ^ 1, c ^ 0x80, c ^ 0x40, 0xff, 0x00} {
				if fill == c {
					continue
				}
				s := bytes.Repeat([]byte{fill}, n)
				check := func() {
					t.Helper()
					if got, want := lastIndexByte(s, c), bytes.LastIndexByte(s, c); got != want {
						t.Fatalf("lastIndexByte(%q, %q) = %d, want %d", s, c, got, want)
					}
				}
				check()
				for i := range s {
					s[i] = c
					check()
					for j := i + 1; j < n; j++ {
						s[j] = c
						check()
						s[j] = fill
					}
					s[i] = fill
				}
			}
		}
	}
}

func FuzzLastIndexByte(f *testing.F) {
	f.Add([]byte("Gerrit User 5 <5@abc> 1700000000 +0130"), byte('<'))
	f.Add([]byte("a\n\nb\nPatch-set: 1"), byte('\n'))
	f.Fuzz(func(t *testing.T, s []byte, c byte) {
		if got, want := lastIndexByte(s, c), bytes.LastIndexByte(s, c); got != want {
			t.Fatalf("lastIndexByte(%q, %q) = %d, want %d", s, c, got, want)
		}
	})
}
