package jsonshape

import (
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	tests := []struct {
		name      string
		want, got string
		opts      Options
		mismatch  []string // expected "path: ..." prefixes, in order
	}{
		{"same", `{"a":1,"b":{"c":"x"}}`, `{"a":2,"b":{"c":"y"}}`, Options{}, nil},
		{"missing key", `{"a":1,"b":2}`, `{"a":1}`, Options{}, []string{"b: missing"}},
		{"wrong type", `{"a":1}`, `{"a":"1"}`, Options{}, []string{"a: type string, want number"}},
		{"extra key", `{"a":1}`, `{"a":1,"z":true}`, Options{}, []string{"z: unexpected key"}},
		{"extra allowed", `{"a":1}`, `{"a":1,"z":true}`, Options{AllowExtra: true}, nil},
		{"null matches anything", `{"a":null,"b":"s"}`, `{"a":{"x":1},"b":null}`, Options{}, nil},
		{"nested array of objects", `{"l":[{"n":"x"},{"n":"y","c":"red"}]}`, `{"l":[{"n":"x","c":5}]}`, Options{}, []string{"l[].c: type number, want string"}},
		{"ignored subtree", `{"a":{"b":1}}`, `{"a":{"b":"x"}}`, Options{Ignore: []string{"a"}}, nil},
		{"top-level type", `[]`, `{}`, Options{}, []string{"$: type object, want array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Compare([]byte(tt.want), []byte(tt.got), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.mismatch) {
				t.Fatalf("mismatches = %v, want %v", got, tt.mismatch)
			}
			for i, m := range got {
				if !strings.HasPrefix(m.String(), tt.mismatch[i]) {
					t.Errorf("mismatch %d = %q, want prefix %q", i, m, tt.mismatch[i])
				}
			}
		})
	}
	if _, err := Compare([]byte(`{`), []byte(`{}`), Options{}); err == nil {
		t.Error("malformed JSON accepted")
	}
}
