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
