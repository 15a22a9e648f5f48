package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	"golang.org/x/sync/errgroup"

	"github.com/tryd-ci/tryd/internal/ghapp"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/trydpb"
)

// ErrUnknownTarget is returned by Nudge for a repository or project the
// syncer does not track.
var ErrUnknownTarget = errors.New("ingest: repository or project not tracked")

// ErrNoAccess is wrapped by the error of a sync that GitHub refused
// because the credentials do not reach the repository: it answers 404
// for it (gone, or private and out of reach: for a GitHub App, not in
// its installation on the owner's account), or the App is not installed
// on the owner's account (uninstalled) or its installation there is
// suspended. The other repositories' syncs go on.
var ErrNoAccess = errors.New("ingest: no access to the GitHub repository")

// GitHubApp authenticates as a GitHub App (internal/ghapp): each
// repository is read with a token of the App's installation on its
// owner's account (GitHub installs an App once per account, and an
// installation's token reaches that account's repositories only),
// renewed before it expires.
type GitHubApp struct {
	AppID int64
	// InstallationID is where each owner starts before its own
	// installation is looked up (it may be another account's); 0 looks
	// each owner's up on first use.
	InstallationID int64
	// KeyPEM is the app's RSA private key (PKCS#1 or PKCS#8 PEM).
	KeyPEM []byte
}

// GitHubOptions configures a GitHub syncer.
type GitHubOptions struct {
	// Corpus receives the mutations; it must be a leader (have an
	// Appender). Required.
	Corpus *maintner.Corpus
	// APIURL is the REST base URL (default https://api.github.com/; a
	// GitHub Enterprise server's is https://host/api/v3/).
	APIURL string
	// Token is a personal or installation access token. Either Token or
	// App may be set; with neither, requests are anonymous (60 an hour).
	Token string
	// App authenticates as a GitHub App installation.
	App *GitHubApp
	// Repos are the tracked repositories, "owner/name". Required.
	Repos []string
	// Reconcile is the period of the full pass per repository (default
	// 15 minutes).
	Reconcile time.Duration
	// Transport is the base HTTP transport (default
	// http.DefaultTransport); authentication, conditional requests and
	// rate limiting are layered on it.
	Transport http.RoundTripper
	// CacheBytes bounds the bodies kept for conditional requests
	// (default 64 MiB).
	CacheBytes int64
	// RequestTimeout bounds one REST request, body included (default 2
	// minutes): a connection GitHub never answers on would otherwise
	// stall the repository's worker, and with it every nudge, until a
	// restart.
	RequestTimeout time.Duration
	// Clock is the time source (default the wall clock).
	Clock Clock
	// Logger receives progress and errors (never tokens); nil discards.
	Logger logrus.FieldLogger
	// Registry, if set, receives the tryd_ingest_* metrics.
	Registry *prometheus.Registry
}

// GitHub keeps the GitHub repositories of one server in the corpus.
type GitHub struct {
	opts   GitHubOptions
	c      *maintner.Corpus
	log    logrus.FieldLogger
	clock  Clock
	hc     *http.Client
	base   *url.URL
	gate   *rateGate
	m      *metrics
	repos  map[string]*ghRepo // by lower-case "owner/name"
	sorted []*ghRepo
	// app says the credentials are a GitHub App's, whose installation
	// may not cover a repository (see getRepo).
	app bool
}

// ghRepo is one tracked repository.
type ghRepo struct {
	owner, name string
	q           *queue
	// mu serializes syncs, so that comparing with the corpus and logging
	// the difference is atomic for the repository.
	mu sync.Mutex
	// since is the update time of the last issue seen by a listing pass
	// (GitHub's clock), and listed whether a listing pass completed.
	// Guarded by mu.
	since  time.Time
	listed bool
}

func (r *ghRepo) fullName() string { return r.owner + "/" + r.name }

