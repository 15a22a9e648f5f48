package goplan

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/gitexec"
)

const (
	oidA = "8ab686eafeb1f44702738c8b0f24f2567c36da6d"
	oidB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
)

func TestParseLsTree(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    map[string]blob
		wantErr string
	}{
		{"empty", "", map[string]blob{}, ""},
		{"files, link, exec", "100644 blob " + oidA + "\ta.go\x00100755 blob " + oidB + "\tbin/x y\x00120000 blob " + oidA + "\tl\x00",
			map[string]blob{"a.go": {oid: oidA}, "bin/x y": {oid: oidB}, "l": {link: true, oid: oidA}}, ""},
		{"sha256 repository", "100644 blob " + strings.Repeat("ab", 32) + "\ta\x00",
			map[string]blob{"a": {oid: strings.Repeat("ab", 32)}}, ""},
		{"submodule left out", "160000 commit " + oidA + "\tsub\x00100644 blob " + oidB + "\ta\x00",
			map[string]blob{"a": {oid: oidB}}, ""},
		{"unterminated", "100644 blob " + oidA + "\ta.go", nil, "unterminated"},
		{"no tab", "100644 blob " + oidA + " a.go\x00", nil, "bad entry"},
		{"bad object", "100644 blob XYZ\ta\x00", nil, "bad entry"},
		{"upper-case object", "100644 blob " + strings.ToUpper(oidA) + "\ta\x00", nil, "bad entry"},
		{"empty path", "100644 blob " + oidA + "\t\x00", nil, "bad entry"},
		{"too many fields", "100644 blob x " + oidA + "\ta\x00", nil, "bad entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLsTree([]byte(tc.out))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzParseLsTree: any output gives blobs with valid object IDs and
// non-empty paths, or an error; never a panic.
func FuzzParseLsTree(f *testing.F) {
	f.Add([]byte("100644 blob " + oidA + "\ta.go\x00120000 blob " + oidB + "\tl\x00"))
	f.Add([]byte("160000 commit " + oidA + "\tsub\x00"))
	f.Add([]byte("100644 blob " + oidA + "\ta"))
	f.Add([]byte("\x00\t\x00"))
	f.Fuzz(func(t *testing.T, out []byte) {
		m, err := parseLsTree(out)
		if err != nil {
			return
		}
		for p, b := range m {
			if p == "" || !gitexec.IsObjectID(b.oid) {
				t.Fatalf("entry %q: %+v", p, b)
			}
		}
	})
}
