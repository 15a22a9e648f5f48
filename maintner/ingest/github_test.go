package ingest

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/maintner"
)

const ghRepoName = "gopher/widget"

// ghWorld is a GitHub simulator with one repository, its admin user and
// the user's token.
type ghWorld struct {
	sim   *githubsim.Sim
	token string
	ctx   context.Context
}

func newGHWorld(t *testing.T, opts githubsim.Options) *ghWorld {
	t.Helper()
	sim := githubsim.StartForTest(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	tok, err := sim.AddUser("gopher", githubsim.PermAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.CreateRepo(ctx, ghRepoName); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Push(ctx, ghRepoName, "main", map[string]string{"go.mod": "module widget\n"}); err != nil {
		t.Fatal(err)
	}
	if err := sim.CreateLabel(ghRepoName, "run-trybot", "00ff00", "Run the trybots"); err != nil {
		t.Fatal(err)
	}
	return &ghWorld{sim: sim, token: tok, ctx: ctx}
}

func (w *ghWorld) syncer(t *testing.T, c *maintner.Corpus, mod func(*GitHubOptions)) *GitHub {
	t.Helper()
	opts := GitHubOptions{Corpus: c, APIURL: w.sim.APIURL(), Token: w.token, Repos: []string{ghRepoName}}
	if mod != nil {
		mod(&opts)
	}
	g, err := NewGitHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// prLife plays a pull request's life in the simulator: opened, labelled,
// commented, reviewed, pushed to. It returns the PR number, the head
// after the push and the comment's ID.
func (w *ghWorld) prLife(t *testing.T, step func(string, int)) (n int, head string, comment int64) {
	t.Helper()
	s, ctx := w.sim, w.ctx
	n, err := s.OpenPR(ctx, ghRepoName, "gopher", githubsim.PROptions{Head: "fix", Title: "Fix it", Body: "It was broken.", Files: map[string]string{"fix.go": "package widget\n"}})
	must(t, err)
	step("opened", n)
	must(t, s.AddLabel(ctx, ghRepoName, n, "gopher", "run-trybot"))
	step("labeled", n)
	comment, err = s.Comment(ctx, ghRepoName, n, "gopher", "/trybot please")
	must(t, err)
	step("commented", n)
	_, err = s.AddReview(ctx, ghRepoName, n, "gopher", "APPROVED", "LGTM")
	must(t, err)
	step("reviewed", n)
	head, err = s.PushToPR(ctx, ghRepoName, n, map[string]string{"fix.go": "package widget // v2\n"})
	must(t, err)
	step("pushed", n)
	return n, head, comment
}

// checkPR checks the corpus's view of the pull request at the end of
// prLife.
func checkPR(t *testing.T, c *maintner.Corpus, n int, head string, comment int64) {
	t.Helper()
	c.RLock()
	defer c.RUnlock()
	r := c.GitHubRepo("gopher", "widget")
	if r == nil {
		t.Fatal("repository not in the corpus")
	}
	if r.DefaultBranch != "main" || r.ID == 0 {
		t.Errorf("repository metadata: id %d default branch %q", r.ID, r.DefaultBranch)
	}
	is := r.Issue(int32(n))
	if is == nil {
		t.Fatalf("pull request #%d not in the corpus", n)
	}
	body, _ := c.Text(is.Body)
	if !is.PullRequest || is.Closed || is.Title != "Fix it" || body != "It was broken." || is.User == nil || is.User.Login != "gopher" {
		t.Errorf("issue fields: pr %v closed %v title %q body %q user %+v", is.PullRequest, is.Closed, is.Title, body, is.User)
	}
	if !is.HasLabel("run-trybot") || len(is.Labels) != 1 {
		t.Errorf("labels %v, want [run-trybot]", is.Labels)
	}
	if len(is.Comments) != 1 || is.Comments[0].ID != comment {
		t.Errorf("comments %+v, want one with id %d", is.Comments, comment)
	} else if b, _ := c.Text(is.Comments[0].Body); b != "/trybot please" || is.Comments[0].User.Login != "gopher" {
		t.Errorf("comment body %q by %v", b, is.Comments[0].User)
	}
	if len(is.Reviews) != 1 || is.Reviews[0].State != "APPROVED" {
		t.Errorf("reviews %+v, want one APPROVED", is.Reviews)
	}
	labeled := false
	for _, e := range is.Events {
		if e.Type == "labeled" && e.Subject == "run-trybot" {
			labeled = true
		}
	}
	if !labeled {
		t.Errorf("no labeled event among %+v", is.Events)
	}
	if is.PR == nil {
		t.Fatal("no pull request data")
	}
	if is.PR.HeadSHA.String() != head || is.PR.HeadRef != "fix" || is.PR.BaseRef != "main" || is.PR.BaseSHA.IsZero() || is.PR.Merged {
		t.Errorf("pull request data %+v, want head %s on fix into main", is.PR, head)
	}
}

// TestGitHubPullRequest syncs after every step of a pull request's life,
// as nudges from webhooks would, and checks the corpus and the log; then
// the same nudges again and a reconciliation log nothing new.
func TestGitHubPullRequest(t *testing.T) {
	w := newGHWorld(t, githubsim.Options{})
	c, dir := newCorpus(t)
	g := w.syncer(t, c, nil)
	must(t, g.Sync(w.ctx, ghRepoName, 0))
	n, head, comment := w.prLife(t, func(step string, n int) {
		before := records(c)
		if err := g.Sync(w.ctx, ghRepoName, n); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if records(c) == before {
			t.Errorf("%s: nothing logged", step)
		}
	})
	checkPR(t, c, n, head, comment)
	checkPR(t, reload(t, dir), n, head, comment)

	before := records(c)
	for i := 0; i < 3; i++ {
		must(t, g.Sync(w.ctx, ghRepoName, n))
		must(t, g.Sync(w.ctx, ghRepoName, 0))
	}
	must(t, g.Reconcile(w.ctx))
	if got := records(c); got != before {
		t.Errorf("replayed nudges and reconciliation logged %d records, want none", got-before)
	}

	// Merging closes the pull request.
	merge, err := w.sim.MergePR(w.ctx, ghRepoName, n, "gopher")
	must(t, err)
	must(t, g.Sync(w.ctx, ghRepoName, n))
	c.RLock()
	is := c.GitHubRepo("gopher", "widget").Issue(int32(n))
	if !is.Closed || is.PR == nil || !is.PR.Merged || is.PR.MergeCommitSHA.String() != merge || is.ClosedAt.IsZero() {
		t.Errorf("after merge: closed %v pr %+v, want merged as %s", is.Closed, is.PR, merge)
	}
	c.RUnlock()
}

// TestGitHubReconcileAfterLostWebhooks never nudges (every webhook lost):
// the reconciliation pass alone brings the corpus to the state the
// nudged sync reaches, and a second pass logs nothing.
func TestGitHubReconcileAfterLostWebhooks(t *testing.T) {
	w := newGHWorld(t, githubsim.Options{})
	c, dir := newCorpus(t)
	g := w.syncer(t, c, nil)
	must(t, g.Reconcile(w.ctx))
	n, head, comment := w.prLife(t, func(string, int) {})
	issue, err := w.sim.OpenIssue(w.ctx, ghRepoName, "gopher", "An issue", "Details.")
	must(t, err)
	must(t, g.Reconcile(w.ctx))
	checkPR(t, c, n, head, comment)
	checkPR(t, reload(t, dir), n, head, comment)
	c.RLock()
	if is := c.GitHubRepo("gopher", "widget").Issue(int32(issue)); is == nil || is.PullRequest || is.Title != "An issue" {
		t.Errorf("issue #%d: %+v", issue, is)
	}
	c.RUnlock()
	before := records(c)
	must(t, g.Reconcile(w.ctx))
	if got := records(c); got != before {
		t.Errorf("second reconciliation logged %d records", got-before)
	}

	// An incremental pass (a repository-wide nudge) sees a later change.
	must(t, w.sim.CloseIssue(w.ctx, ghRepoName, issue, "gopher"))
	must(t, g.Sync(w.ctx, ghRepoName, 0))
	c.RLock()
	if is := c.GitHubRepo("gopher", "widget").Issue(int32(issue)); !is.Closed {
		t.Error("repository-wide nudge missed the closed issue")
	}
	c.RUnlock()
}

// TestGitHubConditionalRequests checks that a sync of an unchanged
// repository is answered by 304s, which cost no rate limit.
func TestGitHubConditionalRequests(t *testing.T) {
	w := newGHWorld(t, githubsim.Options{})
	c, _ := newCorpus(t)
	reg := prometheus.NewRegistry()
	g := w.syncer(t, c, func(o *GitHubOptions) { o.Registry = reg })
	w.prLife(t, func(string, int) {})
	must(t, g.Reconcile(w.ctx))
	// The second pass asks for comments since the latest one logged (a
	// new URL); from then on the requests repeat exactly.
	must(t, g.Reconcile(w.ctx))
	ok1 := counter(t, reg, "tryd_ingest_github_requests_total", "result", reqOK)
	must(t, g.Reconcile(w.ctx))
	if nm := counter(t, reg, "tryd_ingest_github_requests_total", "result", reqNotModified); nm == 0 {
		t.Error("no 304 answers on an unchanged repository")
	}
	if ok2 := counter(t, reg, "tryd_ingest_github_requests_total", "result", reqOK); ok2 != ok1 {
		t.Errorf("%v full answers on an unchanged repository, want only 304s", ok2-ok1)
	}
}

// TestGitHubRateLimit exhausts the token's rate limit: the worker makes
// one request, gets 403, waits on the clock until GitHub's reset time
// without sending anything more, and then syncs.
func TestGitHubRateLimit(t *testing.T) {
	for _, status := range []int{403, 429} {
		t.Run(map[int]string{403: "403", 429: "429"}[status], func(t *testing.T) {
			clock := newFakeClock(time.Now().Truncate(time.Second))
			w := newGHWorld(t, githubsim.Options{Now: clock.Now, RateLimitStatus: status})
			c, _ := newCorpus(t)
			reg := prometheus.NewRegistry()
			g := w.syncer(t, c, func(o *GitHubOptions) { o.Clock, o.Registry = clock, reg })
			n, err := w.sim.OpenIssue(w.ctx, ghRepoName, "gopher", "Rate limits", "")
			must(t, err)
			must(t, w.sim.ExhaustRateLimit("gopher"))
			if err := g.Sync(w.ctx, ghRepoName, n); err == nil {
				t.Fatalf("sync with an exhausted limit: %v", err)
			}
			limited := counter(t, reg, "tryd_ingest_github_requests_total", "result", reqRateLimited)
			if limited != 1 {
				t.Fatalf("%v rate-limited answers, want 1", limited)
			}

			ctx, cancel := context.WithCancel(w.ctx)
			done := make(chan struct{})
			go func() { g.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			must(t, g.Nudge(ghRepoName, n))
			// The worker waits for the reset, an hour away (the
			// simulator's window), not a backoff of seconds.
			reset := clock.waitFor(t, func(d time.Duration) bool { return d > 30*time.Minute })
			if got := counter(t, reg, "tryd_ingest_github_requests_total", "result", reqRateLimited); got != limited {
				t.Errorf("%v more requests answered 403/429 while waiting", got-limited)
			}
			if got := counter(t, reg, "tryd_ingest_github_requests_total", "result", reqOK); got != 0 {
				t.Errorf("%v requests succeeded before the reset", got)
			}
			clock.Set(reset)
			deadline := time.Now().Add(20 * time.Second)
			for {
				c.RLock()
				r := c.GitHubRepo("gopher", "widget")
				found := r != nil && r.Issue(int32(n)) != nil
				c.RUnlock()
				if found {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("issue not synced after the reset")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestNewGitHubValidates(t *testing.T) {
	c, _ := newCorpus(t)
	for _, tc := range []struct {
		name string
		opts GitHubOptions
	}{
		{"no corpus", GitHubOptions{Repos: []string{"a/b"}}},
		{"no repos", GitHubOptions{Corpus: c}},
		{"bad repo", GitHubOptions{Corpus: c, Repos: []string{"a/b/c"}}},
		{"dotdot", GitHubOptions{Corpus: c, Repos: []string{"../b"}}},
		{"dup", GitHubOptions{Corpus: c, Repos: []string{"a/b", "A/b"}}},
		{"bad url", GitHubOptions{Corpus: c, Repos: []string{"a/b"}, APIURL: "ftp://x/"}},
		{"token and app", GitHubOptions{Corpus: c, Repos: []string{"a/b"}, Token: "x", App: &GitHubApp{AppID: 1, InstallationID: 2}}},
		{"bad app key", GitHubOptions{Corpus: c, Repos: []string{"a/b"}, App: &GitHubApp{AppID: 1, InstallationID: 2, KeyPEM: []byte("nope")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewGitHub(tc.opts); err == nil {
				t.Error("accepted")
			}
		})
	}
	g, err := NewGitHub(GitHubOptions{Corpus: c, Repos: []string{"a/b"}})
	must(t, err)
	if err := g.Nudge("x/y", 1); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("nudge of an untracked repository: %v", err)
	}
	for _, n := range []int{-1, 1 << 40} {
		if err := g.Nudge("a/b", n); err == nil {
			t.Errorf("nudge of issue %d accepted", n)
		}
	}
}

// TestGitHubApp authenticates as a GitHub App installation: the syncer
// signs a JWT with the app's key, exchanges it for an installation token
// and syncs with it.
func TestGitHubApp(t *testing.T) {
	w := newGHWorld(t, githubsim.Options{})
	if _, err := w.sim.AddApp(githubsim.AppOptions{Slug: "tryd"}); err != nil {
		t.Fatal(err)
	}
	cred, err := w.sim.AppCredentials("tryd")
	must(t, err)
	n, err := w.sim.OpenIssue(w.ctx, ghRepoName, "gopher", "Via the app", "")
	must(t, err)
	c, _ := newCorpus(t)
	g := w.syncer(t, c, func(o *GitHubOptions) {
		o.Token = ""
		o.App = &GitHubApp{AppID: cred.ID, InstallationID: cred.InstallationID, KeyPEM: cred.PrivateKeyPEM}
	})
	must(t, g.Sync(w.ctx, ghRepoName, n))
	c.RLock()
	defer c.RUnlock()
	if is := c.GitHubRepo("gopher", "widget").Issue(int32(n)); is == nil || is.Title != "Via the app" {
		t.Errorf("issue synced with the app's token: %+v", is)
	}
}

// TestGitHubStatusesAndCheckRuns syncs the commit statuses and check runs
// on a pull request's head with the pull request.
func TestGitHubStatusesAndCheckRuns(t *testing.T) {
	w := newGHWorld(t, githubsim.Options{})
	appTok, err := w.sim.AddApp(githubsim.AppOptions{Slug: "ci"})
	must(t, err)
	n, err := w.sim.OpenPR(w.ctx, ghRepoName, "gopher", githubsim.PROptions{Head: "fix", Title: "Fix", Files: map[string]string{"f.go": "package widget\n"}})
	must(t, err)
	c, _ := newCorpus(t)
	g := w.syncer(t, c, nil)
	must(t, g.Sync(w.ctx, ghRepoName, n))
	c.RLock()
	head := c.GitHubRepo("gopher", "widget").Issue(int32(n)).PR.HeadSHA
	c.RUnlock()

	client := func(tok string) *github.Client {
		cl := github.NewClient(nil).WithAuthToken(tok)
		u, _ := url.Parse(w.sim.APIURL())
		cl.BaseURL = u
		return cl
	}
	_, _, err = client(w.token).Repositories.CreateStatus(w.ctx, "gopher", "widget", head.String(),
		&github.RepoStatus{State: github.String("pending"), Context: github.String("other-ci"), Description: github.String("running")})
	must(t, err)
	run, _, err := client(appTok).Checks.CreateCheckRun(w.ctx, "gopher", "widget", github.CreateCheckRunOptions{Name: "tryd/linux", HeadSHA: head.String(), Status: github.String("in_progress")})
	must(t, err)
	before := records(c)
	must(t, g.Sync(w.ctx, ghRepoName, n))
	if records(c) == before {
		t.Fatal("nothing logged for the status and check run")
	}
	c.RLock()
	r := c.GitHubRepo("gopher", "widget")
	sts, crs := r.Statuses(head), r.CheckRuns(head)
	if len(sts) != 1 || sts[0].Context != "other-ci" || sts[0].State != "pending" {
		t.Errorf("statuses %+v", sts)
	}
	if len(crs) != 1 || crs[0].ID != run.GetID() || crs[0].Status != "in_progress" || crs[0].Name != "tryd/linux" {
		t.Errorf("check runs %+v", crs)
	}
	c.RUnlock()
	before = records(c)
	must(t, g.Sync(w.ctx, ghRepoName, n))
	if records(c) != before {
		t.Error("an unchanged status and check run were logged again")
	}
}