// NewGitHub validates opts and returns a syncer. Call Run to start its
// workers, or Sync and Reconcile to work synchronously.
func NewGitHub(opts GitHubOptions) (*GitHub, error) {
	if opts.Corpus == nil {
		return nil, errors.New("ingest: GitHubOptions.Corpus is nil")
	}
	if len(opts.Repos) == 0 {
		return nil, errors.New("ingest: GitHubOptions.Repos is empty")
	}
	if opts.Token != "" && opts.App != nil {
		return nil, errors.New("ingest: set GitHubOptions.Token or App, not both")
	}
	if opts.APIURL == "" {
		opts.APIURL = "https://api.github.com/"
	}
	base, err := url.Parse(opts.APIURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("ingest: bad GitHub API URL %q", opts.APIURL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	if opts.Reconcile == 0 {
		opts.Reconcile = 15 * time.Minute
	}
	if opts.Reconcile < 0 {
		return nil, errors.New("ingest: GitHubOptions.Reconcile is negative")
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = 64 << 20
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 2 * time.Minute
	}
	if opts.RequestTimeout < 0 {
		return nil, errors.New("ingest: GitHubOptions.RequestTimeout is negative")
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	g := &GitHub{opts: opts, c: opts.Corpus, log: nopLogger(opts.Logger), clock: opts.Clock, base: base, m: m,
		repos: make(map[string]*ghRepo)}
	for _, full := range opts.Repos {
		owner, name, ok := strings.Cut(full, "/")
		if !ok || !validName(owner) || !validName(name) {
			return nil, fmt.Errorf("ingest: bad GitHub repository %q (want owner/name)", full)
		}
		key := strings.ToLower(full)
		if g.repos[key] != nil {
			return nil, fmt.Errorf("ingest: GitHub repository %q listed twice", full)
		}
		r := &ghRepo{owner: owner, name: name, q: newQueue()}
		g.repos[key] = r
		g.sorted = append(g.sorted, r)
	}
	sort.Slice(g.sorted, func(i, j int) bool { return g.sorted[i].fullName() < g.sorted[j].fullName() })
	g.gate = &rateGate{clock: opts.Clock}
	var rt http.RoundTripper = &githubTransport{base: opts.Transport, gate: g.gate, maxBytes: opts.CacheBytes,
		requests: m.ghRequests, entries: make(map[string]*etagEntry)}
	switch {
	case opts.Token != "":
		rt = &oauth2.Transport{Base: rt, Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: opts.Token})}
	case opts.App != nil:
		// The App's own requests (installation lookups, minting) go
		// through the rate gate too.
		app, err := ghapp.New(ghapp.Options{AppID: opts.App.AppID, KeyPEM: opts.App.KeyPEM, InstallationID: opts.App.InstallationID,
			BaseURL: base, Transport: rt, Now: opts.Clock.Now, Timeout: opts.RequestTimeout})
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		for _, r := range g.sorted {
			app.AddRepo(r.owner, r.name)
		}
		rt = app.Transport(rt)
		g.app = true
	}
	g.hc = &http.Client{Transport: rt, Timeout: opts.RequestTimeout}
	return g, nil
}

// validName accepts a GitHub owner or repository name: letters, digits,
// '-', '_' and '.', not "." or "..".
func validName(s string) bool {
	if s == "" || len(s) > 100 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// client returns a go-github client on the syncer's transport. A fresh
// one per pass: rate limiting is the transport's business (on the
// injected clock), not go-github's memory of the last answer.
func (g *GitHub) client() *github.Client {
	cl := github.NewClient(g.hc)
	u := *g.base
	cl.BaseURL = &u
	return cl
}

func (g *GitHub) repo(full string) *ghRepo { return g.repos[strings.ToLower(full)] }

// Nudge asks for repository "owner/name" to be synced soon: issue (an
// issue or pull request number) in full, or with issue 0 whatever
// changed in the repository since the last pass. It does not wait.
func (g *GitHub) Nudge(repo string, issue int) error {
	r, err := g.target("nudge", repo, issue)
	if err != nil {
		return err
	}
	g.m.nudges.WithLabelValues("github").Inc()
	r.q.add(nudgeWork(issue))
	return nil
}

// Run starts a worker per repository, each beginning with a
// reconciliation pass, and returns when ctx is done.
func (g *GitHub) Run(ctx context.Context) error {
	return runWorkers(ctx, g.sorted, func(ctx context.Context, r *ghRepo) {
		runWorker(ctx, g.clock, g.opts.Reconcile, 0, r.q, func(ctx context.Context, w work) error {
			return g.syncRepo(ctx, r, w)
		}, g.log.WithField("repo", r.fullName()))
	})
}

// Sync synchronously syncs repository "owner/name": issue in full, or
// with issue 0 what changed since the last pass.
func (g *GitHub) Sync(ctx context.Context, repo string, issue int) error {
	r, err := g.target("sync", repo, issue)
	if err != nil {
		return err
	}
	return g.syncRepo(ctx, r, nudgeWork(issue))
}

// target returns the tracked repository that op (nudge, sync) names,
// with a valid issue number.
func (g *GitHub) target(op, repo string, issue int) (*ghRepo, error) {
	r := g.repo(repo)
	if r == nil {
		return nil, fmt.Errorf("%w: GitHub %s", ErrUnknownTarget, repo)
	}
	return r, checkNumber(op, repo, "issue", issue)
}

// Reconcile synchronously runs the full pass over every repository.
func (g *GitHub) Reconcile(ctx context.Context) error { return reconcileAll(ctx, g.sorted, g.syncRepo) }

// syncRepo does w for r: repository metadata, labels and milestones on a
// full pass; a listing of issues (all of them on a full pass, those
// updated since the last listing otherwise); then every issue that is
// new or changed, or nudged, with its comments, events, reviews and pull
// request data. Each issue's changes are logged as one record as soon as
// they are known, so a failure later in the pass loses nothing.
func (g *GitHub) syncRepo(ctx context.Context, r *ghRepo, w work) (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := g.clock.Now()
	defer func() {
		if errors.Is(err, ghapp.ErrNotInstalled) || errors.Is(err, ghapp.ErrSuspended) {
			err = fmt.Errorf("%w %s: %w", ErrNoAccess, r.fullName(), err)
		}
		g.m.observe("github", start, g.clock.Now(), err)
		if err != nil {
			if until := g.gate.closedUntil(); !until.IsZero() {
				err = &errRetryAfter{until: until, err: err}
			}
		}
	}()
	cl := g.client()
	if w.full || !r.listed {
		if err := g.syncRepoMeta(ctx, cl, r); err != nil {
			return err
		}
	}
	details := map[int]bool{}
	for n := range w.items {
		details[n] = true
	}
	if w.full || w.all || !r.listed {
		// A second of overlap: GitHub's times have whole seconds, and
		// an issue updated later in the same second as the last one
		// listed must not be missed (listing it twice costs nothing).
		since := r.since.Add(-time.Second)
		if w.full || r.since.IsZero() {
			since = time.Time{}
		}
		latest, err := g.listIssues(ctx, cl, r, since, w.full, details)
		if err != nil {
			return err
		}
		if latest.After(r.since) {
			r.since = latest
		}
		r.listed = true
	}
	nums := make([]int, 0, len(details))
	for n := range details {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		if err := g.syncIssue(ctx, cl, r, n); err != nil {
			return err
		}
	}
	return nil
}

// log records mutations, counting them.
func (g *GitHub) logMut(ctx context.Context, ms ...*maintner.Mutation) error {
	if len(ms) == 0 {
		return nil
	}
	if err := g.c.LogBatch(ctx, ms...); err != nil {
		return err
	}
	g.m.mutations.WithLabelValues("github").Add(float64(len(ms)))
	return nil
}

// getRepo returns the repository, or an error that wraps ErrNoAccess
// when GitHub answers 404.
func (g *GitHub) getRepo(ctx context.Context, cl *github.Client, r *ghRepo) (*github.Repository, error) {
	gr, _, err := cl.Repositories.Get(ctx, r.owner, r.name)
	switch {
	case isNotFound(err) && g.app:
		return nil, fmt.Errorf("%w %s (GitHub answers 404: it is gone, or not in the GitHub App's installation on %s's account): %w",
			ErrNoAccess, r.fullName(), r.owner, err)
	case isNotFound(err):
		return nil, fmt.Errorf("%w %s (GitHub answers 404: it is gone, or private and out of the token's reach): %w", ErrNoAccess, r.fullName(), err)
	case err != nil:
		return nil, fmt.Errorf("ingest: GitHub %s: get repository: %w", r.fullName(), err)
	}
	return gr, nil
}

func (g *GitHub) syncRepoMeta(ctx context.Context, cl *github.Client, r *ghRepo) error {
	gr, err := g.getRepo(ctx, cl, r)
	if err != nil {
		return err
	}
	var labels []*github.Label
	opt := &github.ListOptions{PerPage: 100}
	for page := 0; page < maxPages; page++ {
		ls, resp, err := cl.Issues.ListLabels(ctx, r.owner, r.name, opt)
		if err != nil {
			return fmt.Errorf("ingest: GitHub %s: list labels: %w", r.fullName(), err)
		}
		labels = append(labels, ls...)
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	var milestones []*github.Milestone
	mopt := &github.MilestoneListOptions{State: "all", ListOptions: github.ListOptions{PerPage: 100}}
	for page := 0; page < maxPages; page++ {
		ms, resp, err := cl.Issues.ListMilestones(ctx, r.owner, r.name, mopt)
		if err != nil {
			return fmt.Errorf("ingest: GitHub %s: list milestones: %w", r.fullName(), err)
		}
		milestones = append(milestones, ms...)
		if resp.NextPage == 0 {
			break
		}
		mopt.Page = resp.NextPage
	}
	g.c.RLock()
	m := repoMutation(g.c.GitHubRepo(r.owner, r.name), r.owner, r.name, gr, labels, milestones)
	g.c.RUnlock()
	if m == nil {
		return nil
	}
	return g.logMut(ctx, m)
}

// maxPages bounds a paginated listing (100 per page), against a server
// that never ends one.
const maxPages = 10000

// listIssues lists the repository's issues and pull requests updated at
// or after since (all of them when since is zero), logs the changes the
// listing itself shows, and adds to details the numbers whose comments,
// events or pull request data must be fetched: new issues, issues whose
// update time moved, and on a full pass every open pull request (its
// reviews do not always move the update time). It returns the latest
// update time seen.
func (g *GitHub) listIssues(ctx context.Context, cl *github.Client, r *ghRepo, since time.Time, full bool, details map[int]bool) (time.Time, error) {
	opt := &github.IssueListByRepoOptions{State: "all", Sort: "updated", Direction: "asc", Since: since,
		ListOptions: github.ListOptions{PerPage: 100}}
	if full {
		// Pages sorted by creation keep their contents (and ETags) while
		// nothing on them changes, so a full pass of a quiet repository
		// costs only 304s.
		opt.Sort = "created"
	}
	var latest time.Time
	for page := 0; page < maxPages; page++ {
		issues, resp, err := cl.Issues.ListByRepo(ctx, r.owner, r.name, opt)
		if err != nil {
			return latest, fmt.Errorf("ingest: GitHub %s: list issues: %w", r.fullName(), err)
		}
		var ms []*maintner.Mutation
		g.c.RLock()
		cr := g.c.GitHubRepo(r.owner, r.name)
		for _, gi := range issues {
			n := gi.GetNumber()
			if n <= 0 || n > 1<<31-1 {
				continue
			}
			if t := gi.GetUpdatedAt().Time; t.After(latest) {
				latest = t
			}
			var ci *maintner.GitHubIssue
			if cr != nil {
				ci = cr.Issue(int32(n))
			}
			if ci == nil || ci.NotExist || maintner.TimeOf(gi.GetUpdatedAt().Time) != ci.Updated ||
				full && gi.IsPullRequest() && gi.GetState() == "open" {
				details[n] = true
				continue // syncIssue fetches it again with everything else
			}
			if m := g.issueMutation(ci, r.owner, r.name, gi); !emptyIssueMutation(m) {
				ms = append(ms, &maintner.Mutation{Base: basePB(m)})
			}
		}
		g.c.RUnlock()
		if err := g.logMut(ctx, ms...); err != nil {
			return latest, err
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	return latest, nil
}

// syncIssue fetches issue n with its comments and events, and for a pull
// request its reviews and head/base data, and logs the differences with
// the corpus as one record.
func (g *GitHub) syncIssue(ctx context.Context, cl *github.Client, r *ghRepo, n int) error {
	return g.syncIssueAssuming(ctx, cl, r, n, g.isKnownPR(r, n))
}

// syncIssueAssuming is syncIssue; knownPR says the corpus knows n as a
// pull request. Requests go out concurrently: the issue, its comments and
// events, and for a known pull request its reviews and pull request data;
// then the head's statuses and check runs. A nudge costs two or three
// round trips, not seven.
func (g *GitHub) syncIssueAssuming(ctx context.Context, cl *github.Client, r *ghRepo, n int, knownPR bool) error {
	var (
		gi       *github.Issue
		notExist bool
		comments []*github.IssueComment
		events   []*github.IssueEvent
		reviews  []*github.PullRequestReview
		pr       *github.PullRequest
	)
	prData := func(eg *errgroup.Group, ctx context.Context) {
		eg.Go(func() (err error) {
			reviews, err = listAll(func(o *github.ListOptions) ([]*github.PullRequestReview, *github.Response, error) {
				return cl.PullRequests.ListReviews(ctx, r.owner, r.name, n, o)
			})
			if err != nil {
				return fmt.Errorf("ingest: GitHub %s#%d: list reviews: %w", r.fullName(), n, err)
			}
			return nil
		})
		eg.Go(func() (err error) {
			if pr, _, err = cl.PullRequests.Get(ctx, r.owner, r.name, n); err != nil {
				return fmt.Errorf("ingest: GitHub %s#%d: get pull request: %w", r.fullName(), n, err)
			}
			return nil
		})
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var resp *github.Response
		var err error
		gi, resp, err = cl.Issues.Get(ectx, r.owner, r.name, n)
		if err != nil {
			if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone) {
				notExist = true
				return nil
			}
			return fmt.Errorf("ingest: GitHub %s#%d: get issue: %w", r.fullName(), n, err)
		}
		return nil
	})
	eg.Go(func() error {
		copt := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
		// Only comments created or edited since the latest one the
		// corpus has: a busy pull request costs one short page, not all
		// its history.
		if since := g.latestComment(r, n); !since.IsZero() {
			since = since.Add(-time.Second) // a second of overlap, as in syncRepo
			copt.Since = &since
		}
		var err error
		comments, err = listAll(func(o *github.ListOptions) ([]*github.IssueComment, *github.Response, error) {
			copt.ListOptions = *o
			return cl.Issues.ListComments(ectx, r.owner, r.name, n, copt)
		})
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("ingest: GitHub %s#%d: list comments: %w", r.fullName(), n, err)
		}
		return nil
	})
	eg.Go(func() error {
		var err error
		events, err = listAll(func(o *github.ListOptions) ([]*github.IssueEvent, *github.Response, error) {
			return cl.Issues.ListIssueEvents(ectx, r.owner, r.name, n, o)
		})
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("ingest: GitHub %s#%d: list events: %w", r.fullName(), n, err)
		}
		return nil
	})
	if knownPR {
		prData(eg, ectx)
	}
	if err := eg.Wait(); err != nil {
		if knownPR && isNotFound(err) {
			// No longer a pull request (or gone): look again without
			// assuming anything.
			return g.syncIssueAssuming(ctx, cl, r, n, false)
		}
		return err
	}
	if notExist {
		// A repository out of reach answers 404 for each of its
		// issues: the issue is gone only if the repository is there.
		if _, err := g.getRepo(ctx, cl, r); err != nil {
			return err
		}
	}
	if notExist || gi.GetNumber() != n {
		// Deleted, or transferred (the answer names another number).
		return g.markNotExist(ctx, r, n)
	}
	if gi.IsPullRequest() && !knownPR {
		eg, ectx := errgroup.WithContext(ctx)
		prData(eg, ectx)
		if err := eg.Wait(); err != nil {
			return err
		}
	}
	var statuses []*github.RepoStatus
	var checks []*github.CheckRun
	if head := pr.GetHead().GetSHA(); head != "" {
		var err error
		if statuses, checks, err = g.headResults(ctx, cl, r, head); err != nil {
			return fmt.Errorf("ingest: GitHub %s#%d: %w", r.fullName(), n, err)
		}
	}
	g.c.RLock()
	var ci *maintner.GitHubIssue
	if cr := g.c.GitHubRepo(r.owner, r.name); cr != nil {
		ci = cr.Issue(int32(n))
	}
	if ci != nil && ci.NotExist {
		ci = nil
	}
	m := g.issueMutation(ci, r.owner, r.name, gi)
	fields := !emptyIssueMutation(m)
	m.Comment = g.commentMutations(ci, comments)
	m.Event = eventMutations(ci, r.owner, r.name, events)
	m.Review = g.reviewMutations(ci, reviews)
	var ext *prExt
	var xs []*trydpb.GithubStatus
	var xc []*trydpb.GithubCheckRun
	if pr != nil {
		ext = prMutation(ci, r.owner, r.name, pr)
		cr := g.c.GitHubRepo(r.owner, r.name)
		xs = statusMutations(cr, r.owner, r.name, pr.GetHead().GetSHA(), statuses)
		xc = checkRunMutations(cr, r.owner, r.name, checks)
	}
	g.c.RUnlock()
	mut := &maintner.Mutation{}
	if fields || len(m.Comment) > 0 || len(m.Event) > 0 || len(m.Review) > 0 {
		mut.Base = basePB(m)
	}
	if ext != nil || len(xs) > 0 || len(xc) > 0 {
		mut.Ext = &trydpb.Ext{GithubPullRequest: ext, GithubStatus: xs, GithubCheckRun: xc}
	}
	if mut.Base == nil && mut.Ext == nil {
		return nil
	}
	return g.logMut(ctx, mut)
}

// headResults lists the latest commit status per context and the latest
// check runs on a pull request's head commit.
func (g *GitHub) headResults(ctx context.Context, cl *github.Client, r *ghRepo, sha string) (statuses []*github.RepoStatus, checks []*github.CheckRun, err error) {
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() (err error) {
		statuses, err = listAll(func(o *github.ListOptions) ([]*github.RepoStatus, *github.Response, error) {
			cs, resp, err := cl.Repositories.GetCombinedStatus(ectx, r.owner, r.name, sha, o)
			if cs == nil {
				return nil, resp, err
			}
			return cs.Statuses, resp, err
		})
		if err != nil {
			return fmt.Errorf("statuses of %s: %w", sha, err)
		}
		return nil
	})
	eg.Go(func() (err error) {
		copt := &github.ListCheckRunsOptions{}
		checks, err = listAll(func(o *github.ListOptions) ([]*github.CheckRun, *github.Response, error) {
			copt.ListOptions = *o
			res, resp, err := cl.Checks.ListCheckRunsForRef(ectx, r.owner, r.name, sha, copt)
			if res == nil {
				return nil, resp, err
			}
			return res.CheckRuns, resp, err
		})
		if err != nil {
			return fmt.Errorf("check runs of %s: %w", sha, err)
		}
		return nil
	})
	return statuses, checks, eg.Wait()
}

