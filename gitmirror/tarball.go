package gitmirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

var (
	// errAmbiguous marks an abbreviated hash matching several objects.
	errAmbiguous = errors.New("ambiguous revision")
	// errBuild marks a tarball build that failed (git archive failed, or
	// the cache could not be written, e.g. on a full disk): 503, since a
	// later request may succeed.
	errBuild = errors.New("tarball build failed")
)

// Resolve returns the commit and tree that rev names in the mirror of the
// named repository, fetching once if rev is not there yet. rev must pass
// client.CheckRev.
func (m *Mirror) Resolve(ctx context.Context, name, rev string) (commit, tree string, err error) {
	r, ok := m.repos[name]
	if !ok {
		return "", "", fmt.Errorf("gitmirror: %q: %w", name, ErrUnknownRepo)
	}
	if err := client.CheckRev(rev); err != nil {
		return "", "", fmt.Errorf("gitmirror: %s: %w", name, err)
	}
	commit, tree, err = r.resolve(ctx, rev)
	if errors.Is(err, ErrUnknownRev) || errors.Is(err, ErrNotReady) {
		if serr := r.sync(ctx); serr != nil {
			if errors.Is(err, ErrNotReady) {
				return "", "", serr
			}
			// Upstream is failing; the revision may exist there.
			return "", "", fmt.Errorf("%w (while looking for %s)", serr, rev)
		}
		commit, tree, err = r.resolve(ctx, rev)
	}
	return commit, tree, err
}

// resolve maps rev to its commit and tree with one git cat-file, reading
// the names on standard input so that nothing in rev is parsed as an
// option. Concurrent resolutions of the same rev share one git.
func (r *repo) resolve(ctx context.Context, rev string) (commit, tree string, err error) {
	if client.IsFullHash(rev) {
		if tree, ok := r.trees.get(rev); ok {
			return rev, tree, nil
		}
	}
	r.mu.Lock()
	cloned := r.cloned
	r.mu.Unlock()
	if !cloned {
		return "", "", fmt.Errorf("gitmirror: %s: %w", r.cfg.Name, ErrNotReady)
	}
	v, err, _ := r.m.resolves.Do(r.cfg.Name+"\x00"+rev, func() (any, error) {
		// Shared by every caller, so not bound to the first one's
		// request; CommandTimeout bounds it.
		out, err := r.m.output(context.WithoutCancel(ctx), gitCmd{
			dir: r.dir, timeout: r.m.opts.CommandTimeout,
			stdin: strings.NewReader(rev + "^{commit}\n" + rev + "^{tree}\n"),
			args:  []string{"cat-file", "--batch-check=%(objectname) %(objecttype)"},
		})
		if err != nil {
			return nil, fmt.Errorf("gitmirror: resolve %s in %s: %w", rev, r.cfg.Name, err)
		}
		return parseBatchCheck(out)
	})
	if err != nil {
		return "", "", err
	}
	ct := v.([2]string)
	if client.IsHex(rev) && !strings.HasPrefix(ct[0], strings.ToLower(rev)) {
		// git prefers a ref named like the hex (refs/heads/<hex>) to the
		// object; a hex revision must name the commit itself (a tag
		// object's name is not accepted either).
		return "", "", fmt.Errorf("gitmirror: %s: %s names %s: %w", r.cfg.Name, rev, ct[0], ErrUnknownRev)
	}
	if client.IsFullHash(rev) {
		r.trees.put(rev, ct[1])
	}
	return ct[0], ct[1], nil
}

// parseBatchCheck reads the two lines cat-file printed for
// "<rev>^{commit}" and "<rev>^{tree}".
func parseBatchCheck(out []byte) ([2]string, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != 2 {
		return [2]string{}, fmt.Errorf("gitmirror: cat-file printed %d lines, want 2", len(lines))
	}
	var res [2]string
	for i, want := range []string{"commit", "tree"} {
		f := strings.Fields(string(lines[i]))
		switch {
		case len(f) == 2 && f[1] == "missing":
			return res, ErrUnknownRev
		case len(f) == 2 && f[1] == "ambiguous":
			return res, errAmbiguous
		case len(f) == 2 && f[1] == want && client.IsFullHash(f[0]):
			res[i] = f[0]
		default:
			return res, fmt.Errorf("gitmirror: unexpected cat-file output %q", lines[i])
		}
	}
	return res, nil
}

// tarball serves repo at commit (with the given tree) to w, from the
// cache or by running git archive once however many requests want it.
// It calls setHeaders(cacheOutcome, size) just before writing the first
// bytes of the body (size is -1 while the tarball is still being built);
// if it returns an error before that, nothing was written.
func (r *repo) tarball(ctx context.Context, commit, tree string, setHeaders func(cache string, size int64), w io.Writer) error {
	f, b, joined, err := r.m.cache.open(tree, func(ctx context.Context, w io.Writer) error {
		return r.archive(ctx, commit, w)
	})
	if err != nil {
		return err
	}
	if f != nil {
		defer f.Close()
		r.m.metrics.tarballs.WithLabelValues("hit").Inc()
		size := int64(-1)
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
		setHeaders("hit", size)
		if _, err := io.Copy(w, f); err != nil {
			return fmt.Errorf("gitmirror: send cached tarball: %w", err)
		}
		return nil
	}
	defer b.release()
	outcome := "miss"
	if joined {
		outcome = "join"
	}
	r.m.metrics.tarballs.WithLabelValues(outcome).Inc()
	// Headers go out with the first bytes, so that a build failing at
	// once (git error, full disk) still gets a proper error status.
	lw := &lazyHeaderWriter{w: w, setHeaders: func() { setHeaders(outcome, -1) }}
	err = b.streamTo(ctx, lw)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", errBuild, err)
	}
	return err
}

// lazyHeaderWriter calls setHeaders before its first write.
type lazyHeaderWriter struct {
	w          io.Writer
	setHeaders func()
	started    bool
}

func (l *lazyHeaderWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.setHeaders()
	}
	return l.w.Write(p)
}

// archive runs git archive of commit, gzip'd by git itself (its built-in
// gzip, the same as "git archive --format=tar.gz" on the command line).
func (r *repo) archive(ctx context.Context, commit string, w io.Writer) error {
	err := r.m.run(ctx, gitCmd{
		dir: r.dir, timeout: r.m.opts.ArchiveTimeout, stdout: w,
		args: []string{"archive", "--format=tar.gz", "--end-of-options", commit},
	})
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.m.metrics.archives.WithLabelValues(r.cfg.Name, result).Inc()
	if err != nil {
		return fmt.Errorf("gitmirror: archive %s at %s: %w", r.cfg.Name, commit, err)
	}
	return nil
}
