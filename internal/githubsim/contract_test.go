package githubsim

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/jsonshape"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// contractIgnore lists top-level fields real deliveries carry that the
// simulator's repository-hook deliveries do not, each with the reason.
var contractIgnore = []string{
	// Only in deliveries to a GitHub App; the simulator's app hooks carry
	// it (TestAppDeliveryHasInstallation), repository hooks do not.
	"installation",
	// Only for repositories owned by an organization, which the fixtures'
	// sample repositories sometimes are; tryd reads the owner from
	// repository.owner.
	"organization",
}

// scenario drives the simulator through every webhook kind the contract
// covers and returns the repository hook's receiver.
func scenario(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ms, err := s.CreateMilestone(w.repo, "v1", "first release")
	check(err)
	// Pull request: opened, synchronize, labeled, unlabeled, closed,
	// reopened, merged; comments on it.
	n, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "feature", Title: "Add feature", Body: "Please review.", Files: map[string]string{"feature.go": "package hello\n"}})
	check(err)
	check(s.SetMilestone(w.repo, n, ms, "wendy"))
	_, err = s.PushToPR(ctx, w.repo, n, map[string]string{"feature.go": "package hello\n\nfunc F() {}\n", "README.md": "changed\n"})
	check(err)
	check(s.AddLabel(ctx, w.repo, n, "wendy", "run-trybot"))
	check(s.AddLabel(ctx, w.repo, n, "wendy", "keep"))
	check(s.RemoveLabel(ctx, w.repo, n, "wendy", "run-trybot"))
	_, err = s.Comment(ctx, w.repo, n, "wendy", "/trybot")
	check(err)
	_, err = s.AddReview(ctx, w.repo, n, "wendy", "APPROVED", "LGTM")
	check(err)
	check(s.ClosePR(ctx, w.repo, n, "wendy"))
	check(s.Reopen(ctx, w.repo, n, "wendy"))
	_, err = s.MergePR(ctx, w.repo, n, "octo")
	check(err)
	// An issue: opened, labeled, commented, closed.
	in, err := s.OpenIssue(ctx, w.repo, "rita", "Bug", "It breaks.")
	check(err)
	check(s.SetMilestone(w.repo, in, ms, "octo"))
	check(s.AddLabel(ctx, w.repo, in, "octo", "bug"))
	_, err = s.Comment(ctx, w.repo, in, "rita", "More details.")
	check(err)
	check(s.CloseIssue(ctx, w.repo, in, "rita"))
	check(s.Reopen(ctx, w.repo, in, "octo"))
	check(s.RemoveLabel(ctx, w.repo, in, "octo", "bug"))
	// A commit status on the pull request's head.
	mainHead := lsRemote(t, s.GitURL(w.repo))["refs/heads/main"]
	_, _, err = client(t, s, w.writeTok).Repositories.CreateStatus(ctx, "octo", "hello", mainHead, &github.RepoStatus{State: github.String("success"), Context: github.String("tryd")})
	check(err)
	// Check runs created and completed by the app, and a rerun request.
	head, err := s.Push(ctx, w.repo, "main", map[string]string{"main.go": "package main\n"})
	check(err)
	check(s.Flush(ctx))
	c := client(t, s, w.appTok)
	cr := createRun(t, c, head)
	completeRun(t, c, cr)
	check(s.RequestCheckRunRerun(ctx, w.repo, cr, "wendy"))
	suites, _, err := c.Checks.ListCheckSuitesForRef(ctx, "octo", "hello", head, nil)
	check(err)
	if len(suites.CheckSuites) != 1 {
		t.Fatalf("%d check suites for %s, want 1", len(suites.CheckSuites), head)
	}
	check(s.RequestCheckSuiteRerun(ctx, w.repo, suites.CheckSuites[0].GetID(), "wendy"))
	// The App uninstalled and installed again.
	check(s.DeleteInstallation(ctx, "tryd", "octo"))
	_, err = s.CreateInstallation(ctx, "tryd", "octo")
	check(err)
	check(s.Flush(ctx))
	return w
}

