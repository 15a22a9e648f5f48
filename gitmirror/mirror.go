package gitmirror

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

// Error kinds that callers and the HTTP edge act on.
var (
	// ErrUnknownRepo: the repository is not configured (404).
	ErrUnknownRepo = errors.New("unknown repository")
	// ErrUnknownRev: the revision does not exist in the mirror, even
	// after a fetch (404).
	ErrUnknownRev = errors.New("unknown revision")
	// ErrNotReady: the mirror has not been cloned yet (503).
	ErrNotReady = errors.New("mirror not ready")
	// ErrUpstream: fetching from upstream failed (502); the mirror keeps
	// serving what it has.
	ErrUpstream = errors.New("upstream fetch failed")
)

// fetchRefspecs are the refs a mirror keeps: branches, tags, Gerrit
// changes (patch sets and NoteDB meta refs) and GitHub pull request heads.
// They are forced because Gerrit rewrites meta refs and pull request heads
// are force-pushed.
var fetchRefspecs = []string{
	"+refs/heads/*:refs/heads/*",
	"+refs/tags/*:refs/tags/*",
	"+refs/changes/*:refs/changes/*",
	"+refs/pull/*/head:refs/pull/*/head",
}

// Mirror keeps the configured repositories mirrored and serves them. Run
// drives the fetches; Handler serves HTTP.
type Mirror struct {
	opts     Options
	log      logrus.FieldLogger
	clock    Clock
	baseEnv  []string
	reposDir string
	tmpDir   string
	repos    map[string]*repo
	order    []*repo // configuration order, for /debug
	cache    *tarCache
	metrics  *metrics
	resolves singleflight.Group
}

// New validates opts, prepares the directories and the tarball cache, and
// returns a Mirror. Nothing is fetched until Run.
func New(opts Options) (*Mirror, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discardWriter{})
		log = l
	}
	m := &Mirror{
		opts:     opts,
		log:      log,
		clock:    opts.Clock,
		baseEnv:  cleanEnv(),
		reposDir: filepath.Join(opts.Dir, "repos"),
		tmpDir:   filepath.Join(opts.Dir, "tmp"),
		repos:    map[string]*repo{},
	}
	var err error
	if m.metrics, err = newMetrics(opts.Registry); err != nil {
		return nil, err
	}
	// Scratch files of a previous process are incomplete by definition.
	if err := os.RemoveAll(m.tmpDir); err != nil {
		return nil, fmt.Errorf("gitmirror: clean %s: %w", m.tmpDir, err)
	}
	for _, d := range []string{m.reposDir, m.tmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("gitmirror: %w", err)
		}
	}
	if m.cache, err = newTarCache(filepath.Join(opts.Dir, "tarballs"), m.tmpDir, opts.CacheBytes, m.metrics, log); err != nil {
		return nil, err
	}
	for _, rc := range opts.Repos {
		r := &repo{
			m:      m,
			cfg:    rc,
			dir:    filepath.Join(m.reposDir, filepath.FromSlash(rc.Name)+".git"),
			nudge:  make(chan struct{}, 1),
			doneCh: make(chan struct{}),
			trees:  newTreeCache(4096),
			log:    log.WithField("repo", rc.Name),
		}
		r.cloned = isMirror(r.dir)
		if rc.Push != nil {
			r.push = &pushState{pending: true}
		}
		m.repos[rc.Name] = r
		m.order = append(m.order, r)
	}
	return m, nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// isMirror reports whether dir holds a bare repository that a completed
// clone left behind.
func isMirror(dir string) bool {
	for _, f := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// Run fetches every repository at once and then on nudges and polls, and
// follows the pubsubhelper if one is configured, until ctx is cancelled.
func (m *Mirror) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range m.order {
		wg.Go(func() { r.loop(ctx) })
	}
	if m.opts.Pubsubhelper != "" {
		wg.Go(func() { m.subscribe(ctx) })
	}
	wg.Wait()
	return nil
}

// Nudge asks for a fetch of the named repository as soon as possible and
// returns at once. Nudges that arrive while a fetch runs are coalesced
// into one more fetch.
func (m *Mirror) Nudge(name string) error {
	r, ok := m.repos[name]
	if !ok {
		return fmt.Errorf("gitmirror: nudge %q: %w", name, ErrUnknownRepo)
	}
	r.request()
	return nil
}

