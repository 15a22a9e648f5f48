package postsubmit

import (
	"strings"
	"testing"
)

func TestDecodeForce(t *testing.T) {
	rev := strings.Repeat("c", 40)
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"good", `{"repo":"r","revision":"` + rev + `","builder":"b"}`, true},
		{"with branch", `{"repo":"r","revision":"` + rev + `","builder":"b","branch":"main"}`, true},
		{"unknown field", `{"repo":"r","revision":"` + rev + `","builder":"b","x":1}`, false},
		{"missing builder", `{"repo":"r","revision":"` + rev + `"}`, false},
		{"short revision", `{"repo":"r","revision":"abc","builder":"b"}`, false},
		{"trailing", `{"repo":"r","revision":"` + rev + `","builder":"b"} {}`, false},
		{"not json", `repo=r`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeForce(strings.NewReader(tc.in))
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func FuzzDecodeForce(f *testing.F) {
	f.Add(`{"repo":"r","revision":"` + strings.Repeat("c", 40) + `","builder":"b"}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, in string) {
		req, err := DecodeForce(strings.NewReader(in))
		if err == nil && (!hashRE.MatchString(req.Revision) || req.Repo == "" || req.Builder == "") {
			t.Fatalf("accepted %+v", req)
		}
	})
}
