package worker

import (
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
)

func TestPipelined(t *testing.T) {
	const dep, other = "1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"
	const digest = "3333333333333333333333333333333333333333333333333333333333333333"
	assignment := func() api.Assignment {
		return api.Assignment{AttemptID: "b", After: []string{"a"},
			Deps: []api.DepOutput{{JobID: dep}, {JobID: other, Digest: digest}}}
	}
	for _, tc := range []struct {
		name        string
		done        map[string]localResult
		live        bool
		start, drop bool
	}{
		{"dependency running", nil, true, false, false},
		{"dependency succeeded", map[string]localResult{"a": {ok: true, jobID: dep, digest: digest}}, false, true, false},
		{"dependency failed", map[string]localResult{"a": {ok: false, jobID: dep}}, false, false, true},
		{"dependency unknown", nil, false, false, true},
		{"result of another job", map[string]localResult{"a": {ok: true, jobID: other, digest: digest}}, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := assignment()
			start, drop := pipelined(&a, tc.done, func(string) bool { return tc.live })
			if start != tc.start || drop != tc.drop {
				t.Fatalf("start %v drop %v, want %v %v", start, drop, tc.start, tc.drop)
			}
			if start && (a.After != nil || a.Deps[0].Digest != digest || a.Deps[1].Digest != digest) {
				t.Fatalf("started assignment: %+v", a)
			}
			if !start && a.Deps[0].Digest != "" {
				t.Fatalf("assignment changed without starting: %+v", a)
			}
		})
	}
}
