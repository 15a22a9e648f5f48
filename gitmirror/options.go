package gitmirror

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/bearer"
)

// Options configures a Mirror. Dir and Repos are required; every other
// field has a documented default.
type Options struct {
	// Dir holds the mirrors, the tarball cache and scratch files. It
	// belongs to one Mirror: New clears its scratch directory.
	Dir string
	// Repos are the repositories to mirror.
	Repos []Repo

	// Poll is the period of safety-net fetches (default 5m; negative
	// disables polling, leaving nudges and the start-up fetch).
	Poll time.Duration
	// BackoffMin and BackoffMax bound the wait after a failed fetch; it
	// doubles with each consecutive failure (defaults 1s and 5m).
	BackoffMin, BackoffMax time.Duration
	// FetchTimeout bounds one clone or fetch (default 10m); PushTimeout
	// one push (default 10m); ArchiveTimeout one git archive (default
	// 10m); CommandTimeout every other git command (default 1m).
	FetchTimeout, PushTimeout, ArchiveTimeout, CommandTimeout time.Duration
	// CacheBytes bounds the tarball cache on disk (default 2 GiB). The
	// least recently used tarballs are removed first.
	CacheBytes int64

	// Pubsubhelper, if set, is the base URL of a pubsubhelper whose
	// GET /waitevent long-poll nudges the matching repositories.
	Pubsubhelper string
	// HTTPClient is used for the pubsubhelper subscription (default: a
	// client without overall timeout; each poll is bounded by
	// LongPollTimeout).
	HTTPClient *http.Client
	// LongPollTimeout bounds one /waitevent request (default 2m;
	// pubsubhelper answers within about a minute).
	LongPollTimeout time.Duration

	// Tokens, if any, are required on every request of Handler (as
	// "Authorization: Bearer TOKEN", or as the password of basic auth,
	// which is how git sends credentials), since the mirrors may hold
	// private repositories and a request for an unknown revision makes
	// the mirror fetch upstream. Several may be accepted at once so that
	// a token can be rotated. Each must pass bearer.Validate (16
	// characters or more, no white space). With none, the mirror is open
	// to anyone who can reach it: listen on loopback or a private network
	// only.
	Tokens []string

	// Git is the git executable (default: "git" from PATH).
	Git string
	// Log receives the component's logs (default: discarded).
	Log logrus.FieldLogger
	// Clock supplies time for polls and backoff (default: the real clock).
	Clock Clock
	// Registry receives the component's metrics (default: a private
	// registry).
	Registry *prometheus.Registry
}

// Repo is one repository to mirror.
type Repo struct {
	// Name is the repository's name in URLs (see client.CheckRepoName).
	// Its parts may not end in ".git" or ".tar.gz", and its last part may
	// not be "refs" or "nudge", so that every URL has one meaning.
	Name string
	// URL is the upstream clone URL: http(s)://, ssh://, git@host:path,
	// file:// or an absolute path.
	URL string
	// GerritProject and GitHubSlug ("owner/repo") route pubsubhelper
	// events to this repository; when both are empty, an event whose
	// Gerrit project or GitHub "owner/repo" equals Name matches.
	GerritProject string
	GitHubSlug    string
	// Push, if set, receives heads and tags after each fetch that changed
	// them.
	Push *PushMirror
	// FetchAuth, if set, returns HTTP basic-auth credentials for an
	// http(s) upstream, read at each clone or fetch (so rotation is picked
	// up): a Gerrit account's HTTP password, or "x-access-token" and a
	// GitHub token. They travel as an Authorization header through git's
	// environment, never on a command line or in a log.
	FetchAuth func() (username, password string, err error)
}

// PushMirror is a remote that receives heads and tags.
type PushMirror struct {
	// URL is the remote: http(s)://, ssh://, git@host:path, file:// or an
	// absolute path. It must not carry credentials.
	URL string
	// Credentials, if set, returns the secret at push time (so a rotated
	// token is picked up): a token for HTTPS, sent as an Authorization
	// header through git's environment, or an SSH private key, written to
	// a private file for the duration of the push. It is never logged,
	// shown or put on a command line.
	Credentials func() (string, error)
	// KnownHosts, if set, is an OpenSSH known_hosts file that must hold
	// the host key of an SSH push URL; the push fails on any other key.
	// Without it, an SSH push with Credentials trusts the key it first
	// sees (StrictHostKeyChecking=accept-new), open to an attacker on the
	// path at that moment.
	KnownHosts string
}

// Clock is the source of time for polling and backoff, so tests control
// it instead of sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// urlRE accepts the upstream and push URL forms git understands and that
// cannot be mistaken for an option.
var urlRE = regexp.MustCompile(`^(https?://|ssh://|file://|/|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)`)

