package coordinator

import (
	"strings"
	"testing"
)

func TestParseWorkerTokens(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{"ok", "# comment\n\nw1 aaaaaaaaaaaaaaaa1\nw2   bbbbbbbbbbbbbbbb2  \n", map[string]string{"w1": "aaaaaaaaaaaaaaaa1", "w2": "bbbbbbbbbbbbbbbb2"}, ""},
		{"missing token", "w1\n", nil, "line 1: want"},
		{"short token", "w1 short\n", nil, "line 1: token of w1 shorter"},
		{"bad name", "../w aaaaaaaaaaaaaaaa1\n", nil, "line 1: bad worker name"},
		{"duplicate", "w1 aaaaaaaaaaaaaaaa1\nw1 bbbbbbbbbbbbbbbb2\n", nil, "line 2: worker w1 listed twice"},
		{"shared token", "w1 aaaaaaaaaaaaaaaa1\nw2 aaaaaaaaaaaaaaaa1\n", nil, "line 2: token of w2 reused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWorkerTokens(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "aaaaaaaaaaaaaaaa1") || strings.Contains(err.Error(), "bbbbbbbbbbbbbbbb2") {
					t.Errorf("error reveals a token: %v", err)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) || got["w1"] != tt.want["w1"] || got["w2"] != tt.want["w2"] {
				t.Errorf("got %v, %v", got, err)
			}
		})
	}
}

func FuzzParseWorkerTokens(f *testing.F) {
	f.Add("w1 aaaaaaaaaaaaaaaa1\n# c\nw2 bbbbbbbbbbbbbbbb2")
	f.Add("w1\tshort")
	f.Add("\x00 \xff\n")
	f.Fuzz(func(t *testing.T, in string) {
		toks, err := ParseWorkerTokens(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, tok := range toks {
			if !workerNameRE.MatchString(name) || len(tok) < 16 || strings.ContainsAny(tok, " \t\n") {
				t.Fatalf("accepted bad entry %q", name)
			}
		}
	})
}