// Sync asks for a fetch of the named repository and waits until a fetch
// that started after the call has finished, returning its error (wrapping
// ErrUpstream). A failing upstream is reported without waiting for the
// next attempt: while the repository backs off, or when a fetch already
// running at the call fails, Sync returns that failure. Run must be
// running.
func (m *Mirror) Sync(ctx context.Context, name string) error {
	r, ok := m.repos[name]
	if !ok {
		return fmt.Errorf("gitmirror: sync %q: %w", name, ErrUnknownRepo)
	}
	return r.sync(ctx)
}

// Status returns the state of every repository, without credentials.
func (m *Mirror) Status() client.Status {
	var st client.Status
	for _, r := range m.order {
		st.Repos = append(st.Repos, r.status())
	}
	c := m.cache
	c.mu.Lock()
	st.Cache = client.CacheStatus{Bytes: c.total, Limit: c.limit, Entries: c.lru.Len(), Building: len(c.building)}
	c.mu.Unlock()
	return st
}

// Health reports an error when no repository has a usable mirror, so a
// load balancer waits for the first clone.
func (m *Mirror) Health(ctx context.Context) error {
	for _, r := range m.order {
		r.mu.Lock()
		ok := r.cloned
		r.mu.Unlock()
		if ok {
			return nil
		}
	}
	return errors.New("gitmirror: no repository cloned yet")
}

// repo is the state of one mirrored repository.
type repo struct {
	m     *Mirror
	cfg   Repo
	dir   string
	log   logrus.FieldLogger
	nudge chan struct{} // capacity 1: pending fetch requests coalesce
	trees *treeCache

	// fetchMu serialises every writer of the mirror (clone, fetch,
	// push), so lock files left by a killed git can be removed safely.
	fetchMu sync.Mutex

	mu        sync.Mutex
	cloned    bool
	fetching  bool
	want      uint64        // incremented by each request
	done      uint64        // the value of want when the last finished fetch started
	doneCh    chan struct{} // closed and replaced when a fetch finishes
	lastErr   error
	lastFetch time.Time
	lastDur   time.Duration
	lastOK    time.Time
	failures  int
	fetches   int64
	retryAt   time.Time // while failures > 0: when the next attempt runs
	push      *pushState
}

// request records a fetch request and wakes the loop; it returns the
// generation a fetch must have started at or after to satisfy it.
func (r *repo) request() uint64 {
	r.mu.Lock()
	r.want++
	gen := r.want
	r.mu.Unlock()
	select {
	case r.nudge <- struct{}{}:
	default: // a request is already pending; this one joins it
	}
	return gen
}

func (r *repo) sync(ctx context.Context) error {
	r.mu.Lock()
	if r.failures > 0 && r.m.clock.Now().Before(r.retryAt) {
		err := r.lastErr
		r.mu.Unlock()
		return fmt.Errorf("gitmirror: %s: %w: backing off after %v", r.cfg.Name, ErrUpstream, err)
	}
	r.mu.Unlock()
	gen := r.request()
	for woke := false; ; woke = true {
		r.mu.Lock()
		// A fetch that started before the request but failed after it
		// also answers it: the next attempt waits for the backoff.
		if r.done >= gen || woke && r.lastErr != nil {
			err := r.lastErr
			r.mu.Unlock()
			if err != nil {
				return fmt.Errorf("gitmirror: %s: %w: %v", r.cfg.Name, ErrUpstream, err)
			}
			return nil
		}
		ch := r.doneCh
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("gitmirror: sync %s: %w", r.cfg.Name, ctx.Err())
		}
	}
}

// backoff returns the wait after n consecutive failures.
func (r *repo) backoff(n int) time.Duration {
	d := r.m.opts.BackoffMin
	for i := 1; i < n && d < r.m.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.m.opts.BackoffMax)
}

// loop fetches once at start, then on each nudge or poll, backing off
// after failures, until ctx is cancelled.
func (r *repo) loop(ctx context.Context) {
	r.request()
	for {
		r.mu.Lock()
		failures := r.failures
		r.mu.Unlock()
		var timer <-chan time.Time
		nudge := r.nudge
		switch {
		case failures > 0:
			// Nudges wait (they stay in the channel) until the backoff
			// has passed, so a failing upstream is not hammered.
			timer = r.m.clock.After(r.backoff(failures))
			nudge = nil
		case r.m.opts.Poll > 0:
			timer = r.m.clock.After(r.m.opts.Poll)
		}
		select {
		case <-ctx.Done():
			return
		case <-nudge:
		case <-timer:
			select { // a fetch now satisfies any pending nudge too
			case <-r.nudge:
			default:
			}
		}
		r.fetchOnce(ctx)
	}
}

