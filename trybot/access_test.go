package trybot_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot"
	"github.com/tryd-ci/tryd/trybot/client"
)

// TestGitHubAppLosesAccess checks that when the GitHub App loses access
// to the repository in the middle of a run (taken out of its
// installation: GitHub answers 404 for everything there), the posts are
// recorded as not reported for want of access, shown on the run, logged
// once and not retried one by one, and that when access comes back they
// are made after all (the check runs complete, the report errors go):
// on the installation_repositories "added" webhook, or, when the webhook
// was missed (the trybot was down), on the next successful post of a
// restarted trybot.
//
// On a public repository GitHub answers the App's writes with 403
// "Resource not accessible by integration" instead of 404 (it may still
// read the repository), which is lost access just the same.
func TestGitHubAppLosesAccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		restart, public bool
	}{
		{"webhook", false, false},
		{"restart and next success", true, false},
		{"public repository", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testLosesAccess(t, tc.restart, tc.public)
		})
	}
}

func testLosesAccess(t *testing.T, restart, public bool) {
	marker := filepath.Join(t.TempDir(), "go")
	wait := config.Step{Name: "wait", Shell: "while [ ! -e " + marker + " ]; do sleep 0.05; done"}
	builders := []config.Builder{{Name: "one", Steps: []config.Step{wait}}, {Name: "two", Steps: []config.Step{wait}}}
	s := startStack(t, trystack.Options{GitHub: true, Builders: builders})
	g := s.GitHub
	if err := g.Sim.SetPublic(g.Slug(), public); err != nil {
		t.Fatal(err)
	}
	status := http.StatusNotFound
	if public {
		status = http.StatusForbidden
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
	if err := g.Sim.RemoveFromInstallation(ctx, "tryd", g.Slug()); err != nil {
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
	want := "not reported: the GitHub App has no access to " + g.Slug()
	if run.State != client.StateSucceeded || len(run.ReportErrors) != 2 {
		t.Fatalf("run %s, report errors %+v; want succeeded with two", run.State, run.ReportErrors)
	}
	for _, re := range run.ReportErrors {
		if !strings.HasPrefix(re.What, "done:") || re.Status != status || re.Error != want || !re.AwaitingAccess {
			t.Errorf("report error %+v, want done:* %d %q awaiting access", re, status, want)
		}
	}
	if got, refused := postsCounted(t, reg, "done", "no_access"), postsCounted(t, reg, "done", "refused"); got != 2 || refused != 0 {
		t.Errorf("done posts: %v no_access, %v refused; want 2 and 0", got, refused)
	}
	var errorLines int
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.ErrorLevel && strings.Contains(e.Message, "no access to "+g.Slug()) {
			errorLines++
		}
	}
	if errorLines != 1 {
		t.Errorf("%d error log lines about the lost access, want 1", errorLines)
	}

	if restart {
		// Access comes back while the trybot is down: it misses the
		// webhook, and learns it from its next post that succeeds.
		stop()
		if err := g.Sim.AddToInstallation(ctx, "tryd", g.Slug()); err != nil {
			t.Fatal(err)
		}
		tb, reg, _, _ = start()
		if runs, err = client.New(serveAPI(t, tb), nil); err != nil {
			t.Fatal(err)
		}
		openPR("second")
	} else if err := g.Sim.AddToInstallation(ctx, "tryd", g.Slug()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the report errors to go", 60*time.Second, func() bool { return len(get().ReportErrors) == 0 })
	gc, err := github.NewClient(nil).WithEnterpriseURLs(g.Sim.APIURL(), g.Sim.APIURL())
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
