package trybot

import (
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/trybot/client"
)

func TestSummaryAndOutcome(t *testing.T) {
	tb := &Trybot{public: "https://tryd.example", builders: &Builders{names: []string{"a", "b"}}, preexistingVote: 1}
	for _, tc := range []struct {
		name   string
		run    client.Run
		state  client.RunState
		substr []string
	}{
		{"no builders", client.Run{Repo: "r", Branch: "main"}, client.StateInfra, []string{"No TryBots build r (branch main), so nothing ran."}},
		{"all pass", client.Run{ID: 3, Builds: []client.Build{{Builder: "a", State: client.BuildSucceeded, DurationMS: 1500}}}, client.StateSucceeded,
			[]string{"TryBots are happy: 1 of 1 passed.", "Passed: a (1.5s)", "https://tryd.example/try/3"}},
		{"failure wins over infra", client.Run{Builds: []client.Build{
			{Builder: "a", State: client.BuildFailed, Failed: []client.FailedJob{{Name: "test", Error: "exit status 1\nmore", LogURL: "https://l/1"}, {Name: "lost", Infra: true}}},
			{Builder: "b", State: client.BuildInfra, Error: "worker lost"}}}, client.StateFailed,
			[]string{"1 of 2 TryBots failed.", "Failed on a", "  test: exit status 1\n    https://l/1", "Infrastructure failure on b: worker lost"}},
		{"pre-existing only", client.Run{Builds: []client.Build{
			{Builder: "a", State: client.BuildFailed, Failed: []client.FailedJob{{Name: "vet ./x", Classification: client.ClassPreExisting}, {Name: "test ./y", Classification: client.ClassFlaky}}}}}, client.StateFailed,
			[]string{"1 of 1 TryBots failed, with pre-existing failures only", "  vet ./x [pre-existing]", "Pre-existing failures (fail at the base revision too): vet ./x", "Flaky (passed when run again): test ./y"}},
		{"flaky only", client.Run{Builds: []client.Build{
			{Builder: "a", State: client.BuildFailed, Failed: []client.FailedJob{{Name: "test ./y", Classification: client.ClassFlaky}}}}}, client.StateSucceeded,
			[]string{"TryBots are happy: 1 of 1 passed (some failures were flaky", "Flaky (passed when run again): test ./y"}},
		{"flaky and infra", client.Run{Builds: []client.Build{
			{Builder: "a", State: client.BuildFailed, Failed: []client.FailedJob{{Name: "test ./y", Classification: client.ClassFlaky}}},
			{Builder: "b", State: client.BuildInfra, Error: "no worker"}}}, client.StateInfra,
			[]string{"TryBots could not finish: 1 of 2 builders", "Flaky (passed when run again): test ./y", "Infrastructure failure on b"}},
		{"infra only", client.Run{Builds: []client.Build{{Builder: "b", State: client.BuildInfra, Error: "no worker"}}, Unknown: []string{"zz"}}, client.StateInfra,
			[]string{"not the change's fault", "Not run (unknown builders): zz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := outcome(&tc.run); got != tc.state {
				t.Errorf("outcome %s, want %s", got, tc.state)
			}
			s := tb.summary(&tc.run)
			wantVote := map[client.RunState]int{client.StateSucceeded: 1, client.StateFailed: -1}[tc.state]
			if tc.name == "pre-existing only" {
				wantVote = tb.preexistingVote
			}
			if v := tb.vote(&tc.run); v != wantVote {
				t.Errorf("vote %+d, want %+d", v, wantVote)
			}
			for _, sub := range tc.substr {
				if !strings.Contains(s, sub) {
					t.Errorf("summary %q lacks %q", s, sub)
				}
			}
			if strings.Contains(s, "lost") && tc.name == "failure wins over infra" && strings.Contains(s, "  lost") {
				t.Errorf("summary %q blames the change for an infrastructure job", s)
			}
		})
	}
}