// fetchOnce runs one clone or fetch (and the push that may follow) and
// records the outcome for waiters and /debug.
func (r *repo) fetchOnce(ctx context.Context) {
	r.mu.Lock()
	gen := r.want
	r.fetching = true
	r.mu.Unlock()

	start := r.m.clock.Now()
	changed, err := r.update(ctx)
	dur := r.m.clock.Now().Sub(start)
	if ctx.Err() != nil && err != nil {
		// Shutting down: not a failure of the upstream.
		r.mu.Lock()
		r.fetching = false
		r.mu.Unlock()
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.m.metrics.fetches.WithLabelValues(r.cfg.Name, result).Inc()
	r.m.metrics.fetchSeconds.WithLabelValues(r.cfg.Name).Observe(dur.Seconds())

	r.mu.Lock()
	r.fetching = false
	r.fetches++
	r.lastFetch = r.m.clock.Now()
	r.lastDur = dur
	r.lastErr = err
	if err != nil {
		r.failures++
		r.retryAt = r.lastFetch.Add(r.backoff(r.failures))
	} else {
		r.failures = 0
		r.lastOK = r.lastFetch
	}
	failures := r.failures
	r.done = gen
	close(r.doneCh)
	r.doneCh = make(chan struct{})
	pushNeeded := r.push != nil && (changed || r.push.pending) && err == nil
	r.mu.Unlock()

	if err != nil {
		r.log.WithError(err).WithField("failures", failures).Warn("fetch failed")
	} else {
		r.log.WithFields(logrus.Fields{"dur": dur.Round(time.Millisecond).String(), "changed": changed}).Debug("fetched")
	}
	if pushNeeded {
		r.pushMirror(ctx)
	}
}

// update clones the repository if needed, else fetches it. It reports
// whether heads or tags changed.
func (r *repo) update(ctx context.Context) (changed bool, err error) {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	r.mu.Lock()
	cloned := r.cloned
	r.mu.Unlock()
	if !cloned {
		if err := r.clone(ctx); err != nil {
			return false, err
		}
		r.mu.Lock()
		r.cloned = true
		r.mu.Unlock()
		return true, nil
	}
	before, err := r.headsAndTags(ctx)
	if err != nil {
		return false, err
	}
	if err := r.fetch(ctx); err != nil {
		return false, err
	}
	after, err := r.headsAndTags(ctx)
	if err != nil {
		return false, err
	}
	return before != after, nil
}

// clone makes the mirror with "git clone --mirror" into a scratch
// directory and renames it into place, so a clone killed half-way leaves
// nothing that looks like a mirror.
func (r *repo) clone(ctx context.Context) error {
	m := r.m
	tmp, err := os.MkdirTemp(m.tmpDir, "clone-")
	if err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "mirror.git")
	env, err := r.fetchEnv()
	if err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	if err := m.run(ctx, gitCmd{timeout: m.opts.FetchTimeout, env: env, args: []string{
		"clone", "--mirror", "--quiet", "--end-of-options", r.cfg.URL, dst,
	}}); err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	settings := [][]string{
		// Fetch exactly the refs gitmirror serves, always forced.
		{"--replace-all", "remote.origin.fetch", fetchRefspecs[0]},
		// Workers may ask for any commit they saw in a ref.
		{"uploadpack.allowReachableSHA1InWant", "true"},
		{"uploadpack.allowFilter", "true"},
		// Reflogs in a mirror only grow.
		{"core.logAllRefUpdates", "false"},
	}
	for _, s := range settings {
		if err := m.run(ctx, gitCmd{dir: dst, timeout: m.opts.CommandTimeout, args: append([]string{"config"}, s...)}); err != nil {
			return fmt.Errorf("gitmirror: clone %s: configure: %w", r.cfg.Name, err)
		}
	}
	for _, spec := range fetchRefspecs[1:] {
		if err := m.run(ctx, gitCmd{dir: dst, timeout: m.opts.CommandTimeout, args: []string{"config", "--add", "remote.origin.fetch", spec}}); err != nil {
			return fmt.Errorf("gitmirror: clone %s: configure: %w", r.cfg.Name, err)
		}
	}
	if err := r.dropUnmirroredRefs(ctx, dst); err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o755); err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	// A leftover from an interrupted earlier attempt is not a mirror
	// (isMirror was false); replace it.
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	if err := os.Rename(dst, r.dir); err != nil {
		return fmt.Errorf("gitmirror: clone %s: %w", r.cfg.Name, err)
	}
	r.log.Info("cloned")
	return nil
}

