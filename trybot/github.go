package trybot

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"
	"golang.org/x/oauth2"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/ghapp"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/trybot/client"
)

// githubServer is a configured GitHub server and its REST client.
type githubServer struct {
	name string
	c    *github.Client
	// web is the server's web base URL ("https://github.com/" or an
	// Enterprise host's root), for links to pull requests.
	web string
	// checks says whether the credentials are a GitHub App's, which
	// may create check runs; with a token, commit statuses are used.
	checks bool
	// With App credentials, app calls the /app endpoints with the App's
	// JWT and insts mints the tokens of the App's installation on each
	// repository owner's account (whichever installation is current
	// there: see access.go).
	app   *github.Client
	insts *ghapp.App
	appID int64
}

// webBase returns the web root for a GitHub REST base URL: github.com for
// the public API, and the host's root for Enterprise servers, whose API
// lives under /api/v3/.
func webBase(api string) string {
	api = strings.TrimSuffix(api, "/")
	if api == "" || api == "https://api.github.com" {
		return "https://github.com/"
	}
	return strings.TrimSuffix(api, "/api/v3") + "/"
}

func newGitHubServer(ctx context.Context, s config.GitHubServer, hc *http.Client) (*githubServer, error) {
	api := s.APIURL
	mk := func(hc *http.Client) (*github.Client, error) {
		c := github.NewClient(hc)
		if api != "" && strings.TrimSuffix(api, "/") != "https://api.github.com" {
			return c.WithEnterpriseURLs(api, api)
		}
		return c, nil
	}
	g := &githubServer{name: s.Name, web: webBase(api)}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	switch {
	case s.AppKey.IsSet():
		pemKey, err := s.AppKey.Value()
		if err != nil {
			return nil, fmt.Errorf("trybot: github server %s: app key: %w", s.Name, err)
		}
		// Not oauth2.NewClient: it would cache tokens itself, out of
		// reach of a revoked token and of an installation change, and
		// it has one token for every repository; ghapp keeps one per
		// repository owner's installation.
		plain, err := mk(hc)
		if err != nil {
			return nil, fmt.Errorf("trybot: github server %s: %w", s.Name, err)
		}
		app, err := ghapp.New(ghapp.Options{AppID: s.AppID, KeyPEM: []byte(pemKey), InstallationID: s.InstallationID,
			BaseURL: plain.BaseURL, Transport: transportOf(hc), Timeout: hc.Timeout})
		if err != nil {
			return nil, fmt.Errorf("trybot: github server %s: %w", s.Name, err)
		}
		g.app, g.insts, g.appID = app.Client(), app, s.AppID
		if g.c, err = mk(&http.Client{Timeout: hc.Timeout, Transport: app.Transport(transportOf(hc))}); err != nil {
			return nil, fmt.Errorf("trybot: github server %s: %w", s.Name, err)
		}
		g.checks = true
	case s.Token.IsSet():
		tok, err := s.Token.Value()
		if err != nil {
			return nil, fmt.Errorf("trybot: github server %s: token: %w", s.Name, err)
		}
		if g.c, err = mk(oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}))); err != nil {
			return nil, fmt.Errorf("trybot: github server %s: %w", s.Name, err)
		}
	default:
		var err error
		if g.c, err = mk(hc); err != nil {
			return nil, fmt.Errorf("trybot: github server %s: %w", s.Name, err)
		}
	}
	return g, nil
}

func transportOf(hc *http.Client) http.RoundTripper {
	if hc.Transport != nil {
		return hc.Transport
	}
	return http.DefaultTransport
}

// canWrite reports whether login has write (or maintain, admin)
// permission on the repository, asking GitHub's collaborator permission
// API and caching the answer for a minute.
func (g *githubServer) canWrite(ctx context.Context, t *Trybot, ri *repoInfo, login string) (bool, error) {
	if login == "" {
		return false, nil
	}
	key := ri.cfg.Slug + "\x00" + login
	t.mu.Lock()
	e, ok := t.perms[key]
	t.mu.Unlock()
	if ok && time.Since(e.at) < time.Minute {
		return e.write, nil
	}
	p, resp, err := g.c.Repositories.GetPermissionLevel(ctx, ri.owner, ri.name, login)
	write := false
	switch {
	case err == nil:
		switch p.GetPermission() {
		case "admin", "maintain", "write":
			write = true
		}
		if u := p.GetUser(); u != nil && u.GetRoleName() != "" {
			switch u.GetRoleName() {
			case "admin", "maintain", "write":
				write = true
			}
		}
	case resp != nil && resp.StatusCode == http.StatusNotFound:
		// Not a collaborator (GitHub answers 404 for unknown users).
	default:
		return false, err
	}
	t.mu.Lock()
	t.perms[key] = permEntry{write: write, at: time.Now()}
	t.mu.Unlock()
	return write, nil
}