// listAll follows a listing's pages (100 items each) to the end.
func listAll[T any](list func(*github.ListOptions) ([]T, *github.Response, error)) ([]T, error) {
	var all []T
	opt := &github.ListOptions{PerPage: 100}
	for page := 0; page < maxPages; page++ {
		items, resp, err := list(opt)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	return all, nil
}

// isNotFound reports whether err is GitHub's 404.
func isNotFound(err error) bool {
	var er *github.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound
}

// isKnownPR reports whether the corpus knows issue n as a pull request.
func (g *GitHub) isKnownPR(r *ghRepo, n int) bool {
	g.c.RLock()
	defer g.c.RUnlock()
	if cr := g.c.GitHubRepo(r.owner, r.name); cr != nil {
		if ci := cr.Issue(int32(n)); ci != nil && !ci.NotExist {
			return ci.PullRequest
		}
	}
	return false
}

// latestComment returns the latest update time of issue n's comments in
// the corpus, or the zero time.
func (g *GitHub) latestComment(r *ghRepo, n int) time.Time {
	g.c.RLock()
	defer g.c.RUnlock()
	cr := g.c.GitHubRepo(r.owner, r.name)
	if cr == nil {
		return time.Time{}
	}
	ci := cr.Issue(int32(n))
	if ci == nil {
		return time.Time{}
	}
	var latest maintner.Time
	for i := range ci.Comments {
		latest = max(latest, ci.Comments[i].Updated, ci.Comments[i].Created)
	}
	return latest.Time()
}

// markNotExist records that issue n is gone (deleted, transferred), as
// x/build does, unless the corpus already says so.
func (g *GitHub) markNotExist(ctx context.Context, r *ghRepo, n int) error {
	g.c.RLock()
	var ci *maintner.GitHubIssue
	if cr := g.c.GitHubRepo(r.owner, r.name); cr != nil {
		ci = cr.Issue(int32(n))
	}
	done := ci == nil || ci.NotExist
	g.c.RUnlock()
	if done {
		// Nothing known about it: a nudge for an issue that never
		// existed logs nothing.
		return nil
	}
	return g.logMut(ctx, &maintner.Mutation{Base: basePB(&issueMut{Owner: r.owner, Repo: r.name, Number: int32(n), NotExist: true})})
}

func nopLogger(l logrus.FieldLogger) logrus.FieldLogger {
	if l != nil {
		return l
	}
	n := logrus.New()
	n.SetOutput(discard{})
	return n
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
