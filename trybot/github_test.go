package trybot_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/config"
)

var ghBuilders = []config.Builder{
	{Name: "check", Steps: []config.Step{{Name: "test", Shell: "test ! -f bad.txt"}}},
	{Name: "extra", TryBot: boolp(false), Steps: []config.Step{{Name: "all", Run: []string{"true"}}}},
}

// startGitHubTrybot starts a stack with GitHub and a trybot watching it
// (as a GitHub App when app is set, else with a token), talking to
// GitHub through rt if set.
func startGitHubTrybot(t *testing.T, app bool, rt ...http.RoundTripper) (*trystack.Stack, *github.Client) {
	t.Helper()
	return startGitHubTrybotWith(t, ghBuilders, app, rt...)
}

func startGitHubTrybotWith(t *testing.T, builders []config.Builder, app bool, rt ...http.RoundTripper) (*trystack.Stack, *github.Client) {
	t.Helper()
	aliases := testAliases
	if len(builders) != len(ghBuilders) {
		aliases = nil
	}
	s := startStack(t, trystack.Options{GitHub: true, Builders: builders, Aliases: aliases})
	opts := s.TrybotOptions(t.TempDir())
	s.GitHubConfig(opts.Config, app)
	opts.Log = testLogger(t)
	if len(rt) > 0 {
		opts.HTTPClient = &http.Client{Transport: rt[0]}
	}
	tb := runTrybot(t, opts)
	s.SetAppWebhook(tb.Handler())
	tok, err := s.GitHub.Sim.AddUser("observer", "read")
	if err != nil {
		t.Fatal(err)
	}
	gc, err := github.NewClient(&http.Client{Transport: tokenRT(tok)}).WithEnterpriseURLs(s.GitHub.Sim.APIURL(), s.GitHub.Sim.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	return s, gc
}

type tokenRT string

func (t tokenRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "token "+string(t))
	return http.DefaultTransport.RoundTrip(r)
}

// checkRuns returns the completed tryd check runs on sha by name →
// conclusion (and "queued"/"in_progress" for unfinished ones).
func checkRuns(t *testing.T, gc *github.Client, g *trystack.GitHub, sha string) map[string]string {
	t.Helper()
	res, _, err := gc.Checks.ListCheckRunsForRef(context.Background(), g.Owner, g.Repo, sha, &github.ListCheckRunsOptions{Filter: github.String("all")})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, cr := range res.CheckRuns {
		if cr.GetStatus() == "completed" {
			out[cr.GetName()] = cr.GetConclusion()
		} else {
			out[cr.GetName()] = cr.GetStatus()
		}
	}
	return out
}

func comments(t *testing.T, gc *github.Client, g *trystack.GitHub, n int) []string {
	t.Helper()
	cs, _, err := gc.Issues.ListComments(context.Background(), g.Owner, g.Repo, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.GetUser().GetLogin()+": "+c.GetBody())
	}
	return out
}

func headOf(t *testing.T, gc *github.Client, g *trystack.GitHub, n int) string {
	t.Helper()
	pr, _, err := gc.PullRequests.Get(context.Background(), g.Owner, g.Repo, n)
	if err != nil {
		t.Fatal(err)
	}
	return pr.GetHead().GetSHA()
}