// labelActor returns who last added label to pull request n, and the
// event's ID.
func (g *githubServer) labelActor(ctx context.Context, ri *repoInfo, n int32, label string) (string, int64, error) {
	login, id := "", int64(0)
	err := eachPage(func(o *github.ListOptions) ([]*github.IssueEvent, *github.Response, error) {
		return g.c.Issues.ListIssueEvents(ctx, ri.owner, ri.name, int(n), o)
	}, func(ev *github.IssueEvent) bool {
		if ev.GetEvent() == "labeled" && ev.GetLabel().GetName() == label {
			login, id = ev.GetActor().GetLogin(), ev.GetID()
		}
		return true
	})
	if err != nil {
		return "", 0, fmt.Errorf("github: events of %s#%d: %w", ri.cfg.Slug, n, err)
	}
	if login == "" {
		return "", 0, fmt.Errorf("github: %s#%d: no labeled event for %q", ri.cfg.Slug, n, label)
	}
	return login, id, nil
}

// githubWants appends the try runs a GitHub repository asks for and
// records where each pull request stands. The caller holds the corpus's
// read lock.
func (t *Trybot) githubWants(c *maintner.Corpus, ri *repoInfo, wants []want, cur map[string]current) []want {
	r := c.GitHubRepo(ri.owner, ri.name)
	if r == nil {
		return wants
	}
	for _, is := range r.Issues() {
		if !is.PullRequest || is.NotExist || is.PR == nil || is.PR.HeadSHA.IsZero() {
			continue
		}
		head := is.PR.HeadSHA.String()
		ck := changeKey(ri.cfg.Name, is.Number)
		cur[ck] = current{revision: head, open: !is.Closed, order: int64(is.LastModified())}
		if is.Closed {
			continue
		}
		var baseSHA string
		if !is.PR.BaseSHA.IsZero() {
			baseSHA = is.PR.BaseSHA.String()
		}
		base := client.Run{
			Review: client.ReviewGitHub, Server: ri.github.name, Repo: ri.cfg.Name, Project: ri.cfg.Slug,
			Change: is.Number, Revision: head, Branch: is.PR.BaseRef, Base: baseSHA,
			ChangeURL: ri.github.web + ri.cfg.Slug + "/pull/" + strconv.Itoa(int(is.Number)),
		}
		// The latest command comment is the request in force: its
		// arguments are the SlowBots for every later run.
		var last *maintner.GitHubComment
		var terms []string
		for i := range is.Comments {
			cm := &is.Comments[i]
			body, err := c.Text(cm.Body)
			if err != nil {
				continue
			}
			if args, ok := CommandArgs(body, t.command); ok && cm.User != nil {
				last = cm
				terms = ParseTerms(args)
			}
		}
		if last != nil {
			w := want{repo: ri, key: fmt.Sprintf("github/%s/%d/comment/%d", ri.cfg.Name, is.Number, last.ID), run: base}
			w.run.Trigger = "comment"
			w.run.RequestedBy = last.User.Login
			w.run.Builders, w.run.Unknown = t.builders.Select(ri.cfg.Name, is.PR.BaseRef, terms)
			w.perm = last.User.Login
			w.refusalKey = w.key + "/refused"
			w.replyTo = is.Number
			wants = append(wants, w)
		}
		if is.HasLabel(t.ghLabel) {
			w := want{repo: ri, key: labelKey(ri.cfg.Name, is.Number, head), run: base}
			w.run.Trigger = "label"
			w.run.Builders, w.run.Unknown = t.builders.Select(ri.cfg.Name, is.PR.BaseRef, terms)
			for i := len(is.Events) - 1; i >= 0; i-- {
				ev := is.Events[i]
				if ev.Type == "labeled" && ev.Subject == t.ghLabel && ev.Actor != nil {
					w.perm, w.run.RequestedBy = ev.Actor.Login, ev.Actor.Login
					w.refusalKey = fmt.Sprintf("github/%s/%d/label/%d", ri.cfg.Name, is.Number, ev.ID)
					break
				}
			}
			w.replyTo = is.Number
			wants = append(wants, w)
		}
	}
	return wants
}

// labelKey is the run key of the label's request for head. Any run of
// head (by comment or re-request) also satisfies it, so that the label
// does not start the same revision again afterwards.
func labelKey(repo string, n int32, head string) string {
	return fmt.Sprintf("github/%s/%d/%s/label", repo, n, head)
}

