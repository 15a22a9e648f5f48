package trybot_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/trybot"
	"github.com/tryd-ci/tryd/trybot/client"
)

// TestGitHubAppLosesAccess checks that when the GitHub App loses access
// to the repository in the middle of a run, the posts are recorded as
// not reported for want of access, shown on the run with why, logged
// once and not retried one by one, and that when access comes back they
// are made after all (the check runs complete, the report errors go):
// on the App's webhook, or, when the webhook was missed (the trybot was
// down, or the delivery failed), on the next post that succeeds.
//
// Access is lost in each way GitHub has: the repository taken out of
// the installation (404 on a private repository; 403 "Resource not
// accessible by integration" on a public one, which the App may still
// read), the installation suspended (403 "This installation has been
// suspended"), and the App uninstalled (its tokens revoked: 401) and
// installed again under a new installation ID, whose tokens the trybot
// must then use.
func TestGitHubAppLosesAccess(t *testing.T) {
	t.Parallel()
	type sim = githubsim.Sim
	removed := func(ctx context.Context, g *sim, slug string) error {
		return g.RemoveFromInstallation(ctx, "tryd", slug)
	}
	added := func(ctx context.Context, g *sim, slug string) error { return g.AddToInstallation(ctx, "tryd", slug) }
	// The installation steps act on the account of slug's owner.
	account := func(slug string) string { owner, _, _ := strings.Cut(slug, "/"); return owner }
	suspended := func(ctx context.Context, g *sim, slug string) error {
		return g.SuspendInstallation(ctx, "tryd", account(slug))
	}
	unsuspended := func(ctx context.Context, g *sim, slug string) error {
		return g.UnsuspendInstallation(ctx, "tryd", account(slug))
	}
	deleted := func(ctx context.Context, g *sim, slug string) error {
		return g.DeleteInstallation(ctx, "tryd", account(slug))
	}
	created := func(ctx context.Context, g *sim, slug string) error {
		_, err := g.CreateInstallation(ctx, "tryd", account(slug))
		return err
	}
	const noAccess = "not reported: the GitHub App has no access to org/repo"
	for _, tc := range []accessCase{
		{name: "webhook", lose: removed, restore: added, status: []int{404}, msg: noAccess},
		{name: "restart and next success", lose: removed, restore: added, missed: "restart", status: []int{404}, msg: noAccess},
		{name: "public repository", public: true, lose: removed, restore: added, status: []int{403}, msg: noAccess},
		{name: "suspended", lose: suspended, restore: unsuspended, status: []int{403}, msg: "not reported: the GitHub App's installation for org/repo is suspended"},
		// The cached token is refused (401), then minting one for the
		// old installation fails (404).
		{name: "uninstalled and installed again", lose: deleted, restore: created, status: []int{401, 404}, msg: "not reported: the GitHub App was uninstalled from org's account (its installation there is gone)"},
		{name: "installed again, webhook missed", lose: deleted, restore: created, missed: "delivery", status: []int{401, 404}, msg: "not reported: the GitHub App was uninstalled from org's account (its installation there is gone)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testLosesAccess(t, tc)
		})
	}
}

// accessCase is a way of losing access to the repository and of getting
// it back.
type accessCase struct {
	name          string
	public        bool
	lose, restore func(ctx context.Context, g *githubsim.Sim, slug string) error
	// missed, if set, is how the trybot misses the webhook of restore:
	// "restart" (it is down) or "delivery" (the delivery fails); it
	// then learns from its next post, of another pull request.
	missed string
	// status is what GitHub may answer the posts, msg what the run
	// shows.
	status []int
	msg    string
}

