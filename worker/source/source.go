// Package source puts a job's source tree in place on a worker: a local
// clone per repository, kept up to date by incremental "git fetch" from
// gitmirror's smart HTTP URL (<base>/<repo>.git), checked out per job with
// "git worktree add" of exactly the wanted revision into a fresh
// directory; when git cannot get the revision, gitmirror's tarball
// (<base>/<repo>.tar.gz?rev=<rev>) is unpacked instead. Uploaded sources
// (files named by content digest) are written from blobs the caller
// fetches.
//
// A job with source_mode inputs promises to read only its inputs, and its
// result is cached under an ID that covers only their paths and digests.
// CheckoutInputs gives it exactly those (from one cached `git ls-tree` of
// the revision and one `git cat-file --batch`, with no worktree), after
// verifying each input's digest against the revision, so that a graph
// stating the digest of other content cannot get a result cached for
// content the job never saw (ErrInputMismatch; a refused path or a
// missing digest: ErrBadInput). SelectFiles does the same for an
// uploaded manifest.
//
// Revisions are validated before they reach git: 4 to 64 hex digits, or a
// refs/... name of safe characters. Repository URLs must be http, https
// or file URLs.
//
// A checkout that fails for a reason that may pass (gitmirror down or
// restarting: connection refused or reset, a 5xx answer, a timeout) is
// retried with jittered exponential backoff for a bounded time (see
// Options.RetryFor), so that a short gitmirror restart does not fail a
// job; one that fails for a reason that will not pass (an unknown
// revision, a repository that does not exist, a refused token) fails at
// once. ErrUnavailable and ErrNotFound / ErrBadRevision tell the two
// apart.
package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/worker/artifact"
)

// ErrBadRevision is wrapped when a revision or repository URL is refused.
var ErrBadRevision = errors.New("bad revision or repository")

// ErrNotFound is wrapped when neither git nor the tarball URL has the
// revision.
var ErrNotFound = errors.New("revision not found")

// ErrUnavailable is wrapped when the source could not be fetched for a
// transient reason (server down, 5xx, timeout) and the retries ran out.
var ErrUnavailable = errors.New("source unavailable")

