package api

import "testing"

func TestAttemptStateCharged(t *testing.T) {
	for _, tc := range []struct {
		state AttemptState
		want  bool
	}{
		{AttemptRunning, true},
		{AttemptSucceeded, true},
		{AttemptFailed, true},
		{AttemptTimedOut, true},
		{AttemptLost, true},
		{AttemptError, true},
		{AttemptCancelled, true},
		{AttemptAbandoned, false},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			if got := tc.state.Charged(); got != tc.want {
				t.Errorf("%s.Charged() = %v, want %v", tc.state, got, tc.want)
			}
		})
	}
}

func TestLatestAttempt(t *testing.T) {
	at := func(id string, st AttemptState) Attempt { return Attempt{ID: id, State: st} }
	for _, tc := range []struct {
		name string
		atts []Attempt
		want string // "" for nil
	}{
		{"none", nil, ""},
		{"one", []Attempt{at("a", AttemptFailed)}, "a"},
		{"last", []Attempt{at("a", AttemptLost), at("b", AttemptFailed)}, "b"},
		{"abandoned run after the deciding one", []Attempt{at("a", AttemptLost), at("b", AttemptFailed), at("c", AttemptAbandoned)}, "b"},
		{"only abandoned", []Attempt{at("a", AttemptAbandoned), at("b", AttemptAbandoned)}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LatestAttempt(tc.atts)
			switch {
			case tc.want == "" && got != nil:
				t.Errorf("LatestAttempt = %+v, want nil", got)
			case tc.want != "" && (got == nil || got.ID != tc.want):
				t.Errorf("LatestAttempt = %+v, want %s", got, tc.want)
			}
		})
	}
}
