package postsubmit

import (
	"strings"
	"testing"
)

func TestParseLog(t *testing.T) {
	h1, h2 := strings.Repeat("a", 40), strings.Repeat("b", 40)
	tests := []struct {
		name    string
		in      string
		want    []string // hashes, oldest first
		wantErr bool
	}{
		{name: "empty", in: ""},
		{name: "two, newest first in", in: h2 + "\x00A <a@x>\x002026-01-01T00:01:00Z\x00second\x1e\n" + h1 + "\x00A <a@x>\x002026-01-01T00:00:00Z\x00first\x1e\n", want: []string{h1, h2}},
		{name: "subject with NUL-free oddities", in: h1 + "\x00A\x002026-01-01T00:00:00+02:00\x00x\ty\x1e", want: []string{h1}},
		{name: "short hash", in: "abc\x00A\x002026-01-01T00:00:00Z\x00s\x1e", wantErr: true},
		{name: "missing field", in: h1 + "\x00A\x00s\x1e", wantErr: true},
		{name: "bad time", in: h1 + "\x00A\x00yesterday\x00s\x1e", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := parseLog([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			var got []string
			for _, c := range cs {
				got = append(got, c.Hash)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseLog(f *testing.F) {
	f.Add(strings.Repeat("a", 40) + "\x00A <a@x>\x002026-01-01T00:00:00Z\x00s\x1e")
	f.Add("\x1e\x1e")
	f.Fuzz(func(t *testing.T, in string) {
		cs, err := parseLog([]byte(in))
		if err != nil {
			return
		}
		for _, c := range cs {
			if !hashRE.MatchString(c.Hash) {
				t.Fatalf("accepted hash %q", c.Hash)
			}
		}
	})
}

func TestClip(t *testing.T) {
	if got := clip("a\nb\x00c"); got != "a b c" {
		t.Errorf("clip = %q", got)
	}
	if got := clip(strings.Repeat("x", 300)); len(got) != 200 {
		t.Errorf("clip kept %d bytes", len(got))
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name     string
		classes  map[string]Classification
		vote0    int // with preexisting_vote 0
		voteNeg  int // with preexisting_vote -1
		onlyPre  bool
		contains []string
	}{
		{"new and pre-existing", map[string]Classification{"a": ClassNew, "b": ClassPreExisting}, -1, -1, false,
			[]string{"New failures (pass at the base revision): a", "Pre-existing failures (fail at the base revision too): b"}},
		{"only pre-existing", map[string]Classification{"b": ClassPreExisting, "c": ClassFlaky}, 0, -1, true,
			[]string{"Flaky (passed when run again): c", "adds no failures"}},
		{"only flaky", map[string]Classification{"c": ClassFlaky}, 1, 1, false, []string{"Flaky"}},
		{"unknown kind counts as new", map[string]Classification{"x": "weird"}, -1, -1, false, []string{"New failures"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Summarize(tc.classes)
			if got := v.Vote(0); got != tc.vote0 {
				t.Errorf("Vote(0) = %d, want %d", got, tc.vote0)
			}
			if got := v.Vote(-1); got != tc.voteNeg {
				t.Errorf("Vote(-1) = %d, want %d", got, tc.voteNeg)
			}
			if v.OnlyPreExisting() != tc.onlyPre {
				t.Errorf("OnlyPreExisting = %v", v.OnlyPreExisting())
			}
			msg := v.Message()
			for _, c := range tc.contains {
				if !strings.Contains(msg, c) {
					t.Errorf("message %q lacks %q", msg, c)
				}
			}
		})
	}
}
