package trybot

import (
	"fmt"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/trybot/client"
)

// TestGitHubListingsPaged checks that what the trybot reads from GitHub
// lists finds items past the first page of 100: a refusal's marker
// comment among 150 comments, the latest labeled event among more than
// 100 issue events, and a run's check run among 250 of the same name on
// a commit (in the middle: on the second page whichever way GitHub
// orders them).
func TestGitHubListingsPaged(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	sim, _ := simWithRepos(t, "o/r")
	for _, login := range []string{"wendy", "walt"} {
		_, err := sim.AddUser(login, githubsim.PermWrite)
		fatalIf(t, err)
	}
	n, err := sim.OpenPR(ctx, "o/r", "wendy", githubsim.PROptions{Head: "feature", Title: "Add a", Files: map[string]string{"a.txt": "a\n"}})
	fatalIf(t, err)
	tb := newGitHubTrybot(t, sim, false, "", "o/r")
	ri := tb.repo("r")
	g := ri.github

	const marker = "<!-- tryd:test-marker -->"
	for i := range 150 {
		body := fmt.Sprintf("comment %d", i)
		if i == 149 {
			body += "\n\n" + marker
		}
		_, err := sim.Comment(ctx, "o/r", n, "walt", body)
		fatalIf(t, err)
	}
	for _, tc := range []struct {
		marker string
		want   bool
	}{{marker, true}, {"<!-- tryd:absent -->", false}} {
		if found, err := g.hasComment(ctx, ri, int32(n), tc.marker); err != nil || found != tc.want {
			t.Errorf("hasComment(%q) among 150 comments = %v, %v; want %v", tc.marker, found, err, tc.want)
		}
	}

	for range 60 {
		fatalIf(t, sim.AddLabel(ctx, "o/r", n, "walt", "run-trybot"))
		fatalIf(t, sim.RemoveLabel(ctx, "o/r", n, "walt", "run-trybot"))
	}
	fatalIf(t, sim.AddLabel(ctx, "o/r", n, "wendy", "run-trybot"))
	login, id, err := g.labelActor(ctx, ri, int32(n), "run-trybot")
	evs, _, lerr := g.c.Issues.ListIssueEvents(ctx, "o", "r", n, &github.ListOptions{PerPage: 100, Page: 2})
	fatalIf(t, lerr)
	if err != nil || login != "wendy" || len(evs) == 0 || id != evs[len(evs)-1].GetID() {
		t.Errorf("labelActor after 121 label events = %s, %d, %v; want wendy and the last event", login, id, err)
	}

	pr, _, err := g.c.PullRequests.Get(ctx, "o", "r", n)
	fatalIf(t, err)
	head := pr.GetHead().GetSHA()
	run := &client.Run{ID: 7, Change: int32(n), Revision: head}
	for i := range 250 {
		ext := fmt.Sprintf("tryd-run-%d/linux", 1000+i)
		if i == 125 {
			ext = externalID(run, "linux")
		}
		_, _, err := g.c.Checks.CreateCheckRun(ctx, "o", "r", github.CreateCheckRunOptions{Name: checkName("linux"), HeadSHA: head,
			ExternalID: github.String(ext), Status: github.String("completed"), Conclusion: github.String("success")})
		fatalIf(t, err)
	}
	rep := &githubReporter{t: tb, ri: ri}
	if cr, err := rep.checkRun(ctx, run, "linux"); err != nil || cr.GetExternalID() != externalID(run, "linux") {
		t.Errorf("checkRun among 250 = %v, %v; want the run's", cr.GetExternalID(), err)
	}
}
