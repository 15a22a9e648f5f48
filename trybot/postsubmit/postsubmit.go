// Package postsubmit builds what lands: every new commit of a watched
// branch with the branch's post-submit builders (oldest first, at the
// coordinator's post-submit priority, below try runs), force builds of any
// commit × builder, and periodic builds on a cron schedule per builder.
// It also compares a try run's failures with the change's base revision
// (see Classify), reusing post-submit results when they exist, and sums
// the classifications up for the trybot's message and vote (Verdict).
//
// # Results for the grid
//
// Builds carry the labels the dashboard's grid reads (dashboard.Label*):
// repo, branch, revision, builder, commit_author, commit_subject,
// commit_time (RFC 3339) and kind (post-submit, periodic, or base for a
// base build Classify had to run); force builds add forced=1. The
// coordinator's build list is the only state: a commit × builder that
// already has a post-submit build is not built again, and the last built
// commit of a branch is the revision of its newest post-submit build, so a
// restart resumes where the last run stopped.
//
// # History
//
// Branch heads and commits come from git: a bare clone per repository in
// Options.Dir, fetched from the repository's URL (normally gitmirror's
// smart HTTP URL, which also serves the builds' sources), so the package
// works the same for Gerrit and GitHub repositories. A gitmirror that
// requires a token gets it through Options.Credentials, as an HTTP header
// git sends to that server only, set in git's environment rather than on
// its command line. Update is the entry point for an event (a corpus ref
// update or a GitHub push); Run also polls every PollInterval as a safety
// net.
//
// # Force API
//
// Builder.Handler serves POST /api/force (see there) behind the admin
// token.
package postsubmit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gitexec"
)

// Build labels (the dashboard grid's contract, see dashboard.Label*).
const (
	LabelRepo     = "repo"
	LabelBranch   = "branch"
	LabelRevision = "revision"
	LabelBuilder  = "builder"
	LabelAuthor   = "commit_author"
	LabelSubject  = "commit_subject"
	LabelTime     = "commit_time"
	LabelKind     = "kind"
	LabelForced   = "forced"
)

// Kinds of builds this package submits (the kind label).
const (
	KindPostSubmit = "post-submit"
	KindPeriodic   = "periodic"
	KindBase       = "base"
)

// Errors callers act on.
var (
	// ErrUnknown marks a repository, branch or builder that is not
	// configured (a bad request).
	ErrUnknown = errors.New("postsubmit: unknown")
	// ErrBadRevision marks a revision that is not a full commit hash or
	// that the repository does not have.
	ErrBadRevision = errors.New("postsubmit: bad revision")
)

// Planner makes the graph of a builder for a source (trybot.Builders
// implements it).
type Planner interface {
	Plan(builder string, src graph.Source) (*graph.Graph, error)
}

// Repo is a repository whose branches are watched.
type Repo struct {
	// Name is the repository's name in tryd (the repo label).
	Name string
	// URL is the git URL builds fetch their source from (gitmirror's).
	URL string
	// Branches are watched (default: main).
	Branches []string
}