func (o *Options) validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("Dir is empty"))
	} else if !filepath.IsAbs(o.Dir) {
		abs, err := filepath.Abs(o.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("Dir: %w", err))
		}
		o.Dir = abs
	}
	if len(o.Repos) == 0 {
		errs = append(errs, errors.New("no repositories configured"))
	}
	seen := map[string]bool{}
	for i, r := range o.Repos {
		if err := checkConfiguredName(r.Name); err != nil {
			errs = append(errs, fmt.Errorf("repo %d: %w", i, err))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("repo %q: duplicate name", r.Name))
		}
		seen[r.Name] = true
		if !urlRE.MatchString(r.URL) {
			errs = append(errs, fmt.Errorf("repo %q: bad URL %q (want http(s)://, ssh://, git@host:path, file:// or an absolute path)", r.Name, redactURL(r.URL)))
		}
		if r.FetchAuth != nil && !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://") {
			errs = append(errs, fmt.Errorf("repo %q: FetchAuth needs an http(s) URL", r.Name))
		}
		if r.Push != nil {
			if r.Push.KnownHosts != "" {
				if st, err := os.Stat(r.Push.KnownHosts); err != nil || !st.Mode().IsRegular() {
					errs = append(errs, fmt.Errorf("repo %q: push KnownHosts %q is not a readable file", r.Name, r.Push.KnownHosts))
				}
			}
			if !urlRE.MatchString(r.Push.URL) {
				errs = append(errs, fmt.Errorf("repo %q: bad push URL %q", r.Name, redactURL(r.Push.URL)))
			}
			if u, err := url.Parse(r.Push.URL); err == nil && u.User != nil {
				if _, hasPass := u.User.Password(); hasPass {
					errs = append(errs, fmt.Errorf("repo %q: push URL carries a password; use Credentials", r.Name))
				}
			}
		}
	}
	// Two names where one is the other plus "/refs" are refused by
	// checkConfiguredName's reserved parts, so routing is unambiguous.
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{
		{&o.Poll, 5 * time.Minute},
		{&o.BackoffMin, time.Second},
		{&o.BackoffMax, 5 * time.Minute},
		{&o.FetchTimeout, 10 * time.Minute},
		{&o.PushTimeout, 10 * time.Minute},
		{&o.ArchiveTimeout, 10 * time.Minute},
		{&o.CommandTimeout, time.Minute},
		{&o.LongPollTimeout, 2 * time.Minute},
	} {
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	for i, t := range o.Tokens {
		if err := bearer.Validate(t); err != nil {
			errs = append(errs, fmt.Errorf("Tokens[%d]: %w", i, err))
		}
	}
	if o.BackoffMax < o.BackoffMin {
		errs = append(errs, fmt.Errorf("BackoffMax %v is less than BackoffMin %v", o.BackoffMax, o.BackoffMin))
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 2 << 30
	}
	if o.CacheBytes < 0 {
		errs = append(errs, errors.New("CacheBytes is negative"))
	}
	if o.Pubsubhelper != "" {
		u, err := url.Parse(o.Pubsubhelper)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("Pubsubhelper %q: want http(s)://host[:port]", o.Pubsubhelper))
		}
	}
	if o.Git == "" {
		p, err := exec.LookPath("git")
		if err != nil {
			errs = append(errs, fmt.Errorf("git not found: %w", err))
		}
		o.Git = p
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if len(errs) > 0 {
		return fmt.Errorf("gitmirror: options: %w", errors.Join(errs...))
	}
	return nil
}

// checkConfiguredName applies client.CheckRepoName plus the reservations
// that keep URLs unambiguous.
func checkConfiguredName(name string) error {
	if err := client.CheckRepoName(name); err != nil {
		return err
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if strings.HasSuffix(p, ".git") || strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tmp") {
			return fmt.Errorf("repository name %q: a part may not end in .git, .tar.gz or .tmp", name)
		}
	}
	switch parts[len(parts)-1] {
	case "refs", "nudge", "debug":
		return fmt.Errorf("repository name %q: last part %q is reserved", name, parts[len(parts)-1])
	}
	if name == "debug" || name == "metrics" || name == "healthz" {
		return fmt.Errorf("repository name %q is reserved", name)
	}
	return nil
}

// userinfoRE matches a URL's user information up to the last '@' of its
// authority, so that a password holding an unescaped '@' is removed
// whole.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s'"]*@`)

// redactURL removes user information (which may hold a password or
// token) from every URL in s, for logs, errors and /debug.
func redactURL(s string) string {
	return userinfoRE.ReplaceAllString(s, "$1")
}