// refuse answers a request from someone without write permission, once.
func (t *Trybot) refuse(ctx context.Context, w want) error {
	if w.refusalKey == "" {
		return nil
	}
	done, err := t.store.marked(ctx, w.refusalKey)
	if err != nil || done {
		return err
	}
	g := w.repo.github
	marker := "<!-- tryd:" + w.refusalKey + " -->"
	body := fmt.Sprintf("Hi @%s, thanks for asking! Only people with write access to %s can start TryBots, so nothing ran. A maintainer can add the %q label or comment %q to run them.\n\n%s",
		w.perm, w.repo.cfg.Slug, t.ghLabel, t.command, marker)
	found, err := g.hasComment(ctx, w.repo, w.replyTo, marker)
	if err == nil && !found {
		_, _, err = g.c.Issues.CreateComment(ctx, w.repo.owner, w.repo.name, int(w.replyTo), &github.IssueComment{Body: github.String(body)})
		if err != nil {
			err = fmt.Errorf("github: reply to %s#%d: %w", w.repo.cfg.Slug, w.replyTo, err)
		}
	}
	if rf := asRefusal(err); rf != nil {
		// The pull request is gone or locked: the reply can never be
		// posted. Say so once and stop asking.
		t.metrics.posts.WithLabelValues(client.ReviewGitHub, "refusal", "refused").Inc()
		t.log.WithError(err).WithFields(map[string]any{"repo": w.repo.cfg.Name, "pr": w.replyTo, "status": rf.status}).
			Error("trybot: GitHub refused the reply to a refused request for good; not retrying it")
		return t.store.mark(ctx, w.refusalKey)
	}
	if err != nil {
		t.metrics.posts.WithLabelValues(client.ReviewGitHub, "refusal", "error").Inc()
		return err
	}
	if !found {
		t.metrics.posts.WithLabelValues(client.ReviewGitHub, "refusal", "ok").Inc()
	}
	t.log.WithFields(map[string]any{"repo": w.repo.cfg.Name, "pr": w.replyTo, "user": w.perm}).Info("trybot: request refused (no write permission)")
	return t.store.mark(ctx, w.refusalKey)
}

// hasComment reports whether PR n has a comment containing marker.
func (g *githubServer) hasComment(ctx context.Context, ri *repoInfo, n int32, marker string) (bool, error) {
	found := false
	opts := &github.IssueListCommentsOptions{}
	err := eachPage(func(o *github.ListOptions) ([]*github.IssueComment, *github.Response, error) {
		opts.ListOptions = *o
		return g.c.Issues.ListComments(ctx, ri.owner, ri.name, int(n), opts)
	}, func(c *github.IssueComment) bool {
		found = strings.Contains(c.GetBody(), marker)
		return !found
	})
	if err != nil {
		return false, fmt.Errorf("github: list comments of %s#%d: %w", ri.cfg.Slug, n, err)
	}
	return found, nil
}

// eachPage calls f with each item of a GitHub listing, page after page
// (100 items each, the most GitHub gives, following the next page its
// Link header names) until f returns false or the last page. list asks
// for the page o names.
func eachPage[T any](list func(o *github.ListOptions) ([]T, *github.Response, error), f func(T) bool) error {
	o := &github.ListOptions{PerPage: 100}
	for {
		items, resp, err := list(o)
		if err != nil {
			return err
		}
		for _, it := range items {
			if !f(it) {
				return nil
			}
		}
		if resp.NextPage == 0 {
			return nil
		}
		o.Page = resp.NextPage
	}
}

// githubReporter posts one check run per builder (or, without an App,
// one commit status per builder) and comments on the pull request when
// the run was asked for by a comment or named unknown builders.
type githubReporter struct {
	t  *Trybot
	ri *repoInfo
}

func checkName(builder string) string { return "tryd/" + builder }

func externalID(r *client.Run, builder string) string {
	return fmt.Sprintf("tryd-run-%d/%s", r.ID, builder)
}

// checkRun finds the check run of r's builder, or nil.
func (g *githubReporter) checkRun(ctx context.Context, r *client.Run, builder string) (*github.CheckRun, error) {
	mine, _, err := g.checkRuns(ctx, r, builder)
	return mine, err
}