// Options configures a Store.
type Options struct {
	// Dir holds the clones (required).
	Dir string
	// Git is the git program (default "git" from PATH).
	Git string
	// HTTPClient downloads tarballs (default http.DefaultClient).
	HTTPClient *http.Client
	// CommandTimeout bounds each git command (default 10m).
	CommandTimeout time.Duration
	// Credentials are tokens for repositories that require one (a
	// gitmirror configured with tokens). Each is sent, as
	// "Authorization: Bearer TOKEN", only to URLs under its prefix, never
	// to the other hosts a graph may name; git gets it through its
	// environment (http.<prefix>.extraHeader), never on a command line.
	Credentials []Credential
	// Log receives fetch, retry and fallback messages; nil discards.
	Log logrus.FieldLogger
	// Registry receives the store's metrics; nil registers nowhere.
	Registry *prometheus.Registry

	// RetryMin and RetryMax bound the pause before retrying a checkout
	// that failed for a transient reason (defaults 250ms and 4s): it
	// doubles from RetryMin up to RetryMax, each pause drawn between
	// half and all of that so that workers cut off together do not come
	// back in step.
	RetryMin, RetryMax time.Duration
	// RetryFor bounds the pauses of one checkout in total (default 30s,
	// enough for a gitmirror restart, short against a job's timeout);
	// when the next pause would pass it, the checkout fails with
	// ErrUnavailable. Negative disables retrying.
	RetryFor time.Duration
	// Sleep waits d or until ctx ends, returning ctx's error then
	// (default: a timer). Tests replace it to run retries without
	// waiting.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Credential is a bearer token for the repository URLs under its
// URLPrefix (see gitexec.Credential, which validates it).
type Credential = gitexec.Credential

// token returns the token for u, or "".
func (s *Store) token(u string) string {
	for _, c := range s.opts.Credentials {
		if strings.HasPrefix(u, c.URLPrefix) {
			return c.Token
		}
	}
	return ""
}

// Store owns the local clones.
type Store struct {
	opts Options
	log  logrus.FieldLogger
	env  []string // git's environment, credentials included
	m    *metrics

	mu    sync.Mutex
	locks map[string]*sync.Mutex

	trees treeCache // revisions' tree listings, for CheckoutInputs
}

// New validates opts and returns a Store.
func New(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("source: Options.Dir is empty")
	}
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 10 * time.Minute
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 250 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 4 * time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		return nil, fmt.Errorf("source: Options.RetryMax %v is below RetryMin %v", opts.RetryMax, opts.RetryMin)
	}
	if opts.RetryFor == 0 {
		opts.RetryFor = 30 * time.Second
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	cenv, err := gitexec.CredentialEnv(opts.Credentials)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	env := append(append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C"), cenv...)
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	return &Store{opts: opts, log: log, env: env, m: m, locks: map[string]*sync.Mutex{}}, nil
}

// CheckRevision accepts 4 to 64 hex digits or a refs/... name made of
// letters, digits, '.', '_', '-' and '/', with no empty part, no part
// starting with '.' or '-' or ending in ".lock", and no "..".
func CheckRevision(rev string) error {
	if rev == "" || len(rev) > 256 {
		return fmt.Errorf("revision must be 1 to 256 characters: %w", ErrBadRevision)
	}
	if isHex(rev) {
		if len(rev) < 4 || len(rev) > 64 {
			return fmt.Errorf("object name %q must have 4 to 64 hex digits: %w", rev, ErrBadRevision)
		}
		return nil
	}
	if !strings.HasPrefix(rev, "refs/") || strings.Contains(rev, "..") {
		return fmt.Errorf("revision %q is neither hex nor a refs/... name: %w", rev, ErrBadRevision)
	}
	for _, part := range strings.Split(rev, "/") {
		if part == "" || part[0] == '.' || part[0] == '-' || strings.HasSuffix(part, ".lock") {
			return fmt.Errorf("revision %q: bad ref name part %q: %w", rev, part, ErrBadRevision)
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("revision %q: character %q not allowed: %w", rev, c, ErrBadRevision)
			}
		}
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// CheckRepoURL accepts http, https and file URLs without user info,
// query or fragment (a token in a URL would end up in logs).
func CheckRepoURL(repo string) error {
	u, err := url.Parse(repo)
	if err != nil || strings.HasPrefix(repo, "-") {
		return fmt.Errorf("repository URL %q: %w", repo, ErrBadRevision)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("repository URL %q has no host: %w", repo, ErrBadRevision)
		}
	case "file":
		if u.Path == "" {
			return fmt.Errorf("repository URL %q has no path: %w", repo, ErrBadRevision)
		}
	default:
		return fmt.Errorf("repository URL %q: scheme must be http, https or file: %w", repo, ErrBadRevision)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("repository URL %q may not carry user info, a query or a fragment: %w", repo, ErrBadRevision)
	}
	return nil
}

// TarballURL returns gitmirror's tarball URL for a smart HTTP repository
// URL (<base>/<repo>.git), or "" when repo is not of that shape.
func TarballURL(repo, rev string) string {
	u, err := url.Parse(repo)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.HasSuffix(u.Path, ".git") {
		return ""
	}
	u.Path = strings.TrimSuffix(u.Path, ".git") + ".tar.gz"
	u.RawQuery = url.Values{"rev": {rev}}.Encode()
	return u.String()
}

// clonePath names the local clone of a repository URL.
func (s *Store) clonePath(repo string) string {
	h := sha256.Sum256([]byte(repo))
	base := strings.TrimSuffix(filepath.Base(repo), ".git")
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, base)
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return filepath.Join(s.opts.Dir, clean+"-"+hex.EncodeToString(h[:8])+".git")
}

func (s *Store) lock(path string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.locks[path]
	if !ok {
		m = &sync.Mutex{}
		s.locks[path] = m
	}
	return m
}

// git runs a git command in the bare clone and returns its stdout. A
// failure is a *gitexec.Error; TimedOut means CommandTimeout (not the
// caller's context) ran out: a hung server, worth another try.
func (s *Store) git(ctx context.Context, gitDir string, args ...string) ([]byte, error) {
	return gitexec.Cmd{
		Git:     s.opts.Git,
		Env:     s.env,
		Args:    append([]string{"--git-dir=" + gitDir}, args...),
		Timeout: s.opts.CommandTimeout,
	}.Output(ctx)
}