// Options configures a Builder. Coordinator, Planner, Repos, Builders and
// Dir are required.
type Options struct {
	Coordinator *api.Client
	Planner     Planner
	Repos       []Repo
	// Builders are the configured builders; those with post_submit build
	// new commits, those with periodic build on their schedule.
	Builders []config.Builder
	// Dir holds the bare clones used to read history.
	Dir string
	// Git is the git program (default "git").
	Git string
	// CommandTimeout bounds each git command (default 10m), so that a
	// hung fetch cannot hold a repository's lock, and with it every
	// later update of the repository, for ever.
	CommandTimeout time.Duration
	// Credentials are bearer tokens git sends to repository URLs (the
	// gitmirror token, for Repos' gitmirror URLs). They reach git through
	// its environment (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n,
	// GIT_CONFIG_VALUE_n as http.<prefix>.extraHeader), never its
	// command line, so that other users cannot see them in the process
	// list, and only to URLs under their prefix.
	Credentials []Credential
	// Backfill is how many commits of a branch seen for the first time
	// are built, newest first counted (default 1: just its head).
	Backfill int
	// MaxCommits bounds the commits built for one update; older ones are
	// skipped, with a log line (default 50).
	MaxCommits int
	// PollInterval is how often Run checks every watched branch without
	// an event (default 5m; negative: never).
	PollInterval time.Duration
	// Log receives the package's logs (default: discarded).
	Log logrus.FieldLogger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Credential is a bearer token git sends to the repository URLs under
// its URLPrefix (see gitexec.Credential, which validates it).
type Credential = gitexec.Credential

// gitEnv is git's environment: the process's, without prompts or
// system configuration, with the credentials as extra headers.
func gitEnv(creds []Credential) ([]string, error) {
	cenv, err := gitexec.CredentialEnv(creds)
	if err != nil {
		return nil, fmt.Errorf("postsubmit: %w", err)
	}
	return append(append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C"), cenv...), nil
}

// Builder submits post-submit, force and periodic builds.
type Builder struct {
	opts     Options
	gitEnv   []string // git's environment, credentials included
	log      logrus.FieldLogger
	repos    map[string]Repo
	builders map[string]config.Builder
	periodic map[string]cron.Schedule // by builder
	nudge    chan struct{}

	mu       sync.Mutex
	lastHead map[string]string // repo\x00branch → last commit built
	repoMu   map[string]*sync.Mutex
}

var (
	hashRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	// branchRE accepts the branch names tryd builds: no option-like or
	// ref-syntax surprises reach git.
	branchRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$`)
)

// New validates opts (cron schedules included) and returns a Builder.
func New(opts Options) (*Builder, error) {
	if opts.Coordinator == nil || opts.Planner == nil {
		return nil, errors.New("postsubmit: Options.Coordinator and Options.Planner are required")
	}
	if opts.Dir == "" {
		return nil, errors.New("postsubmit: Options.Dir is empty")
	}
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 10 * time.Minute
	}
	if opts.Backfill <= 0 {
		opts.Backfill = 1
	}
	if opts.MaxCommits <= 0 {
		opts.MaxCommits = 50
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 5 * time.Minute
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		opts.Log = l
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	env, err := gitEnv(opts.Credentials)
	if err != nil {
		return nil, err
	}
	b := &Builder{opts: opts, gitEnv: env, log: opts.Log, repos: map[string]Repo{}, builders: map[string]config.Builder{},
		periodic: map[string]cron.Schedule{}, nudge: make(chan struct{}, 1), lastHead: map[string]string{}, repoMu: map[string]*sync.Mutex{}}
	for _, r := range opts.Repos {
		if r.Name == "" || r.URL == "" {
			return nil, fmt.Errorf("postsubmit: repository %q needs a name and a URL", r.Name)
		}
		if len(r.Branches) == 0 {
			r.Branches = []string{"main"}
		}
		for _, br := range r.Branches {
			if !branchRE.MatchString(br) || strings.Contains(br, "..") {
				return nil, fmt.Errorf("postsubmit: repository %q: bad branch name %q", r.Name, br)
			}
		}
		b.repos[r.Name] = r
	}
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	for _, c := range opts.Builders {
		b.builders[c.Name] = c
		if c.Periodic != "" {
			s, err := parser.Parse(c.Periodic)
			if err != nil {
				return nil, fmt.Errorf("postsubmit: builder %q: periodic %q: %w", c.Name, c.Periodic, err)
			}
			b.periodic[c.Name] = s
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("postsubmit: %w", err)
	}
	return b, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// applies reports whether builder c builds repo's branch.
func applies(c config.Builder, repo, branch string) bool {
	return (len(c.Repos) == 0 || slices.Contains(c.Repos, repo)) &&
		(len(c.Branches) == 0 || slices.Contains(c.Branches, branch))
}

// postSubmitBuilders returns the post-submit builders of repo's branch,
// sorted.
func (b *Builder) postSubmitBuilders(repo, branch string) []string {
	var out []string
	for name, c := range b.builders {
		if c.PostSubmit && applies(c, repo, branch) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Commit is a commit of a watched branch.
type Commit struct {
	Hash    string
	Author  string
	Subject string
	Time    time.Time
}

// labels returns the grid labels of a build of c.
func labels(repo, branch, builder, kind string, c Commit) map[string]string {
	l := map[string]string{LabelRepo: repo, LabelRevision: c.Hash, LabelBuilder: builder, LabelKind: kind}
	if branch != "" {
		l[LabelBranch] = branch
	}
	if c.Author != "" {
		l[LabelAuthor] = clip(c.Author)
	}
	if c.Subject != "" {
		l[LabelSubject] = clip(c.Subject)
	}
	if !c.Time.IsZero() {
		l[LabelTime] = c.Time.UTC().Format(time.RFC3339)
	}
	return l
}

// clip keeps label values within what the coordinator accepts.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}

// Update builds the new commits of repo's branch up to head (empty: the
// branch's current head), oldest first, with the branch's post-submit
// builders, and returns the IDs of the builds it submitted. Commits that
// already have a post-submit build of a builder are not built again.
func (b *Builder) Update(ctx context.Context, repo, branch, head string) ([]int64, error) {
	r, ok := b.repos[repo]
	if !ok {
		return nil, fmt.Errorf("%w repository %q", ErrUnknown, repo)
	}
	if !slices.Contains(r.Branches, branch) {
		return nil, fmt.Errorf("%w branch %q of %s (not watched)", ErrUnknown, branch, repo)
	}
	if head != "" && !hashRE.MatchString(head) {
		return nil, fmt.Errorf("%w: %q is not a full commit hash", ErrBadRevision, head)
	}
	builders := b.postSubmitBuilders(repo, branch)
	if len(builders) == 0 {
		return nil, nil
	}
	m := b.lockRepo(repo)
	m.Lock()
	defer m.Unlock()
	fetched, err := b.fetchBranch(ctx, r, branch)
	if err != nil {
		return nil, err
	}
	if head == "" {
		head = fetched
	} else if err := b.haveCommit(ctx, r, head); err != nil {
		return nil, err
	}
	last, err := b.lastBuilt(ctx, repo, branch)
	if err != nil {
		return nil, err
	}
	if last == head {
		return nil, nil
	}
	var commits []Commit
	if last == "" || b.haveCommit(ctx, r, last) != nil {
		commits, err = b.history(ctx, r, head, "", b.opts.Backfill)
	} else {
		commits, err = b.history(ctx, r, head, last, b.opts.MaxCommits+1)
		if len(commits) > b.opts.MaxCommits {
			b.log.WithFields(logrus.Fields{"repo": repo, "branch": branch, "limit": b.opts.MaxCommits}).
				Warn("post-submit: more new commits than the limit; building only the newest")
			commits = commits[len(commits)-b.opts.MaxCommits:]
		}
	}
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, c := range commits {
		for _, name := range builders {
			have, err := b.hasBuild(ctx, map[string]string{LabelRepo: repo, LabelRevision: c.Hash, LabelBuilder: name, LabelKind: KindPostSubmit})
			if err != nil {
				return ids, err
			}
			if have {
				continue
			}
			id, err := b.submit(ctx, r, name, api.PriorityPostSubmit, labels(repo, branch, name, KindPostSubmit, c))
			if err != nil {
				return ids, err
			}
			ids = append(ids, id)
		}
		b.mu.Lock()
		b.lastHead[repo+"\x00"+branch] = c.Hash
		b.mu.Unlock()
	}
	return ids, nil
}

// ForceRequest asks for one commit × builder to be built again.
type ForceRequest struct {
	Repo     string `json:"repo"`
	Revision string `json:"revision"`
	Builder  string `json:"builder"`
	// Branch is the grid the result belongs to (default: the branch of
	// an earlier build of the commit, else the repository's first
	// watched branch).
	Branch string `json:"branch,omitempty"`
}

// Force builds one commit × builder again (at post-submit priority) and
// returns the build's ID. Jobs whose results the cache holds are reused;
// failed jobs run again.
func (b *Builder) Force(ctx context.Context, req ForceRequest) (int64, error) {
	r, ok := b.repos[req.Repo]
	if !ok {
		return 0, fmt.Errorf("%w repository %q", ErrUnknown, req.Repo)
	}
	if _, ok := b.builders[req.Builder]; !ok {
		return 0, fmt.Errorf("%w builder %q", ErrUnknown, req.Builder)
	}
	if !hashRE.MatchString(req.Revision) {
		return 0, fmt.Errorf("%w: %q is not a full commit hash", ErrBadRevision, req.Revision)
	}
	if req.Branch != "" && !slices.Contains(r.Branches, req.Branch) {
		return 0, fmt.Errorf("%w branch %q of %s (not watched)", ErrUnknown, req.Branch, req.Repo)
	}
	m := b.lockRepo(req.Repo)
	m.Lock()
	defer m.Unlock()
	if err := b.fetchCommit(ctx, r, req.Revision); err != nil {
		return 0, err
	}
	cs, err := b.history(ctx, r, req.Revision, "", 1)
	if err != nil {
		return 0, err
	}
	branch := req.Branch
	if branch == "" {
		prev, err := b.opts.Coordinator.Builds(ctx, api.ListOptions{Labels: map[string]string{LabelRepo: req.Repo, LabelRevision: req.Revision}, Limit: 1})
		if err != nil {
			return 0, fmt.Errorf("postsubmit: force: %w", err)
		}
		if len(prev) > 0 && prev[0].Labels[LabelBranch] != "" {
			branch = prev[0].Labels[LabelBranch]
		} else {
			branch = r.Branches[0]
		}
	}
	l := labels(req.Repo, branch, req.Builder, KindPostSubmit, cs[0])
	l[LabelForced] = "1"
	return b.submit(ctx, r, req.Builder, api.PriorityPostSubmit, l)
}

// submit plans builder's graph at the labels' revision and submits it.
func (b *Builder) submit(ctx context.Context, r Repo, builder string, prio api.Priority, l map[string]string) (int64, error) {
	g, err := b.opts.Planner.Plan(builder, graph.Source{Repo: r.URL, Revision: l[LabelRevision]})
	if err != nil {
		return 0, fmt.Errorf("postsubmit: plan %s at %s: %w", builder, l[LabelRevision], err)
	}
	resp, err := b.opts.Coordinator.Submit(ctx, api.SubmitRequest{Graph: *g, Priority: prio, Labels: l})
	if err != nil {
		return 0, fmt.Errorf("postsubmit: submit %s at %s: %w", builder, l[LabelRevision], err)
	}
	b.log.WithFields(logrus.Fields{"repo": r.Name, "revision": l[LabelRevision], "builder": builder, "kind": l[LabelKind], "build": resp.BuildID}).Info("submitted build")
	return resp.BuildID, nil
}

func (b *Builder) hasBuild(ctx context.Context, l map[string]string) (bool, error) {
	bs, err := b.opts.Coordinator.Builds(ctx, api.ListOptions{Labels: l, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("postsubmit: list builds: %w", err)
	}
	return len(bs) > 0, nil
}

// lastBuilt returns the newest commit of the branch with a post-submit
// build: remembered, or (after a restart) read from the coordinator.
func (b *Builder) lastBuilt(ctx context.Context, repo, branch string) (string, error) {
	key := repo + "\x00" + branch
	b.mu.Lock()
	last, ok := b.lastHead[key]
	b.mu.Unlock()
	if ok {
		return last, nil
	}
	bs, err := b.opts.Coordinator.Builds(ctx, api.ListOptions{Labels: map[string]string{LabelRepo: repo, LabelBranch: branch, LabelKind: KindPostSubmit}, Limit: 20})
	if err != nil {
		return "", fmt.Errorf("postsubmit: list builds: %w", err)
	}
	for _, bl := range bs {
		// Force builds may be of old commits; the newest regular
		// build names the last commit built.
		if bl.Labels[LabelForced] == "" {
			return bl.Labels[LabelRevision], nil
		}
	}
	return "", nil
}

func (b *Builder) lockRepo(repo string) *sync.Mutex {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.repoMu[repo]
	if m == nil {
		m = &sync.Mutex{}
		b.repoMu[repo] = m
	}
	return m
}

// ---- git ----

func (b *Builder) gitDir(r Repo) string {
	safe := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			return c
		}
		return '_'
	}, r.Name)
	return filepath.Join(b.opts.Dir, safe+".git")
}

// git runs a git command in r's bare clone (made first if missing) and
// returns its standard output. A failure wraps a *gitexec.Error, which
// quotes git's standard error (never its arguments).
func (b *Builder) git(ctx context.Context, r Repo, args ...string) ([]byte, error) {
	dir := b.gitDir(r)
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		mk := gitexec.Cmd{Git: b.opts.Git, Env: b.gitEnv, Args: []string{"init", "--bare", "--quiet", dir}, Timeout: b.opts.CommandTimeout}
		if err := mk.Run(ctx); err != nil {
			return nil, fmt.Errorf("postsubmit: clone of %s: %w", r.Name, err)
		}
	}
	out, err := gitexec.Cmd{Git: b.opts.Git, Env: b.gitEnv, Args: append([]string{"--git-dir=" + dir}, args...), Timeout: b.opts.CommandTimeout}.Output(ctx)
	if err != nil {
		return nil, fmt.Errorf("postsubmit: %s: %w", r.Name, err)
	}
	return out, nil
}

// fetchBranch fetches the branch and returns its head.
func (b *Builder) fetchBranch(ctx context.Context, r Repo, branch string) (string, error) {
	local := "refs/tryd/heads/" + branch
	if _, err := b.git(ctx, r, "fetch", "--quiet", "--no-tags", "--end-of-options", r.URL, "+refs/heads/"+branch+":"+local); err != nil {
		return "", err
	}
	out, err := b.git(ctx, r, "rev-parse", "--verify", "--end-of-options", local+"^{commit}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// fetchCommit makes sure the clone has the commit.
func (b *Builder) fetchCommit(ctx context.Context, r Repo, rev string) error {
	if b.haveCommit(ctx, r, rev) == nil {
		return nil
	}
	if _, err := b.git(ctx, r, "fetch", "--quiet", "--no-tags", "--end-of-options", r.URL, rev); err != nil {
		// Servers that refuse fetching by hash (and any server, for a
		// commit it does not have): every branch. When that fails too,
		// the server is unreachable or refuses us: not the revision's
		// fault.
		if _, err2 := b.git(ctx, r, "fetch", "--quiet", "--no-tags", "--end-of-options", r.URL, "+refs/heads/*:refs/tryd/heads/*"); err2 != nil {
			return fmt.Errorf("postsubmit: fetch %s of %s: %w", rev, r.Name, err2)
		}
	}
	return b.haveCommit(ctx, r, rev)
}

func (b *Builder) haveCommit(ctx context.Context, r Repo, rev string) error {
	if _, err := b.git(ctx, r, "cat-file", "-e", "--end-of-options", rev+"^{commit}"); err != nil {
		return fmt.Errorf("%w: %s has no commit %s", ErrBadRevision, r.Name, rev)
	}
	return nil
}

// history returns the first-parent commits of head not reachable from
// since (all, when since is empty), at most max of the newest, oldest
// first.
func (b *Builder) history(ctx context.Context, r Repo, head, since string, max int) ([]Commit, error) {
	args := []string{"log", "--first-parent", fmt.Sprintf("--max-count=%d", max), "--format=%H%x00%an <%ae>%x00%cI%x00%s%x1e", "--end-of-options", head}
	if since != "" {
		args = append(args, "^"+since)
	}
	out, err := b.git(ctx, r, args...)
	if err != nil {
		return nil, err
	}
	return parseLog(out)
}

// parseLog parses history's format: records separated by 0x1e, fields
// by NUL, newest first; it returns them oldest first.
func parseLog(out []byte) ([]Commit, error) {
	var cs []Commit
	for _, rec := range bytes.Split(out, []byte{0x1e}) {
		rec = bytes.TrimSpace(rec)
		if len(rec) == 0 {
			continue
		}
		f := strings.Split(string(rec), "\x00")
		if len(f) != 4 || !hashRE.MatchString(f[0]) {
			return nil, fmt.Errorf("postsubmit: unexpected git log record %q", clip(string(rec)))
		}
		t, err := time.Parse(time.RFC3339, f[2])
		if err != nil {
			return nil, fmt.Errorf("postsubmit: git log: commit %s: bad time %q", f[0], clip(f[2]))
		}
		cs = append(cs, Commit{Hash: f[0], Author: f[1], Time: t, Subject: f[3]})
	}
	slices.Reverse(cs)
	return cs, nil
}

// ---- polling and periodic builds ----

// Nudge asks Run to look at every watched branch now (e.g. after the
// corpus saw a ref update).
func (b *Builder) Nudge() {
	select {
	case b.nudge <- struct{}{}:
	default:
	}
}

// UpdateAll runs Update for every watched branch and returns the first
// error (the others are logged).
func (b *Builder) UpdateAll(ctx context.Context) error {
	var first error
	names := make([]string, 0, len(b.repos))
	for n := range b.repos {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, br := range b.repos[n].Branches {
			if _, err := b.Update(ctx, n, br, ""); err != nil {
				b.log.WithError(err).WithFields(logrus.Fields{"repo": n, "branch": br}).Warn("post-submit update failed")
				if first == nil {
					first = err
				}
			}
		}
	}
	return first
}

// Periodic submits the periodic builds due in (after, now]: for each
// builder whose schedule fires in that interval, a build of the head of
// every watched branch it builds. It returns the builds' IDs.
func (b *Builder) Periodic(ctx context.Context, after, now time.Time) ([]int64, error) {
	var ids []int64
	names := make([]string, 0, len(b.periodic))
	for n := range b.periodic {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		if next := b.periodic[name].Next(after); next.After(now) {
			continue
		}
		c := b.builders[name]
		for _, rn := range sortedKeys(b.repos) {
			r := b.repos[rn]
			for _, br := range r.Branches {
				if !applies(c, rn, br) {
					continue
				}
				id, err := b.periodicBuild(ctx, r, br, name)
				if err != nil {
					return ids, err
				}
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

func (b *Builder) periodicBuild(ctx context.Context, r Repo, branch, builder string) (int64, error) {
	m := b.lockRepo(r.Name)
	m.Lock()
	defer m.Unlock()
	head, err := b.fetchBranch(ctx, r, branch)
	if err != nil {
		return 0, err
	}
	cs, err := b.history(ctx, r, head, "", 1)
	if err != nil {
		return 0, err
	}
	return b.submit(ctx, r, builder, api.PriorityPeriodic, labels(r.Name, branch, builder, KindPeriodic, cs[0]))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// nextPeriodic returns when the next periodic build is due after t (zero
// when no builder is periodic).
func (b *Builder) nextPeriodic(t time.Time) time.Time {
	var next time.Time
	for _, s := range b.periodic {
		if n := s.Next(t); next.IsZero() || n.Before(next) {
			next = n
		}
	}
	return next
}

// Run updates every watched branch at once, then on each Nudge and every
// PollInterval, and submits periodic builds when due, until ctx ends.
// Failures are logged and retried at the next occasion.
func (b *Builder) Run(ctx context.Context) error {
	b.UpdateAll(ctx)
	last := b.opts.Now()
	var poll <-chan time.Time
	if b.opts.PollInterval > 0 {
		t := time.NewTicker(b.opts.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	for {
		var due <-chan time.Time
		var timer *time.Timer
		if next := b.nextPeriodic(last); !next.IsZero() {
			timer = time.NewTimer(max(0, next.Sub(b.opts.Now())))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-b.nudge:
			b.UpdateAll(ctx)
		case <-poll:
			b.UpdateAll(ctx)
		case <-due:
			now := b.opts.Now()
			if _, err := b.Periodic(ctx, last, now); err != nil {
				b.log.WithError(err).Warn("periodic builds failed")
			}
			last = now
		}
		if timer != nil {
			timer.Stop()
		}
	}
}
