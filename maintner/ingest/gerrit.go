package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/maintner"
)

// GerritOptions configures a Gerrit syncer.
type GerritOptions struct {
	// Corpus receives the mutations; it must be a leader. Required.
	Corpus *maintner.Corpus
	// URL is the Gerrit server's base URL, e.g.
	// "https://go-review.googlesource.com/". Projects are fetched from
	// URL+project, or URL+"a/"+project with credentials. Required.
	URL string
	// User and Password are the HTTP credentials (Gerrit's HTTP
	// password), sent to git in its environment, never on a command
	// line. Optional.
	User, Password string
	// Projects are the tracked Gerrit projects ("go", "tools/gopls").
	// Required.
	Projects []string
	// CorpusServer is the server part of the projects' corpus names,
	// "server/project" as maintpb names them (x/build uses
	// "go.googlesource.com"); default the host of URL.
	CorpusServer string
	// Dir holds the bare mirrors, one per project. Required.
	Dir string
	// Git is the git executable (default "git").
	Git string
	// CommandTimeout bounds each git command, fetches included (default
	// 30 minutes, room for a first fetch of a large project): a fetch
	// from a server that stops answering would otherwise stall the
	// project's worker, and with it every nudge, until a restart.
	CommandTimeout time.Duration
	// Reconcile is the period of the full pass per project (default 5
	// minutes).
	Reconcile time.Duration
	// Coalesce is how long an idle worker waits after a nudge for more
	// before it syncs (default 5ms; negative means not at all): Gerrit
	// sends several events for one action (ref-updated, then
	// comment-added), and each sync costs a fetch.
	Coalesce time.Duration
	// Clock is the time source (default the wall clock).
	Clock Clock
	// Logger receives progress and errors (never credentials); nil
	// discards.
	Logger logrus.FieldLogger
	// Registry, if set, receives the tryd_ingest_* metrics.
	Registry *prometheus.Registry
}

// Gerrit keeps the projects of one Gerrit server in the corpus.
type Gerrit struct {
	opts     GerritOptions
	c        *maintner.Corpus
	log      logrus.FieldLogger
	clock    Clock
	m        *metrics
	env      []string
	projects map[string]*gerritProject
	sorted   []*gerritProject
}

// gerritProject is one tracked project and its mirror.
type gerritProject struct {
	name   string // Gerrit's
	corpus string // "server/project"
	url    string
	dir    string
	q      *queue
	mu     sync.Mutex // serializes syncs of the project
	inited bool       // guarded by mu
}

