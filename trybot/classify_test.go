package trybot_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot/client"
)

// TestGerritResultsAgainstBase: a failure that also fails at the base
// revision is reported as pre-existing (with trybot.preexisting_vote as
// the vote), and a job that fails once and passes when run again is
// reported as flaky (+1); both classifications reach the API.
func TestGerritResultsAgainstBase(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	builders := []config.Builder{
		// "pre" needs a file that neither the base nor the change has.
		{Name: "pre", TryBot: boolp(false), Steps: []config.Step{{Name: "needs-missing", Shell: "test -f missing.txt || { echo missing.txt is missing >&2; exit 1; }"}}},
		// "flaky" fails the first time it runs for a change (the
		// change's flaky.txt names it) and passes afterwards.
		{Name: "flaky", TryBot: boolp(false), Steps: []config.Step{{Name: "sometimes", Shell: `m="` + marks + `/$(cat flaky.txt)"; test -e "$m" || { touch "$m"; echo first run fails >&2; exit 1; }`}}},
	}
	s := startStack(t, trystack.Options{Builders: builders})
	opts := s.TrybotOptions(t.TempDir())
	opts.Log = testLogger(t)
	opts.Config.Trybot.PreexistingVote = 1
	tb := runTrybot(t, opts)
	ctx := t.Context()
	api, err := client.New(serveAPI(t, tb), nil)
	if err != nil {
		t.Fatal(err)
	}

	pre, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "pre-existing", map[string]string{"a.txt": "a\n"})
	if err != nil {
		t.Fatal(err)
	}
	flaky, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "flaky", map[string]string{"flaky.txt": filepath.Base(t.Name()) + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, pre, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "TRY=pre", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, flaky, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "TRY=flaky", ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		change  int
		vote    int8
		class   string
		message []string
		state   client.RunState
	}{
		{"pre-existing", pre, 1, client.ClassPreExisting, []string{"1 of 1 TryBots failed, with pre-existing failures only",
			"needs-missing [pre-existing]", "Pre-existing failures (fail at the base revision too): needs-missing",
			"This change adds no failures"}, client.StateFailed},
		{"flaky", flaky, 1, client.ClassFlaky, []string{"TryBots are happy: 1 of 1 passed (some failures were flaky",
			"sometimes [flaky]", "Flaky (passed when run again): sometimes"}, client.StateSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waitFor(t, "TryBot-Result", 90*time.Second, func() bool { return resultVote(s, tc.change, 1) != 0 })
			if v := resultVote(s, tc.change, 1); v != tc.vote {
				t.Errorf("TryBot-Result %+d, want %+d", v, tc.vote)
			}
			msgs := trybotMessages(s, tc.change, 1)
			if len(msgs) != 2 {
				t.Fatalf("messages %q, want beginning and result", msgs)
			}
			for _, m := range tc.message {
				if !strings.Contains(msgs[1], m) {
					t.Errorf("result message %q lacks %q", msgs[1], m)
				}
			}
			runs, err := api.Runs(ctx, client.ListOptions{Change: int32(tc.change)})
			if err != nil || len(runs) != 1 || len(runs[0].Builds) != 1 || len(runs[0].Builds[0].Failed) != 1 {
				t.Fatalf("runs %+v, %v", runs, err)
			}
			r := runs[0]
			if r.State != tc.state || r.Builds[0].State != client.BuildFailed || r.Builds[0].Failed[0].Classification != tc.class || r.Base == "" || r.Builds[0].ClassifyError != "" {
				t.Errorf("run %+v: want state %s, the build failed, its job %s and the base known", r, tc.state, tc.class)
			}
		})
	}
}

// TestGitHubPreExistingCheckRun: on GitHub, a builder whose only failure
// also fails at the pull request's base gets a neutral check run (with
// preexisting_vote 0) whose summary says the failure is pre-existing.
func TestGitHubPreExistingCheckRun(t *testing.T) {
	t.Parallel()
	builders := []config.Builder{{Name: "check", Steps: []config.Step{{Name: "needs-missing", Shell: "test -f missing.txt"}}}}
	s, gc := startGitHubTrybotWith(t, builders, true)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("pre", "Pre-existing", map[string]string{"a.txt": "a\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)
	waitFor(t, "the completed check run", 90*time.Second, func() bool { return checkRuns(t, gc, g, head)["tryd/check"] == "neutral" })
	res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head, nil)
	if err != nil || len(res.CheckRuns) != 1 {
		t.Fatalf("check runs %+v, %v", res, err)
	}
	out := res.CheckRuns[0].GetOutput()
	if !strings.Contains(out.GetTitle(), "Pre-existing failures only") || !strings.Contains(out.GetSummary(), "needs-missing [pre-existing]") ||
		!strings.Contains(out.GetSummary(), "Pre-existing failures (fail at the base revision too): needs-missing") {
		t.Errorf("check run output %q / %q: want the failure called pre-existing", out.GetTitle(), out.GetSummary())
	}
}