// checkRuns finds the check run of r's builder (mine) and an unfinished
// one of an earlier run of the same builder on the same commit (stale:
// that run was superseded by r, and r takes its check run over rather
// than leave it queued forever next to its own).
func (g *githubReporter) checkRuns(ctx context.Context, r *client.Run, builder string) (mine, stale *github.CheckRun, err error) {
	name := checkName(builder)
	opts := &github.ListCheckRunsOptions{CheckName: &name, Filter: github.String("all")}
	err = eachPage(func(o *github.ListOptions) ([]*github.CheckRun, *github.Response, error) {
		opts.ListOptions = *o
		res, resp, err := g.ri.github.c.Checks.ListCheckRunsForRef(ctx, g.ri.owner, g.ri.name, r.Revision, opts)
		if res == nil {
			return nil, resp, err
		}
		return res.CheckRuns, resp, err
	}, func(cr *github.CheckRun) bool {
		switch {
		case cr.GetExternalID() == externalID(r, builder):
			mine = cr
		case cr.GetStatus() != "completed" && strings.HasPrefix(cr.GetExternalID(), "tryd-run-") && cr.GetApp() != nil:
			stale = cr
		}
		return true
	})
	if err != nil {
		return nil, nil, fmt.Errorf("github: list check runs of %s@%s: %w", g.ri.cfg.Slug, r.Revision, err)
	}
	return mine, stale, nil
}

func (g *githubReporter) comment(ctx context.Context, r *client.Run, what, text string) error {
	marker := fmt.Sprintf("<!-- tryd:run:%d:%s -->", r.ID, what)
	found, err := g.ri.github.hasComment(ctx, g.ri, r.Change, marker)
	if err != nil || found {
		return err
	}
	_, _, err = g.ri.github.c.Issues.CreateComment(ctx, g.ri.owner, g.ri.name, int(r.Change), &github.IssueComment{Body: github.String(text + "\n\n" + marker)})
	if err != nil {
		return fmt.Errorf("github: comment on %s#%d: %w", g.ri.cfg.Slug, r.Change, err)
	}
	return nil
}