func TestGitHubLabelAndPush(t *testing.T) {
	t.Parallel()
	s, gc := startGitHubTrybot(t, true)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("feature", "Add ok.txt", map[string]string{"ok.txt": "ok\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head1 := headOf(t, gc, g, n)
	waitFor(t, "check run on the first head", 60*time.Second, func() bool { return checkRuns(t, gc, g, head1)["tryd/check"] == "success" })
	if got := checkRuns(t, gc, g, head1); len(got) != 1 {
		t.Errorf("check runs on %s: %v, want only tryd/check", head1, got)
	}

	// Re-running the check (GitHub's "Re-run" button) runs it again.
	res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head1, nil)
	if err != nil || len(res.CheckRuns) != 1 {
		t.Fatalf("check runs: %v, %v", res, err)
	}
	if err := g.Sim.RequestCheckRunRerun(ctx, g.Slug(), res.CheckRuns[0].GetID(), g.Maintainer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the re-requested check run", 60*time.Second, func() bool {
		res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head1, &github.ListCheckRunsOptions{Filter: github.String("all")})
		if err != nil || len(res.CheckRuns) != 2 {
			return false
		}
		for _, cr := range res.CheckRuns {
			if cr.GetConclusion() != "success" {
				return false
			}
		}
		return true
	})

	// "Re-run all checks" (the check suite) runs every builder again.
	res, _, err = gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head1, &github.ListCheckRunsOptions{Filter: github.String("all")})
	if err != nil || len(res.CheckRuns) == 0 || res.CheckRuns[0].GetCheckSuite().GetID() == 0 {
		t.Fatalf("check runs: %v, %v", res, err)
	}
	if err := g.Sim.RequestCheckSuiteRerun(ctx, g.Slug(), res.CheckRuns[0].GetCheckSuite().GetID(), g.Maintainer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the re-requested check suite", 60*time.Second, func() bool {
		res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head1, &github.ListCheckRunsOptions{Filter: github.String("all")})
		if err != nil || len(res.CheckRuns) != 3 {
			return false
		}
		for _, cr := range res.CheckRuns {
			if cr.GetConclusion() != "success" {
				return false
			}
		}
		return true
	})

	// A push to a labelled pull request runs again.
	head2, err := g.Sim.PushToPR(ctx, g.Slug(), n, map[string]string{"bad.txt": "oops\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "check run on the pushed head", 60*time.Second, func() bool { return checkRuns(t, gc, g, head2)["tryd/check"] == "failure" })
}

func TestGitHubComments(t *testing.T) {
	t.Parallel()
	s, gc := startGitHubTrybot(t, true)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Stranger, githubsimPR("contrib", "A contribution", map[string]string{"ok.txt": "ok\n"}))
	if err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)

	// Someone without write permission is told why nothing runs.
	if _, err := g.Sim.Comment(ctx, g.Slug(), n, g.Stranger, "/trybot"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the polite refusal", 60*time.Second, func() bool {
		for _, c := range comments(t, gc, g, n) {
			if strings.Contains(c, "Only people with write access") && strings.Contains(c, "@"+g.Stranger) {
				return true
			}
		}
		return false
	})
	if got := checkRuns(t, gc, g, head); len(got) != 0 {
		t.Errorf("check runs after a refused request: %v", got)
	}

	// A maintainer's request runs, with SlowBots, unknown names answered.
	if _, err := g.Sim.Comment(ctx, g.Slug(), n, g.Maintainer, "Looks good.\n/trybot more, nosuch"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both check runs to complete", 60*time.Second, func() bool {
		cr := checkRuns(t, gc, g, head)
		return cr["tryd/check"] == "success" && cr["tryd/extra"] == "success"
	})
	waitFor(t, "the result comment", 30*time.Second, func() bool {
		cs := comments(t, gc, g, n)
		return len(cs) >= 5
	})
	cs := comments(t, gc, g, n)
	t.Logf("comments: %q", cs)
	var begin, result, refusals int
	for _, c := range cs {
		switch {
		case strings.Contains(c, "TryBots beginning"):
			begin++
			if !strings.Contains(c, "nosuch") || !strings.Contains(c, "Builders: check, extra") {
				t.Errorf("beginning comment %q: want builders check, extra and nosuch listed as unknown", c)
			}
		case strings.Contains(c, "TryBots are happy"):
			result++
		case strings.Contains(c, "Only people with write access"):
			refusals++
		}
	}
	if begin != 1 || result != 1 || refusals != 1 {
		t.Errorf("comments %q: want one refusal, one beginning, one result", cs)
	}
}