// Checkout puts the tree of repo at rev into dst, a directory that must
// not exist yet, and returns the full commit hash. It returns a release
// function that removes the checkout (and its worktree registration); the
// caller calls it when the job is done.
//
// A transient failure is retried (see Options.RetryFor); when the retries
// run out the error wraps ErrUnavailable. A permanent one (unknown
// revision: ErrNotFound; refused input: ErrBadRevision; a missing
// repository or a refused token) is returned at once.
func (s *Store) Checkout(ctx context.Context, repo, rev, dst string) (commit string, release func(), err error) {
	if err := CheckRepoURL(repo); err != nil {
		return "", nil, fmt.Errorf("source: %w", err)
	}
	if err := CheckRevision(rev); err != nil {
		return "", nil, fmt.Errorf("source: %w", err)
	}
	return s.retrying(ctx, repo, rev, func() (string, func(), error) {
		return s.checkoutOnce(ctx, repo, rev, dst)
	})
}

// retrying runs one attempt of a checkout of repo at rev until it
// succeeds, fails for a reason that will not pass, or the retries of a
// transient failure run out (see Checkout).
func (s *Store) retrying(ctx context.Context, repo, rev string, once func() (string, func(), error)) (string, func(), error) {
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		commit, release, err := once()
		if err == nil {
			s.m.checkouts.WithLabelValues("ok").Inc()
			if attempt > 1 {
				s.log.WithFields(logrus.Fields{"repo": repo, "rev": rev, "attempts": attempt, "waited": waited.Round(time.Millisecond)}).
					Info("source: fetched after retrying")
			}
			return commit, release, nil
		}
		if ctx.Err() != nil {
			return "", nil, err
		}
		if !IsTransient(err) {
			s.m.checkouts.WithLabelValues("failed").Inc()
			return "", nil, fmt.Errorf("%w (permanent: not retried)", err)
		}
		d := s.backoff(attempt)
		if s.opts.RetryFor < 0 || waited+d > s.opts.RetryFor {
			s.m.checkouts.WithLabelValues("unavailable").Inc()
			return "", nil, fmt.Errorf("%w after %d attempts in %v: %w", ErrUnavailable, attempt, waited.Round(time.Millisecond), err)
		}
		s.log.WithError(err).WithFields(logrus.Fields{"repo": repo, "rev": rev, "attempt": attempt, "retry_in": d.Round(time.Millisecond)}).
			Warn("source: fetch failed for a transient reason; retrying")
		s.m.retries.Inc()
		if serr := s.opts.Sleep(ctx, d); serr != nil {
			return "", nil, fmt.Errorf("source: checkout %s at %s: %w (while waiting to retry after: %v)", repo, rev, serr, err)
		}
		waited += d
	}
}

