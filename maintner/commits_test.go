package maintner

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

func TestCommitTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		// hash makes the i-th hash.
		hash func(i int) GitHash
	}{
		{name: "empty", n: 0, hash: nil},
		{name: "one", n: 1, hash: func(i int) GitHash { return sha1.Sum([]byte{byte(i)}) }},
		{name: "many real hashes", n: 5000, hash: func(i int) GitHash {
			return sha1.Sum(binary.LittleEndian.AppendUint32(nil, uint32(i)))
		}},
		// Hashes that agree in the bytes the table indexes by and
		// keeps in its slots: every one lands in the same run of
		// slots, and lookups must still tell them apart.
		{name: "same key bytes", n: 300, hash: func(i int) GitHash {
			var h GitHash
			binary.BigEndian.PutUint32(h[16:], uint32(i))
			return h
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tab commitTable
			if tab.Get(GitHash{1}) != nil {
				t.Fatal("empty table finds a commit")
			}
			commits := make([]*GitCommit, tc.n)
			for i := range commits {
				commits[i] = &GitCommit{Hash: tc.hash(i)}
				s := tab.Slot(&commits[i].Hash)
				if s.c != nil {
					t.Fatalf("commit %d found before it was added", i)
				}
				tab.Fill(s, commits[i])
				if tab.Len() != i+1 {
					t.Fatalf("Len = %d after %d commits", tab.Len(), i+1)
				}
			}
			for i, c := range commits {
				if got := tab.Get(c.Hash); got != c {
					t.Fatalf("Get(commit %d) = %p, want %p", i, got, c)
				}
				if s := tab.Slot(&c.Hash); s.c != c {
					t.Fatalf("Slot(commit %d) holds %p, want %p", i, s.c, c)
				}
			}
			if tab.Get(GitHash{0xff, 1, 2, 3}) != nil {
				t.Error("found a hash never added")
			}
			// Put replaces and does not count twice.
			for i, c := range commits {
				repl := &GitCommit{Hash: c.Hash, Subject: "replaced"}
				tab.Put(repl)
				if tab.Get(c.Hash) != repl || tab.Len() != tc.n {
					t.Fatalf("Put(commit %d): Get = %p (want %p), Len = %d (want %d)", i, tab.Get(c.Hash), repl, tab.Len(), tc.n)
				}
			}
			tab.Put(&GitCommit{Hash: GitHash{0xee}})
			if tab.Len() != tc.n+1 || tab.Get(GitHash{0xee}) == nil {
				t.Errorf("Put of a new hash: Len = %d, want %d", tab.Len(), tc.n+1)
			}
		})
	}
}

func TestParseGitHash(t *testing.T) {
	const good = "0123456789abcdefABCDEF0123456789abcdef01"
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"lower and upper case", good, true},
		{"all zero", "0000000000000000000000000000000000000000", true},
		{"short", good[:39], false},
		{"long", good + "0", false},
		{"empty", "", false},
		{"g at start", "g" + good[1:], false},
		{"space at end", good[:39] + " ", false},
		{"high byte in the middle", good[:20] + "\xff" + good[21:], false},
		{"colon (just after 9)", good[:10] + ":" + good[11:], false},
		{"slash (just before 0)", "/" + good[1:], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseGitHash(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseGitHash(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && h.String() != strings.ToLower(tc.in) {
				t.Errorf("ParseGitHash(%q) = %s", tc.in, h)
			}
			if !tc.ok && h != (GitHash{}) {
				t.Errorf("ParseGitHash(%q) failed but returned %s", tc.in, h)
			}
		})
	}
}

// TestParseGitHashEveryByte puts every byte value at every position of
// a valid hash and checks the result against encoding/hex, which the
// fuzzer, starting from random strings, rarely gets near: the bytes
// next to the digit ranges ('/', ':', '@', 'G', '`', 'g') are the ones
// a faster check gets wrong.
func TestParseGitHashEveryByte(t *testing.T) {
	for _, base := range []string{"0123456789abcdefABCDEF0123456789abcdef01", "ffffffffffffffffffffffffffffffffffffffff", "0000000000000000000000000000000000000000"} {
		for pos := range 40 {
			for c := range 256 {
				in := []byte(base)
				in[pos] = byte(c)
				h, err := parseGitHash(in)
				want, werr := hex.DecodeString(string(in))
				if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(h[:], want) {
					t.Fatalf("parseGitHash(%q) = %x, %v; encoding/hex %x, %v", in, h, err, want, werr)
				}
			}
		}
	}
}

// FuzzParseGitHash checks the table-driven hex decoding against
// encoding/hex.
func FuzzParseGitHash(f *testing.F) {
	f.Add("0123456789abcdefABCDEF0123456789abcdef01")
	f.Add("0123456789abcdefABCDEF0123456789abcdef0g")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseGitHash(s)
		want, werr := hex.DecodeString(s)
		if wantOK := werr == nil && len(s) == 40; (err == nil) != wantOK {
			t.Fatalf("ParseGitHash(%q) error %v, encoding/hex error %v", s, err, werr)
		}
		if err == nil && !bytes.Equal(h[:], want) {
			t.Fatalf("ParseGitHash(%q) = %x, encoding/hex %x", s, h, want)
		}
	})
}