func TestGitHubStatusesWithoutApp(t *testing.T) {
	t.Parallel()
	s, gc := startGitHubTrybot(t, false)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("st", "Statuses", map[string]string{"bad.txt": "x\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)
	waitFor(t, "a failure status", 60*time.Second, func() bool {
		st, _, err := gc.Repositories.GetCombinedStatus(ctx, g.Owner, g.Repo, head, nil)
		if err != nil {
			return false
		}
		for _, x := range st.Statuses {
			if x.GetContext() == "tryd/check" && x.GetState() == "failure" {
				return true
			}
		}
		return false
	})
}

func TestGitHubPostingRetriedExactlyOnce(t *testing.T) {
	t.Parallel()
	lossy := &lossyTransport{refused: 2, lost: 3, match: func(r *http.Request) bool {
		return (r.Method == http.MethodPost || r.Method == http.MethodPatch) && strings.Contains(r.URL.Path, "/check-runs")
	}}
	s, gc := startGitHubTrybot(t, true, lossy)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("flaky", "Flaky GitHub", map[string]string{"ok.txt": "ok\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Sim.Comment(ctx, g.Slug(), n, g.Maintainer, "/trybot more"); err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)
	waitFor(t, "both check runs to complete", 60*time.Second, func() bool {
		cr := checkRuns(t, gc, g, head)
		return cr["tryd/check"] == "success" && cr["tryd/extra"] == "success"
	})
	res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head, &github.ListCheckRunsOptions{Filter: github.String("all")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.CheckRuns) != 2 {
		var names []string
		for _, cr := range res.CheckRuns {
			names = append(names, cr.GetName()+"/"+cr.GetExternalID())
		}
		t.Errorf("check runs %q: want exactly one per builder despite lost answers", names)
	}
	lossy.mu.Lock()
	defer lossy.mu.Unlock()
	if lossy.refused != 0 || lossy.lost != 0 {
		t.Errorf("the transport still had %d refusals and %d losses to inject", lossy.refused, lossy.lost)
	}
}

// heldBuilder is a builder whose build waits until the test creates the
// marker file, so that a test can act while it runs however loaded the
// machine is.
func heldBuilder(t *testing.T) ([]config.Builder, func()) {
	marker := filepath.Join(t.TempDir(), "go")
	b := []config.Builder{{Name: "check", Steps: []config.Step{{Name: "test", Shell: "while [ ! -e " + marker + " ]; do sleep 0.05; done; test -f ok.txt"}}}}
	return b, func() {
		t.Helper()
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCancelled waits until the coordinator has cancelled a build of rev.
func waitCancelled(t *testing.T, s *trystack.Stack, rev string) {
	t.Helper()
	waitFor(t, "the superseded run's build to be cancelled", 60*time.Second, func() bool {
		builds, err := s.Client().Builds(context.Background(), api.ListOptions{Labels: map[string]string{"revision": rev}})
		if err != nil {
			return false
		}
		for _, b := range builds {
			if b.State == "cancelled" {
				return true
			}
		}
		return false
	})
}

func TestGitHubPushSupersedes(t *testing.T) {
	t.Parallel()
	slow, release := heldBuilder(t)
	s, gc := startGitHubTrybotWith(t, slow, true)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("slow", "Slow", map[string]string{"ok.txt": "1\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head1 := headOf(t, gc, g, n)
	waitFor(t, "the first check run to start", 60*time.Second, func() bool { return checkRuns(t, gc, g, head1)["tryd/check"] == "in_progress" })
	head2, err := g.Sim.PushToPR(ctx, g.Slug(), n, map[string]string{"ok.txt": "2\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitCancelled(t, s, head1)
	release()
	waitFor(t, "the new head's check run", 60*time.Second, func() bool { return checkRuns(t, gc, g, head2)["tryd/check"] == "success" })
	// The old run was cancelled and posts nothing more.
	builds, err := s.Client().Builds(ctx, api.ListOptions{Labels: map[string]string{"revision": head1}})
	if err != nil || len(builds) != 1 || builds[0].State != "cancelled" {
		t.Errorf("builds of the old head: %+v, %v; want one, cancelled", builds, err)
	}
	if st := checkRuns(t, gc, g, head1)["tryd/check"]; st != "in_progress" {
		t.Errorf("old head's check run is %q; a superseded run must post nothing more", st)
	}
}

func TestGitHubLabelAndCommentRunOnce(t *testing.T) {
	t.Parallel()
	s, gc := startGitHubTrybot(t, true)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("both", "Both", map[string]string{"ok.txt": "ok\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Sim.Comment(ctx, g.Slug(), n, g.Maintainer, "/trybot more"); err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)
	waitFor(t, "both check runs to complete", 60*time.Second, func() bool {
		cr := checkRuns(t, gc, g, head)
		return cr["tryd/check"] == "success" && cr["tryd/extra"] == "success"
	})
	time.Sleep(time.Second)
	if err := s.SyncGitHub(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head, &github.ListCheckRunsOptions{Filter: github.String("all")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.CheckRuns) != 2 {
		t.Errorf("%d check runs on %s, want 2: the label must not run the revision the comment ran", len(res.CheckRuns), head)
	}
}

func TestGitHubPermissionErrorsRetried(t *testing.T) {
	t.Parallel()
	lossy := &lossyTransport{refused: 3, match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/permission")
	}}
	s, gc := startGitHubTrybot(t, true, lossy)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("perm", "Permission API down", map[string]string{"ok.txt": "ok\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)
	waitFor(t, "the check run once the permission API answers", 60*time.Second, func() bool { return checkRuns(t, gc, g, head)["tryd/check"] == "success" })
	lossy.mu.Lock()
	defer lossy.mu.Unlock()
	if lossy.refused != 0 {
		t.Errorf("%d permission failures left to inject", lossy.refused)
	}
}

// TestGitHubCommentReplacesLabelRun: a comment while the label's run is
// going replaces it on the same commit; the new run takes the old run's
// check run over instead of leaving it queued forever.
func TestGitHubCommentReplacesLabelRun(t *testing.T) {
	t.Parallel()
	slow, release := heldBuilder(t)
	s, gc := startGitHubTrybotWith(t, slow, true)
	g := s.GitHub
	ctx := context.Background()
	n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("replace", "Replace", map[string]string{"ok.txt": "1\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
		t.Fatal(err)
	}
	head := headOf(t, gc, g, n)
	waitFor(t, "the label's check run to start", 60*time.Second, func() bool { return checkRuns(t, gc, g, head)["tryd/check"] == "in_progress" })
	if _, err := g.Sim.Comment(ctx, g.Slug(), n, g.Maintainer, "/trybot"); err != nil {
		t.Fatal(err)
	}
	waitCancelled(t, s, head)
	release()
	waitFor(t, "the comment's run to post its result", 60*time.Second, func() bool {
		for _, c := range comments(t, gc, g, n) {
			if strings.Contains(c, "TryBots are happy") {
				return true
			}
		}
		return false
	})
	res, _, err := gc.Checks.ListCheckRunsForRef(ctx, g.Owner, g.Repo, head, &github.ListCheckRunsOptions{Filter: github.String("all")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.CheckRuns) != 1 || res.CheckRuns[0].GetConclusion() != "success" || res.CheckRuns[0].GetExternalID() != "tryd-run-2/check" {
		var got []string
		for _, cr := range res.CheckRuns {
			got = append(got, cr.GetName()+":"+cr.GetStatus()+":"+cr.GetConclusion()+":"+cr.GetExternalID())
		}
		t.Errorf("check runs %q, want one, successful, taken over by run 2", got)
	}
}