func testLosesAccess(t *testing.T, tc accessCase) {
	marker := filepath.Join(t.TempDir(), "go")
	wait := config.Step{Name: "wait", Shell: "while [ ! -e " + marker + " ]; do sleep 0.05; done"}
	builders := []config.Builder{{Name: "one", Steps: []config.Step{wait}}, {Name: "two", Steps: []config.Step{wait}}}
	s := startStack(t, trystack.Options{GitHub: true, Builders: builders})
	g := s.GitHub
	if err := g.Sim.SetPublic(g.Slug(), tc.public); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func() (*trybot.Trybot, *prometheus.Registry, *logtest.Hook, func()) {
		opts := s.TrybotOptions(dir)
		s.GitHubConfig(opts.Config, true)
		log, hook := logtest.NewNullLogger()
		log.SetLevel(logrus.DebugLevel)
		opts.Log = log
		opts.RetryMin, opts.RetryMax = 10*time.Millisecond, 50*time.Millisecond
		opts.Registry = prometheus.NewRegistry()
		tb, stop := runStoppable(t, opts)
		s.SetAppWebhook(tb.Handler())
		return tb, opts.Registry, hook, stop
	}
	tb, reg, hook, stop := start()
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range hook.AllEntries() {
				t.Logf("trybot log: %s %s %v", e.Level, e.Message, e.Data)
			}
		}
	})
	runs, err := client.New(serveAPI(t, tb), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	openPR := func(head string) int {
		n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR(head, "Add "+head, map[string]string{head + ".txt": "ok\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := openPR("feature")
	waitFor(t, "the builds to start", 60*time.Second, func() bool { return postsCounted(t, reg, "started", "ok") == 2 })
	if err := tc.lose(ctx, g.Sim, g.Slug()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rl, err := runs.Runs(ctx, client.ListOptions{Review: client.ReviewGitHub, Change: int32(n)})
	if err != nil || len(rl) != 1 {
		t.Fatalf("runs: %+v, %v", rl, err)
	}
	run := rl[0]
	get := func() client.Run {
		r, err := runs.Run(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		return *r
	}
	waitFor(t, "the run to finish", 60*time.Second, func() bool { run = get(); return run.State.Finished() })
	want := tc.msg
	if run.State != client.StateSucceeded || len(run.ReportErrors) != 2 {
		t.Fatalf("run %s, report errors %+v; want succeeded with two", run.State, run.ReportErrors)
	}
	for _, re := range run.ReportErrors {
		if !strings.HasPrefix(re.What, "done:") || !slices.Contains(tc.status, re.Status) || re.Error != want || !re.AwaitingAccess {
			t.Errorf("report error %+v, want done:* %v %q awaiting access", re, tc.status, want)
		}
	}
	if got, refused := postsCounted(t, reg, "done", "no_access"), postsCounted(t, reg, "done", "refused"); got != 2 || refused != 0 {
		t.Errorf("done posts: %v no_access, %v refused; want 2 and 0", got, refused)
	}
	var errorLines int
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.ErrorLevel && strings.Contains(e.Message, strings.TrimPrefix(want, "not reported: ")) {
			errorLines++
		}
	}
	if errorLines != 1 {
		t.Errorf("%d error log lines about the lost access, want 1", errorLines)
	}

	switch tc.missed {
	case "restart":
		// Access comes back while the trybot is down: it misses the
		// webhook, and learns it from its next post that succeeds.
		stop()
		if err := tc.restore(ctx, g.Sim, g.Slug()); err != nil {
			t.Fatal(err)
		}
		tb, reg, _, _ = start()
		if runs, err = client.New(serveAPI(t, tb), nil); err != nil {
			t.Fatal(err)
		}
		openPR("second")
	case "delivery":
		// The webhook's delivery fails.
		s.SetAppWebhook(nil)
		if err := tc.restore(ctx, g.Sim, g.Slug()); err != nil {
			t.Fatal(err)
		}
		s.SetAppWebhook(tb.Handler())
		openPR("second")
	default:
		if err := tc.restore(ctx, g.Sim, g.Slug()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the report errors to go", 60*time.Second, func() bool { return len(get().ReportErrors) == 0 })
	// As a user, whose rate limit an anonymous client's 60 an hour
	// would not survive the polling.
	tok, err := os.ReadFile(g.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := github.NewClient(nil).WithAuthToken(strings.TrimSpace(string(tok))).WithEnterpriseURLs(g.Sim.APIURL(), g.Sim.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the check runs to complete", 30*time.Second, func() bool {
		res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, run.Revision, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, cr := range res.CheckRuns {
			if cr.GetStatus() == "completed" && cr.GetConclusion() == "success" {
				done++
			}
		}
		return done == 2
	})
	waitFor(t, "the done posts to count", 10*time.Second, func() bool { return postsCounted(t, reg, "done", "ok") >= 2 })
}