// backoff returns the pause before retry number attempt (1 for the first):
// RetryMin doubled per attempt, at most RetryMax, then drawn uniformly
// from its upper half.
func (s *Store) backoff(attempt int) time.Duration {
	d := s.opts.RetryMax
	if attempt < 32 {
		if e := s.opts.RetryMin << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// checkoutOnce is one attempt of Checkout: git, then the tarball. On
// failure dst does not exist.
func (s *Store) checkoutOnce(ctx context.Context, repo, rev, dst string) (string, func(), error) {
	commit, release, gitErr := s.checkoutGit(ctx, repo, rev, dst)
	if gitErr == nil {
		return commit, release, nil
	}
	os.RemoveAll(dst)
	if ctx.Err() != nil {
		return "", nil, fmt.Errorf("source: checkout %s at %s: %w", repo, rev, gitErr)
	}
	tu := TarballURL(repo, rev)
	if tu == "" {
		return "", nil, fmt.Errorf("source: checkout %s at %s: %w", repo, rev, gitErr)
	}
	s.log.WithError(gitErr).WithField("repo", repo).Warn("git checkout failed; falling back to the tarball")
	commit, err := s.downloadTarball(ctx, tu, dst)
	if err != nil {
		os.RemoveAll(dst)
		// The tarball's error decides whether to retry: it is the last
		// word from the same server (git's error is kept as text).
		return "", nil, fmt.Errorf("source: checkout %s at %s: git: %v; tarball: %w", repo, rev, gitErr, err)
	}
	return commit, func() { os.RemoveAll(dst) }, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Store) checkoutGit(ctx context.Context, repo, rev, dst string) (string, func(), error) {
	gitDir := s.clonePath(repo)
	m := s.lock(gitDir)
	m.Lock()
	defer m.Unlock()
	commit, err := s.update(ctx, gitDir, repo, rev)
	if err != nil {
		return "", nil, err
	}
	if _, err := s.git(ctx, gitDir, "worktree", "add", "--detach", "--force", "--quiet", dst, commit); err != nil {
		return "", nil, err
	}
	release := func() {
		m.Lock()
		defer m.Unlock()
		if _, err := s.git(context.Background(), gitDir, "worktree", "remove", "--force", dst); err != nil {
			os.RemoveAll(dst)
			s.git(context.Background(), gitDir, "worktree", "prune")
		}
	}
	return commit, release, nil
}

// update creates the bare clone gitDir of repo if need be and makes rev
// present in it (see fetch), returning its full commit hash. The caller
// holds gitDir's lock.
func (s *Store) update(ctx context.Context, gitDir, repo, rev string) (string, error) {
	if _, err := os.Stat(filepath.Join(gitDir, "HEAD")); err != nil {
		tmp := gitDir + ".tmp"
		os.RemoveAll(tmp)
		if _, err := s.git(ctx, tmp, "init", "--bare", "--quiet"); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, gitDir); err != nil {
			return "", err
		}
	}
	return s.fetch(ctx, gitDir, repo, rev)
}

// fetch makes rev present in the clone, fetching only what is missing,
// and returns its full commit hash. A ref is always fetched (refs move);
// an object name only when the clone lacks it: first by name (servers
// allow reachable objects over protocol v2), then, for abbreviated names
// or strict servers, every branch and tag.
func (s *Store) fetch(ctx context.Context, gitDir, repo, rev string) (string, error) {
	fetch := func(refspecs ...string) error {
		args := append([]string{"fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options", repo}, refspecs...)
		_, err := s.git(ctx, gitDir, args...)
		return err
	}
	if strings.HasPrefix(rev, "refs/") {
		local := "refs/tryd/" + strings.TrimPrefix(rev, "refs/")
		if err := fetch("+" + rev + ":" + local); err != nil {
			return "", err
		}
		return s.resolve(ctx, gitDir, local)
	}
	if commit, err := s.resolve(ctx, gitDir, rev); err == nil {
		return commit, nil
	}
	var errs []error
	if len(rev) == 40 || len(rev) == 64 {
		err := fetch("+" + rev + ":refs/tryd/fetched/" + rev)
		if err == nil {
			return s.resolve(ctx, gitDir, rev)
		}
		errs = append(errs, err)
	}
	if err := fetch("+refs/heads/*:refs/tryd/heads/*", "+refs/tags/*:refs/tryd/tags/*"); err != nil {
		errs = append(errs, err)
	}
	commit, err := s.resolve(ctx, gitDir, rev)
	if err != nil {
		return "", errors.Join(append(errs, err)...)
	}
	return commit, nil
}

// resolve returns the full commit hash of name in the clone, or an error
// wrapping ErrNotFound.
func (s *Store) resolve(ctx context.Context, gitDir, name string) (string, error) {
	out, err := s.git(ctx, gitDir, "rev-parse", "--verify", "--quiet", "--end-of-options", name+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("%s not in the local clone: %w", name, ErrNotFound)
	}
	return strings.TrimSpace(string(out)), nil
}

// downloadTarball unpacks gitmirror's tarball of a revision into dst.
func (s *Store) downloadTarball(ctx context.Context, u, dst string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	if tok := s.token(u); tok != "" {
		// net/http drops it on a redirect to another host.
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", fmt.Errorf("GET tarball: %w", ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("GET tarball: %w", &statusError{code: resp.StatusCode, status: resp.Status, msg: string(bytes.TrimSpace(msg))})
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		return "", fmt.Errorf("tarball: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	if err := artifact.Unpack(zr, dst, artifact.Limits{}); err != nil {
		return "", err
	}
	return resp.Header.Get("X-Tryd-Commit"), nil
}