func TestWebhookContract(t *testing.T) {
	w := scenario(t)
	type fixture struct {
		path string
		// allowExtra: the capture predates fields GitHub sends today;
		// every field it has must still match, ours may be more.
		allowExtra bool
	}
	cases := []struct {
		name          string
		event, action string
		pick          func(rs []received) received
		app           bool // taken from the app's hook (check_run)
		ignore        []string
		fixtures      []fixture
	}{
		{name: "ping", event: "ping", ignore: []string{
			// Present (masked as "********") only when the hook has a
			// secret; the fixture's hook had none, the simulator's has.
			"hook.config.secret",
		}, fixtures: []fixture{{"ping/payload.json", false}}},
		{name: "push", event: "push", fixtures: []fixture{{"push/payload.json", false}, {"push/with-new-branch.payload.json", false}}},
		{name: "pull_request opened", event: "pull_request", action: "opened", fixtures: []fixture{{"pull_request/opened.payload.json", false}, {"pull_request/opened.with-null-body.json", false}}},
		{name: "pull_request synchronize", event: "pull_request", action: "synchronize", fixtures: []fixture{{"pull_request/synchronize.payload.json", false}}},
		{name: "pull_request labeled", event: "pull_request", action: "labeled", fixtures: []fixture{{"pull_request/labeled.payload.json", false}}},
		{name: "pull_request unlabeled", event: "pull_request", action: "unlabeled", fixtures: []fixture{{"pull_request/unlabeled.payload.json", false}}},
		{name: "pull_request closed", event: "pull_request", action: "closed", pick: first, fixtures: []fixture{{"pull_request/closed.payload.json", false}}},
		{name: "pull_request closed merged", event: "pull_request", action: "closed", pick: last, fixtures: []fixture{{"pull_request/closed.merged.C-Saunders-comment-when-done.json", true}, {"pull_request/closed.payload.json", false}}},
		{name: "pull_request reopened", event: "pull_request", action: "reopened", fixtures: []fixture{{"pull_request/reopened.payload.json", false}}},
		{name: "issue_comment on pull request", event: "issue_comment", action: "created", pick: first, fixtures: []fixture{
			{"issue_comment/created.on-pull-request.Crunch09-find-reviewers.json", true},
			{"issue_comment/created.on-pull-request.all-contributors-app.json", true},
		}},
		{name: "issue_comment on issue", event: "issue_comment", action: "created", pick: last, fixtures: []fixture{{"issue_comment/created.payload.json", false}}},
		{name: "pull_request_review submitted", event: "pull_request_review", action: "submitted", fixtures: []fixture{{"pull_request_review/submitted.payload.json", false}}},
		{name: "status", event: "status", fixtures: []fixture{{"status/payload.json", false}}},
		{name: "issues opened", event: "issues", action: "opened", fixtures: []fixture{{"issues/opened.payload.json", false}}},
		{name: "issues labeled", event: "issues", action: "labeled", fixtures: []fixture{{"issues/labeled.payload.json", false}}},
		{name: "issues unlabeled", event: "issues", action: "unlabeled", fixtures: []fixture{{"issues/unlabeled.payload.json", false}}},
		{name: "issues reopened", event: "issues", action: "reopened", ignore: []string{
			// Only this (newest) sample has them; every other recorded
			// issue payload lacks them, and tryd reads neither.
			"issue.timeline_url", "issue.performed_via_github_app",
		}, fixtures: []fixture{{"issues/reopened.payload.json", false}}},
		{name: "issues closed", event: "issues", action: "closed", fixtures: []fixture{{"issues/closed.C-Saunders-comment-when-done.json", true}}},
		{name: "check_run created", event: "check_run", action: "created", app: true, ignore: checkRunIgnore, fixtures: []fixture{{"check_run/created.payload.json", false}}},
		{name: "check_run completed", event: "check_run", action: "completed", app: true, ignore: checkRunIgnore, fixtures: []fixture{{"check_run/completed.payload.json", false}}},
		{name: "check_suite requested", event: "check_suite", action: "requested", app: true, ignore: checkSuiteIgnore, fixtures: []fixture{{"check_suite/requested.payload.json", false}}},
		{name: "check_suite completed", event: "check_suite", action: "completed", app: true, ignore: checkSuiteIgnore, fixtures: []fixture{{"check_suite/completed.payload.json", false}}},
		{name: "check_suite rerequested", event: "check_suite", action: "rerequested", app: true, ignore: checkSuiteIgnore, fixtures: []fixture{{"check_suite/rerequested.payload.json", false}}},
		{name: "installation created", event: "installation", action: "created", app: true, ignore: []string{
			// A map keyed by the permissions the app was granted.
			"installation.permissions",
			// Sent in newer payloads (the REST API has it), not in the
			// 2019 sample.
			"installation.app_slug",
		}, fixtures: []fixture{{"installation/created.payload.json", false}}},
		{name: "check_run rerequested", event: "check_run", action: "rerequested", app: true, ignore: checkRunIgnore, fixtures: []fixture{{"check_run/rerequested.payload.json", true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := w.hookRC
			if tc.app {
				rc = w.appRC
			}
			rs := rc.byEvent(t, tc.event, tc.action)
			if len(rs) == 0 {
				t.Fatalf("simulator sent no %s %s delivery", tc.event, tc.action)
			}
			pick := tc.pick
			if pick == nil {
				pick = first
			}
			got := pick(rs)
			for _, f := range tc.fixtures {
				want, err := os.ReadFile(testenv.Fixture(t, "github/webhooks/"+f.path))
				if err != nil {
					t.Fatal(err)
				}
				ignore := append(tc.ignore, contractIgnore...)
				if tc.event == "installation" {
					// The event's subject, compared like the rest.
					ignore = slices.DeleteFunc(ignore, func(p string) bool { return p == "installation" })
				}
				ms, err := jsonshape.Compare(want, got.body, jsonshape.Options{Ignore: ignore, AllowExtra: f.allowExtra})
				if err != nil {
					t.Fatal(err)
				}
				if len(ms) > 0 {
					var lines []string
					for _, m := range ms {
						lines = append(lines, m.String())
					}
					t.Errorf("%s: %d shape differences:\n%s", f.path, len(ms), strings.Join(lines, "\n"))
				}
			}
		})
	}
}

// checkRunIgnore: fields of check_run payloads that vary by app or by
// what triggered the suite.
var checkRunIgnore = []string{
	// A map keyed by the permissions the app was granted: its key set is
	// per app, not a fixed shape.
	"check_run.app.permissions",
	"check_run.check_suite.app.permissions",
	// GitHub sends the app's slug in newer payloads (the requested_action
	// fixture and the REST API have it); older samples lack it.
	"check_run.app.slug",
	"check_run.check_suite.app.slug",
	// Only for suites created by a deployment, which tryd never does.
	"check_run.check_suite.deployment",
}

// checkSuiteIgnore: as checkRunIgnore, for check_suite payloads.
var checkSuiteIgnore = []string{
	"check_suite.app.permissions", // keys vary by app
	"check_suite.app.slug",        // sent in newer payloads only
}

func first(rs []received) received { return rs[0] }
func last(rs []received) received  { return rs[len(rs)-1] }