// NewGerrit validates opts and returns a syncer. Call Run to start its
// workers, or Sync and Reconcile to work synchronously.
func NewGerrit(opts GerritOptions) (*Gerrit, error) {
	if opts.Corpus == nil {
		return nil, errors.New("ingest: GerritOptions.Corpus is nil")
	}
	if len(opts.Projects) == 0 {
		return nil, errors.New("ingest: GerritOptions.Projects is empty")
	}
	if opts.Dir == "" {
		return nil, errors.New("ingest: GerritOptions.Dir is empty")
	}
	base, err := url.Parse(opts.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil {
		return nil, fmt.Errorf("ingest: bad Gerrit URL %q (want http(s)://host/path/, without credentials)", opts.URL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	if opts.CorpusServer == "" {
		opts.CorpusServer = base.Host
	}
	if strings.ContainsAny(opts.CorpusServer, "/\x00\n") {
		return nil, fmt.Errorf("ingest: bad corpus server name %q", opts.CorpusServer)
	}
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.Reconcile == 0 {
		opts.Reconcile = 5 * time.Minute
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 30 * time.Minute
	}
	if opts.CommandTimeout < 0 {
		return nil, errors.New("ingest: GerritOptions.CommandTimeout is negative")
	}
	if opts.Reconcile < 0 {
		return nil, errors.New("ingest: GerritOptions.Reconcile is negative")
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Coalesce == 0 {
		opts.Coalesce = 5 * time.Millisecond
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	g := &Gerrit{opts: opts, c: opts.Corpus, log: nopLogger(opts.Logger), clock: opts.Clock, m: m,
		projects: make(map[string]*gerritProject)}
	g.env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1")
	if opts.User != "" || opts.Password != "" {
		// Credentials travel in git's environment, which other users
		// cannot read, rather than in argv, which they can.
		g.env = append(g.env, gitexec.ConfigEnv(gitexec.BasicAuth(opts.User, opts.Password))...)
	}
	for _, name := range opts.Projects {
		if !validProject(name) {
			return nil, fmt.Errorf("ingest: bad Gerrit project name %q", name)
		}
		if g.projects[name] != nil {
			return nil, fmt.Errorf("ingest: Gerrit project %q listed twice", name)
		}
		u := *base
		if opts.User != "" || opts.Password != "" {
			u.Path += "a/"
		}
		u.Path += name
		p := &gerritProject{name: name, corpus: opts.CorpusServer + "/" + name, url: u.String(),
			dir: filepath.Join(opts.Dir, url.PathEscape(name)+".git"), q: newQueue()}
		g.projects[name] = p
		g.sorted = append(g.sorted, p)
	}
	sort.Slice(g.sorted, func(i, j int) bool { return g.sorted[i].name < g.sorted[j].name })
	return g, nil
}

// validProject accepts a Gerrit project name that is safe in a URL path,
// a file name and a git command line.
func validProject(s string) bool {
	if s == "" || len(s) > 255 || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.HasPrefix(s, "-") ||
		strings.HasSuffix(s, ".git") {
		return false
	}
	for _, part := range strings.Split(s, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' || r == '?' || r == '#' || r == '%' || r == ' ' || r == ':' {
			return false
		}
	}
	return true
}

// CorpusName returns the corpus's name of a tracked project
// ("server/project"), or "" when it is not tracked.
func (g *Gerrit) CorpusName(project string) string {
	if p := g.projects[project]; p != nil {
		return p.corpus
	}
	return ""
}

// Nudge asks for project to be synced soon: change's refs (patch sets,
// meta) and the branches, or with change 0 the branches and tags (what
// ref-updated events move). It does not wait.
func (g *Gerrit) Nudge(project string, change int) error {
	p, err := g.project("nudge", project, change)
	if err != nil {
		return err
	}
	g.m.nudges.WithLabelValues("gerrit").Inc()
	p.q.add(nudgeWork(change))
	return nil
}

// Run starts a worker per project, each beginning with a full pass, and
// returns when ctx is done.
func (g *Gerrit) Run(ctx context.Context) error {
	return runWorkers(ctx, g.sorted, func(ctx context.Context, p *gerritProject) {
		runWorker(ctx, g.clock, g.opts.Reconcile, g.opts.Coalesce, p.q, func(ctx context.Context, w work) error {
			return g.syncProject(ctx, p, w)
		}, g.log.WithField("project", p.name))
	})
}

// Sync synchronously syncs project: change's refs and the branches, or
// with change 0 the branches and tags.
func (g *Gerrit) Sync(ctx context.Context, project string, change int) error {
	p, err := g.project("sync", project, change)
	if err != nil {
		return err
	}
	return g.syncProject(ctx, p, nudgeWork(change))
}

// project returns the tracked project that op (nudge, sync) names, with a
// valid change number.
func (g *Gerrit) project(op, project string, change int) (*gerritProject, error) {
	p := g.projects[project]
	if p == nil {
		return nil, fmt.Errorf("%w: Gerrit %s", ErrUnknownTarget, project)
	}
	return p, checkNumber(op, project, "change", change)
}

// Reconcile synchronously runs the full pass over every project.
func (g *Gerrit) Reconcile(ctx context.Context) error {
	return reconcileAll(ctx, g.sorted, g.syncProject)
}

// changeRefPrefix returns "refs/changes/NN/N/".
func changeRefPrefix(n int) string { return fmt.Sprintf("refs/changes/%02d/%d/", n%100, n) }

// syncProject fetches the refs w asks for into the mirror (forced, and
// pruned within the fetched namespaces), compares them with the corpus,
// and logs the commits the corpus lacks, then the moved refs, then the
// deleted ones.
func (g *Gerrit) syncProject(ctx context.Context, p *gerritProject, w work) (err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := g.clock.Now()
	defer func() { g.m.observe("gerrit", start, g.clock.Now(), err) }()
	if err := g.initMirror(ctx, p); err != nil {
		return err
	}
	// Branches are fetched every time (a change's submit moves one); tags
	// on a project-wide nudge (ref-updated of a branch or tag) and on the
	// full pass, which alone lists every change ref: on a large server
	// that listing is the expensive part (golang/go has hundreds of
	// thousands of change refs), so events never ask for it.
	refspecs := []string{"+refs/heads/*:refs/heads/*"}
	patterns := []string{"refs/heads/"}
	if w.full || w.all {
		refspecs = append(refspecs, "+refs/tags/*:refs/tags/*")
		patterns = append(patterns, "refs/tags/")
	}
	if w.full {
		refspecs = append(refspecs, "+refs/changes/*:refs/changes/*")
		patterns = append(patterns, "refs/changes/")
	} else {
		nums := make([]int, 0, len(w.items))
		for n := range w.items {
			nums = append(nums, n)
		}
		sort.Ints(nums)
		for _, n := range nums {
			pre := changeRefPrefix(n)
			refspecs = append(refspecs, "+"+pre+"*:"+pre+"*")
			patterns = append(patterns, pre)
		}
	}
	// No FETCH_HEAD, no forced-update scan, no auto maintenance: the
	// mirror is only read by this syncer, and every millisecond here is
	// event latency.
	args := append([]string{"fetch", "--prune", "--no-tags", "--quiet", "--no-write-fetch-head", "--no-show-forced-updates",
		"--no-auto-maintenance", "--no-auto-gc", "--", p.url}, refspecs...)
	if _, err := g.git(ctx, p.dir, nil, args...); err != nil {
		return fmt.Errorf("ingest: Gerrit %s: %w", p.name, err)
	}
	tFetch := g.clock.Now()
	out, err := g.git(ctx, p.dir, nil, append([]string{"for-each-ref", "--format=%(objectname) %(refname)"}, patterns...)...)
	if err != nil {
		return fmt.Errorf("ingest: Gerrit %s: %w", p.name, err)
	}
	local, err := parseRefs(out)
	if err != nil {
		return fmt.Errorf("ingest: Gerrit %s: %w", p.name, err)
	}

	// Compare with the corpus.
	var changed []*maintpb.GitRef
	var deleted []string
	var tips []string
	exclude := map[maintner.GitHash]bool{}
	inScope := func(ref string) bool {
		for _, pre := range patterns {
			if strings.HasPrefix(ref, pre) {
				return true
			}
		}
		return false
	}
	g.c.RLock()
	cp := g.c.GerritProject(p.corpus)
	have := func(ref string) (maintner.GitHash, bool) {
		if cp == nil {
			return maintner.GitHash{}, false
		}
		if cl, ps, ok := parseChangeRef(ref); ok {
			ch := cp.Change(int32(cl))
			if ch == nil {
				return maintner.GitHash{}, false
			}
			if ps == 0 {
				return ch.Meta, !ch.Meta.IsZero()
			}
			return ch.PatchSetRef(int32(ps))
		}
		return cp.Ref(ref)
	}
	for _, r := range local {
		if !trackRef(r.name) {
			continue
		}
		h, ok := have(r.name)
		if ok && h == r.hash {
			continue
		}
		if ok {
			exclude[h] = true
		}
		changed = append(changed, &maintpb.GitRef{Ref: r.name, Sha1: r.hash.String()})
		tips = append(tips, r.hash.String())
	}
	if cp != nil {
		isLocal := make(map[string]bool, len(local))
		for _, r := range local {
			isLocal[r.name] = true
		}
		for _, name := range cp.Refs() {
			if h, ok := cp.Ref(name); ok {
				exclude[h] = true
			}
			if inScope(name) && !isLocal[name] {
				deleted = append(deleted, name)
			}
		}
		for _, ch := range cp.Changes() {
			pre := changeRefPrefix(int(ch.Number))
			if !inScope(pre) {
				continue
			}
			if !ch.Meta.IsZero() && !isLocal[pre+"meta"] {
				deleted = append(deleted, pre+"meta")
				continue // deleting the meta ref removes the change
			}
			for _, ps := range ch.PatchSets {
				if _, ok := ch.PatchSetRef(ps.Number); ok && !isLocal[pre+strconv.Itoa(int(ps.Number))] {
					deleted = append(deleted, pre+strconv.Itoa(int(ps.Number)))
				}
			}
		}
	}
	g.c.RUnlock()
	tList := g.clock.Now()
	if len(changed) == 0 && len(deleted) == 0 {
		return nil
	}
	nChanged, nDeleted := len(changed), len(deleted)
	var tRevList, tRead time.Time
	defer func() {
		if err == nil {
			end := g.clock.Now()
			g.log.WithFields(logrus.Fields{"project": p.name, "refs": nChanged, "deleted": nDeleted,
				"fetch": tFetch.Sub(start), "list": tList.Sub(tFetch), "rev_list": tRevList.Sub(tList),
				"read": tRead.Sub(tRevList), "log": end.Sub(tRead)}).Debug("gerrit sync")
		}
	}()

	// New commits: everything reachable from the moved refs that the
	// corpus does not hold, oldest first.
	var commits []maintner.GitHash
	if len(tips) > 0 {
		var in bytes.Buffer
		for _, t := range tips {
			in.WriteString(t + "\n")
		}
		for h := range exclude {
			in.WriteString("^" + h.String() + "\n")
		}
		out, err := g.git(ctx, p.dir, &in, "rev-list", "--reverse", "--topo-order", "--stdin")
		if err != nil {
			return fmt.Errorf("ingest: Gerrit %s: %w", p.name, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			h, err := maintner.ParseGitHash(line)
			if err != nil {
				return fmt.Errorf("ingest: Gerrit %s: rev-list: %w", p.name, err)
			}
			commits = append(commits, h)
		}
		g.c.RLock()
		if cp := g.c.GerritProject(p.corpus); cp != nil {
			kept := commits[:0]
			for _, h := range commits {
				if cp.Commit(h) == nil {
					kept = append(kept, h)
				}
			}
			commits = kept
		}
		g.c.RUnlock()
	}
	tRevList = g.clock.Now()
	var muts []*maintner.Mutation
	flush := func() error {
		if len(muts) == 0 {
			return nil
		}
		if err := g.c.LogBatch(ctx, muts...); err != nil {
			return fmt.Errorf("ingest: Gerrit %s: %w", p.name, err)
		}
		g.m.mutations.WithLabelValues("gerrit").Add(float64(len(muts)))
		muts = muts[:0]
		return nil
	}
	const batch = 500
	for len(commits) > 0 {
		n := min(batch, len(commits))
		gcs, err := g.readCommits(ctx, p.dir, commits[:n])
		if err != nil {
			return fmt.Errorf("ingest: Gerrit %s: %w", p.name, err)
		}
		for _, gc := range gcs {
			muts = append(muts, &maintner.Mutation{Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{Project: p.corpus, Commits: []*maintpb.GitCommit{gc}}}})
		}
		commits = commits[n:]
		if len(commits) > 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	tRead = g.clock.Now()
	// Refs follow their commits (in the same durable append when they
	// fit), so a reader never sees a ref to a commit it lacks.
	const refBatch = 1000
	for len(changed) > 0 {
		n := min(refBatch, len(changed))
		muts = append(muts, &maintner.Mutation{Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{Project: p.corpus, Refs: changed[:n]}}})
		changed = changed[n:]
	}
	if len(deleted) > 0 {
		sort.Strings(deleted)
		muts = append(muts, &maintner.Mutation{Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{Project: p.corpus, DeletedRefs: deleted}}})
	}
	return flush()
}

// trackRef reports whether a ref is recorded: branches, tags, patch sets
// and meta refs; not Gerrit's internals (as x/build's trackGerritRef).
func trackRef(name string) bool {
	switch {
	case strings.HasPrefix(name, "refs/heads/"), strings.HasPrefix(name, "refs/tags/"):
		return true
	case strings.HasPrefix(name, "refs/changes/"):
		_, _, ok := parseChangeRef(name)
		return ok
	}
	return false
}

// parseChangeRef parses "refs/changes/NN/N/meta" (ps 0) and
// "refs/changes/NN/N/P"; other refs under refs/changes/ (robot
// comments, drafts) are not change refs.
func parseChangeRef(ref string) (cl, ps int, ok bool) {
	rest, found := strings.CutPrefix(ref, "refs/changes/")
	if !found {
		return 0, 0, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || len(parts[0]) != 2 {
		return 0, 0, false
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n <= 0 || n > 1<<31-1 || fmt.Sprintf("%02d", n%100) != parts[0] || parts[1][0] == '0' {
		return 0, 0, false
	}
	if parts[2] == "meta" {
		return n, 0, true
	}
	p, err := strconv.Atoi(parts[2])
	if err != nil || p <= 0 || p > 1<<31-1 || parts[2][0] == '0' {
		return 0, 0, false
	}
	return n, p, true
}

type localRef struct {
	name string
	hash maintner.GitHash
}

// parseRefs parses for-each-ref output, "<hex> <refname>" lines.
func parseRefs(out []byte) ([]localRef, error) {
	var refs []localRef
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		hex, name, ok := strings.Cut(line, " ")
		if !ok || name == "" {
			return nil, fmt.Errorf("for-each-ref: bad line %q", line)
		}
		h, err := maintner.ParseGitHash(hex)
		if err != nil {
			return nil, fmt.Errorf("for-each-ref: %w", err)
		}
		refs = append(refs, localRef{name: name, hash: h})
	}
	return refs, nil
}
