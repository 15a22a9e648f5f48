package gitmirror

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/gitexec"
)

// pushRefspecs are what a push mirror receives: branches and tags only,
// never Gerrit changes or pull request refs.
var pushRefspecs = []string{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// pushState is a push mirror's state; guarded by repo.mu.
type pushState struct {
	pending bool // a push is owed (never pushed, or the last push failed)
	last    time.Time
	lastOK  time.Time
	lastErr string
	pushes  int64
}

// pushMirror pushes heads and tags to the push mirror and records the
// outcome. --prune deletes branches and tags that upstream deleted, so the
// remote stays a mirror of them.
func (r *repo) pushMirror(ctx context.Context) {
	err := r.pushOnce(ctx)
	if ctx.Err() != nil && err != nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.m.metrics.pushes.WithLabelValues(r.cfg.Name, result).Inc()
	r.mu.Lock()
	p := r.push
	p.last = r.m.clock.Now()
	p.pushes++
	if err != nil {
		p.pending = true
		p.lastErr = err.Error()
	} else {
		p.pending = false
		p.lastErr = ""
		p.lastOK = p.last
	}
	r.mu.Unlock()
	if err != nil {
		r.log.WithError(err).Warn("push mirror failed")
	} else {
		r.log.Debug("pushed to mirror")
	}
}

func (r *repo) pushOnce(ctx context.Context) error {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	env, cleanup, err := r.m.pushEnv(r.cfg.Push)
	if err != nil {
		return fmt.Errorf("gitmirror: push %s: %w", r.cfg.Name, err)
	}
	defer cleanup()
	args := append([]string{"push", "--force", "--prune", "--quiet", "--end-of-options", r.cfg.Push.URL}, pushRefspecs...)
	if err := r.m.run(ctx, gitCmd{dir: r.dir, timeout: r.m.opts.PushTimeout, env: env, args: args}); err != nil {
		return fmt.Errorf("gitmirror: push %s to %s: %w", r.cfg.Name, redactURL(r.cfg.Push.URL), err)
	}
	return nil
}

// pushEnv returns the environment that carries the push credentials: for
// HTTP(S), an Authorization header set through GIT_CONFIG_* variables
// (git reads them as configuration; they appear neither on a command line
// nor in git's output); for SSH, a private key written to a file only the
// process user can read, removed by cleanup.
func (m *Mirror) pushEnv(p *PushMirror) (env []string, cleanup func(), err error) {
	cleanup = func() {}
	if p.Credentials == nil {
		return nil, cleanup, nil
	}
	secret, err := p.Credentials()
	if err != nil {
		return nil, cleanup, fmt.Errorf("credentials: %w", err)
	}
	if strings.HasPrefix(p.URL, "http://") || strings.HasPrefix(p.URL, "https://") {
		// GitHub's documented form for tokens over HTTPS.
		return basicAuthEnv("x-access-token", secret), cleanup, nil
	}
	if strings.HasPrefix(p.URL, "ssh://") || strings.Contains(p.URL, "@") {
		f, err := os.CreateTemp(m.tmpDir, "key-")
		if err != nil {
			return nil, cleanup, fmt.Errorf("credentials: %w", err)
		}
		name := f.Name()
		cleanup = func() { os.Remove(name) }
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			cleanup()
			return nil, func() {}, fmt.Errorf("credentials: %w", err)
		}
		if _, err := f.WriteString(strings.TrimSpace(secret) + "\n"); err != nil {
			f.Close()
			cleanup()
			return nil, func() {}, fmt.Errorf("credentials: %w", err)
		}
		if err := f.Close(); err != nil {
			cleanup()
			return nil, func() {}, fmt.Errorf("credentials: %w", err)
		}
		hostKeys := "-o StrictHostKeyChecking=accept-new"
		if p.KnownHosts != "" {
			hostKeys = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + shellQuote(filepath.Clean(p.KnownHosts))
		}
		return []string{
			"GIT_SSH_COMMAND=ssh -o BatchMode=yes -o IdentitiesOnly=yes " + hostKeys + " -i " + shellQuote(filepath.Clean(name)),
		}, cleanup, nil
	}
	return nil, cleanup, fmt.Errorf("credentials given for %s, which takes none", redactURL(p.URL))
}

// basicAuthEnv returns the environment that makes git send HTTP basic
// authentication with every request, so that the secret is neither on a
// command line nor in git's output.
func basicAuthEnv(user, password string) []string {
	return gitexec.ConfigEnv(gitexec.BasicAuth(user, password))
}

// fetchEnv returns the environment carrying the upstream credentials.
func (r *repo) fetchEnv() ([]string, error) {
	if r.cfg.FetchAuth == nil {
		return nil, nil
	}
	user, password, err := r.cfg.FetchAuth()
	if err != nil {
		return nil, fmt.Errorf("fetch credentials: %w", err)
	}
	return basicAuthEnv(user, password), nil
}

// shellQuote quotes s for the shell git runs GIT_SSH_COMMAND with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