// dropUnmirroredRefs deletes the refs "git clone --mirror" brought that
// fetchRefspecs do not cover (GitHub's refs/pull/N/merge, Gerrit's
// refs/meta/config and refs/users/..., notes), which later fetches would
// neither update nor prune.
func (r *repo) dropUnmirroredRefs(ctx context.Context, dir string) error {
	out, err := r.m.output(ctx, gitCmd{dir: dir, timeout: r.m.opts.CommandTimeout, args: []string{"for-each-ref", "--format=%(refname)"}})
	if err != nil {
		return err
	}
	var del strings.Builder
	for ref := range strings.Lines(string(out)) {
		ref = strings.TrimSpace(ref)
		if ref != "" && !mirroredRef(ref) {
			fmt.Fprintf(&del, "delete %s\n", ref)
		}
	}
	if del.Len() == 0 {
		return nil
	}
	return r.m.run(ctx, gitCmd{dir: dir, timeout: r.m.opts.CommandTimeout, stdin: strings.NewReader(del.String()), args: []string{"update-ref", "--stdin"}})
}

// mirroredRef reports whether fetchRefspecs cover ref.
func mirroredRef(ref string) bool {
	switch {
	case strings.HasPrefix(ref, "refs/heads/"), strings.HasPrefix(ref, "refs/tags/"), strings.HasPrefix(ref, "refs/changes/"):
		return true
	case strings.HasPrefix(ref, "refs/pull/"):
		return strings.HasSuffix(ref, "/head") && strings.Count(ref, "/") == 3
	}
	return false
}

// fetch updates the mirror. --atomic makes the ref updates one
// transaction, so a fetch killed half-way changes no ref (objects it
// wrote are unreferenced and collected later); stale lock files that a
// killed git leaves behind are removed first.
func (r *repo) fetch(ctx context.Context) error {
	m := r.m
	if err := removeStaleLocks(r.dir); err != nil {
		return fmt.Errorf("gitmirror: fetch %s: %w", r.cfg.Name, err)
	}
	env, err := r.fetchEnv()
	if err != nil {
		return fmt.Errorf("gitmirror: fetch %s: %w", r.cfg.Name, err)
	}
	args := []string{"fetch", "--prune", "--force", "--atomic", "--quiet", "--no-write-fetch-head", "--end-of-options", r.cfg.URL}
	args = append(args, fetchRefspecs...)
	if err := m.run(ctx, gitCmd{dir: r.dir, timeout: m.opts.FetchTimeout, env: env, args: args}); err != nil {
		return fmt.Errorf("gitmirror: fetch %s: %w", r.cfg.Name, err)
	}
	return nil
}

// removeStaleLocks deletes git lock files in the mirror. Only gitmirror
// writes to its mirrors, one command at a time (fetchMu), so any lock
// present now belongs to a git process that was killed.
func removeStaleLocks(dir string) error {
	for _, f := range []string{"packed-refs.lock", "config.lock", "HEAD.lock", "shallow.lock", "FETCH_HEAD.lock"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return filepath.WalkDir(filepath.Join(dir, "refs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Ext(p) == ".lock" {
			return os.Remove(p)
		}
		return nil
	})
}

// headsAndTags returns a digest of the mirror's branches and tags, to
// tell whether a fetch changed what the push mirror receives.
func (r *repo) headsAndTags(ctx context.Context) (string, error) {
	out, err := r.m.output(ctx, gitCmd{dir: r.dir, timeout: r.m.opts.CommandTimeout, args: []string{
		"for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/",
	}})
	if err != nil {
		return "", fmt.Errorf("gitmirror: list refs of %s: %w", r.cfg.Name, err)
	}
	return string(out), nil
}

func (r *repo) status() client.RepoStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := client.RepoStatus{
		Name:         r.cfg.Name,
		URL:          redactURL(r.cfg.URL),
		Cloned:       r.cloned,
		Fetching:     r.fetching,
		LastFetch:    r.lastFetch,
		LastDuration: r.lastDur,
		LastSuccess:  r.lastOK,
		Failures:     r.failures,
		Fetches:      r.fetches,
	}
	if r.lastErr != nil {
		st.LastError = r.lastErr.Error()
	}
	if r.push != nil {
		st.Push = &client.PushStatus{
			URL:         redactURL(r.cfg.Push.URL),
			LastPush:    r.push.last,
			LastSuccess: r.push.lastOK,
			LastError:   r.push.lastErr,
			Pushes:      r.push.pushes,
		}
	}
	return st
}
