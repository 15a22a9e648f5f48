package worker

import (
	"slices"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// TestRelease: a release request drops the prefetched assignments it
// names that the worker holds unstarted (they are answered released);
// it leaves alone those the worker started (not in the backlog: their
// starts answer the request), those it never had, and assignments
// that are not prefetched.
func TestRelease(t *testing.T) {
	backlog := func() []api.Assignment {
		return []api.Assignment{
			{AttemptID: "run"}, // not prefetched
			{AttemptID: "held1", Prefetched: true},
			{AttemptID: "held2", Prefetched: true},
			{AttemptID: "piped", After: []string{"x"}},
		}
	}
	for _, tc := range []struct {
		name     string
		ids      []string
		kept     []string
		released []string
	}{
		{"unstarted", []string{"held2"}, []string{"run", "held1", "piped"}, []string{"held2"}},
		{"several", []string{"held1", "held2"}, []string{"run", "piped"}, []string{"held1", "held2"}},
		{"started", []string{"started"}, []string{"run", "held1", "held2", "piped"}, nil},
		{"unknown", []string{"gone"}, []string{"run", "held1", "held2", "piped"}, nil},
		{"not prefetched", []string{"run", "piped"}, []string{"run", "held1", "held2", "piped"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept, released := release(backlog(), tc.ids)
			var keptIDs []string
			for _, a := range kept {
				keptIDs = append(keptIDs, a.AttemptID)
			}
			if !slices.Equal(keptIDs, tc.kept) || !slices.Equal(released, tc.released) {
				t.Fatalf("release(%v): kept %v, released %v; want %v, %v", tc.ids, keptIDs, released, tc.kept, tc.released)
			}
		})
	}
}