func (g *githubReporter) begin(ctx context.Context, r *client.Run) (string, error) {
	gh := g.ri.github
	for _, b := range r.Builders {
		if gh.checks {
			cr, stale, err := g.checkRuns(ctx, r, b)
			if err != nil {
				return "", err
			}
			if cr == nil && stale != nil {
				_, _, err = gh.c.Checks.UpdateCheckRun(ctx, g.ri.owner, g.ri.name, stale.GetID(), github.UpdateCheckRunOptions{
					Name: checkName(b), ExternalID: github.String(externalID(r, b)), DetailsURL: nonEmpty(g.t.runURL(r.ID)),
					Status: github.String("queued"),
					Output: &github.CheckRunOutput{Title: github.String("Queued again"), Summary: github.String(g.t.beginMessage(r))},
				})
				if err != nil {
					return "", fmt.Errorf("github: take over check run %d: %w", stale.GetID(), err)
				}
				continue
			}
			if cr == nil {
				_, _, err = gh.c.Checks.CreateCheckRun(ctx, g.ri.owner, g.ri.name, github.CreateCheckRunOptions{
					Name: checkName(b), HeadSHA: r.Revision, ExternalID: github.String(externalID(r, b)),
					DetailsURL: nonEmpty(g.t.runURL(r.ID)), Status: github.String("queued"),
					Output: &github.CheckRunOutput{Title: github.String("Queued"), Summary: github.String(g.t.beginMessage(r))},
				})
				if err != nil {
					return "", fmt.Errorf("github: create check run %s on %s@%s: %w", checkName(b), g.ri.cfg.Slug, r.Revision, err)
				}
			}
			continue
		}
		if err := g.status(ctx, r, b, "pending", "queued"); err != nil {
			return "", err
		}
	}
	if r.Trigger == "comment" || len(r.Unknown) > 0 {
		return "", g.comment(ctx, r, "begin", g.t.beginMessage(r)+"\n\nRevision: "+r.Revision)
	}
	return "", nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (g *githubReporter) status(ctx context.Context, r *client.Run, builder, state, desc string) error {
	target := g.t.runURL(r.ID)
	_, _, err := g.ri.github.c.Repositories.CreateStatus(ctx, g.ri.owner, g.ri.name, r.Revision, &github.RepoStatus{
		State: github.String(state), Context: github.String(checkName(builder)), Description: github.String(desc), TargetURL: nonEmpty(target),
	})
	if err != nil {
		return fmt.Errorf("github: status %s on %s@%s: %w", checkName(builder), g.ri.cfg.Slug, r.Revision, err)
	}
	return nil
}

func (g *githubReporter) builderStarted(ctx context.Context, r *client.Run, i int) (string, error) {
	b := r.Builds[i]
	if !g.ri.github.checks {
		return "", g.status(ctx, r, b.Builder, "pending", "running")
	}
	cr, err := g.checkRun(ctx, r, b.Builder)
	if err != nil {
		return "", err
	}
	if cr == nil {
		return "", fmt.Errorf("github: check run %s of run %d not found", checkName(b.Builder), r.ID)
	}
	if cr.GetStatus() != "queued" {
		return "", nil
	}
	_, _, err = g.ri.github.c.Checks.UpdateCheckRun(ctx, g.ri.owner, g.ri.name, cr.GetID(), github.UpdateCheckRunOptions{
		Name: checkName(b.Builder), Status: github.String("in_progress"),
		Output: &github.CheckRunOutput{Title: github.String("Running"), Summary: github.String("Build " + strconv.FormatInt(b.BuildID, 10) + " is running.")},
	})
	if err != nil {
		return "", fmt.Errorf("github: update check run %d: %w", cr.GetID(), err)
	}
	return strconv.FormatInt(cr.GetID(), 10), nil
}

func (g *githubReporter) builderDone(ctx context.Context, r *client.Run, i int) (string, error) {
	b := r.Builds[i]
	conclusion, title, state := "success", "Passed", "success"
	switch b.State {
	case client.BuildFailed:
		conclusion, title = g.t.buildConclusion(b)
		state = map[string]string{"success": "success", "neutral": "success", "failure": "failure"}[conclusion]
	case client.BuildSucceeded:
	default:
		conclusion, title, state = "neutral", "Infrastructure failure (not the change's fault)", "error"
	}
	summary := builderSummary(b)
	if !g.ri.github.checks {
		return "", g.status(ctx, r, b.Builder, state, title)
	}
	cr, err := g.checkRun(ctx, r, b.Builder)
	if err != nil {
		return "", err
	}
	if cr == nil {
		return "", fmt.Errorf("github: check run %s of run %d not found", checkName(b.Builder), r.ID)
	}
	if cr.GetStatus() == "completed" {
		return "", nil
	}
	now := github.Timestamp{Time: time.Now()}
	_, _, err = g.ri.github.c.Checks.UpdateCheckRun(ctx, g.ri.owner, g.ri.name, cr.GetID(), github.UpdateCheckRunOptions{
		Name: checkName(b.Builder), Status: github.String("completed"), Conclusion: github.String(conclusion), CompletedAt: &now,
		DetailsURL: nonEmpty(b.URL),
		Output:     &github.CheckRunOutput{Title: github.String(title), Summary: github.String(summary)},
	})
	if err != nil {
		return "", fmt.Errorf("github: complete check run %d: %w", cr.GetID(), err)
	}
	return strconv.FormatInt(cr.GetID(), 10), nil
}

func builderSummary(b client.Build) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s: %s in %s.", b.Builder, b.State, dur(b.DurationMS))
	if b.Error != "" {
		fmt.Fprintf(&s, "\n\n%s", b.Error)
	}
	for _, j := range b.Failed {
		fmt.Fprintf(&s, "\n\n- %s", j.Name)
		if j.Classification != "" {
			fmt.Fprintf(&s, " [%s]", j.Classification)
		}
		fmt.Fprintf(&s, ": %s", or(oneLine(j.Error), j.State))
		if j.LogURL != "" {
			fmt.Fprintf(&s, " ([log](%s))", j.LogURL)
		}
	}
	if b.State == client.BuildFailed {
		if m := buildVerdict(b).Message(); m != "" {
			fmt.Fprintf(&s, "\n\n%s", m)
		}
		if b.ClassifyError != "" {
			fmt.Fprintf(&s, "\n\nFailures not compared with the base revision: %s", oneLine(b.ClassifyError))
		}
	}
	return s.String()
}

func (g *githubReporter) result(ctx context.Context, r *client.Run) (string, error) {
	if r.Trigger != "comment" {
		return "", nil
	}
	return "", g.comment(ctx, r, "result", r.Summary+"\n\nRevision: "+r.Revision)
}

// base returns the pull request's base commit, from GitHub.
func (g *githubReporter) base(ctx context.Context, r *client.Run) (string, error) {
	pr, _, err := g.ri.github.c.PullRequests.Get(ctx, g.ri.owner, g.ri.name, int(r.Change))
	if err != nil {
		return "", fmt.Errorf("github: get %s#%d: %w", g.ri.cfg.Slug, r.Change, err)
	}
	if pr.GetBase().GetSHA() == "" {
		return "", fmt.Errorf("%w: %s#%d has no base commit", errNoBase, g.ri.cfg.Slug, r.Change)
	}
	return pr.GetBase().GetSHA(), nil
}
