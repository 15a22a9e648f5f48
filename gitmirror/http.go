package gitmirror

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/http/cgi"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/gitexec"
)

// Handler returns the HTTP handler of the wire format documented in
// package gitmirror/client. Serve it with internal/httpserver.
// With Options.Tokens, every request must carry one of them.
func (m *Mirror) Handler() http.Handler {
	return requireToken(m.opts.Tokens, http.HandlerFunc(m.serveHTTP))
}

func (m *Mirror) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	// Smart HTTP comes first: its paths end in "/refs" too
	// (".git/info/refs"), and no repository name has a ".git" part.
	switch {
	case p == "/debug":
		m.serveDebug(w, r)
	case p == "/":
		m.serveIndex(w, r)
	case strings.Contains(p, ".git/"):
		name, rest, _ := strings.Cut(p[1:], ".git/")
		method := http.MethodGet
		if rest == "git-upload-pack" {
			method = http.MethodPost
		}
		if rp, ok := m.lookup(w, r, name, method); ok {
			m.serveSmartHTTP(w, r, rp, rest)
		}
	case strings.HasSuffix(p, tarSuffix):
		if rp, ok := m.lookup(w, r, strings.TrimSuffix(p[1:], tarSuffix), http.MethodGet); ok {
			m.serveTarball(w, r, rp)
		}
	case strings.HasSuffix(p, "/refs"):
		if rp, ok := m.lookup(w, r, strings.TrimSuffix(p[1:], "/refs"), http.MethodGet); ok {
			m.serveRefs(w, r, rp)
		}
	case strings.HasSuffix(p, "/nudge"):
		if rp, ok := m.lookup(w, r, strings.TrimSuffix(p[1:], "/nudge"), http.MethodPost); ok {
			m.serveNudge(w, r, rp)
		}
	default:
		httpError(w, http.StatusNotFound, "not found")
	}
}

// lookup validates the repository name from the URL and finds it,
// answering the request itself when it cannot be served.
func (m *Mirror) lookup(w http.ResponseWriter, r *http.Request, name, method string) (*repo, bool) {
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
		return nil, false
	}
	if err := client.CheckRepoName(name); err != nil {
		httpError(w, http.StatusBadRequest, "bad repository name")
		return nil, false
	}
	rp, ok := m.repos[name]
	if !ok {
		httpError(w, http.StatusNotFound, "unknown repository")
		return nil, false
	}
	return rp, true
}

// httpError writes a short plain-text error. Messages are fixed strings
// or validated names: never git's stderr or file system paths.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// writeErr maps an error kind to its status and short message, logging
// the details that the client does not see.
func (m *Mirror) writeErr(w http.ResponseWriter, r *http.Request, rp *repo, err error) {
	code, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, client.ErrBadName):
		code, msg = http.StatusBadRequest, "bad revision"
	case errors.Is(err, ErrUnknownRev):
		code, msg = http.StatusNotFound, "unknown revision"
	case errors.Is(err, errAmbiguous):
		code, msg = http.StatusNotFound, "ambiguous revision"
	case errors.Is(err, ErrNotReady):
		code, msg = http.StatusServiceUnavailable, "mirror not ready"
	case errors.Is(err, errBuild):
		code, msg = http.StatusServiceUnavailable, "could not build the tarball; try again later"
	case errors.Is(err, ErrUpstream):
		code, msg = http.StatusBadGateway, "fetch from upstream failed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code, msg = http.StatusServiceUnavailable, "request cancelled or timed out"
	}
	if code >= 500 {
		rp.log.WithError(err).WithField("path", r.URL.Path).Warn("request failed")
	}
	httpError(w, code, msg)
}

func (m *Mirror) serveTarball(w http.ResponseWriter, r *http.Request, rp *repo) {
	rev := r.URL.Query().Get("rev")
	if err := client.CheckRev(rev); err != nil {
		httpError(w, http.StatusBadRequest, "bad or missing rev (want hex or refs/...)")
		return
	}
	commit, tree, err := m.Resolve(r.Context(), rp.cfg.Name, rev)
	if err != nil {
		m.writeErr(w, r, rp, err)
		return
	}
	started := false
	setHeaders := func(cache string, size int64) {
		started = true
		h := w.Header()
		if size >= 0 {
			h.Set("Content-Length", strconv.FormatInt(size, 10))
		}
		h.Set("Content-Type", "application/gzip")
		h.Set(client.HeaderCommit, commit)
		h.Set(client.HeaderTree, tree)
		h.Set(client.HeaderCache, cache)
		if client.IsFullHash(rev) {
			// A commit's tarball never changes.
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		w.WriteHeader(http.StatusOK)
	}
	if r.Method == http.MethodHead {
		setHeaders("head", -1)
		return
	}
	err = rp.tarball(r.Context(), commit, tree, setHeaders, w)
	if err == nil {
		return
	}
	if !started {
		m.writeErr(w, r, rp, err)
		return
	}
	if r.Context().Err() == nil {
		rp.log.WithError(err).Warn("tarball failed mid-stream")
	}
	// The body is incomplete: abort the connection so the client sees
	// an error rather than a short file.
	panic(http.ErrAbortHandler)
}

func (m *Mirror) serveRefs(w http.ResponseWriter, r *http.Request, rp *repo) {
	prefix := r.URL.Query().Get("prefix")
	if prefix != "" {
		if err := client.CheckRefName(strings.TrimSuffix(prefix, "/")); err != nil {
			httpError(w, http.StatusBadRequest, "bad prefix (want refs/...)")
			return
		}
	}
	refs, err := m.Refs(r.Context(), rp.cfg.Name, prefix)
	if err != nil {
		m.writeErr(w, r, rp, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(client.Refs{Repo: rp.cfg.Name, Refs: refs})
}

// Refs returns the refs of the named repository under prefix ("" for
// all), mapping ref names to object names.
func (m *Mirror) Refs(ctx context.Context, name, prefix string) (map[string]string, error) {
	rp, ok := m.repos[name]
	if !ok {
		return nil, fmt.Errorf("gitmirror: %q: %w", name, ErrUnknownRepo)
	}
	rp.mu.Lock()
	cloned := rp.cloned
	rp.mu.Unlock()
	if !cloned {
		return nil, fmt.Errorf("gitmirror: %s: %w", name, ErrNotReady)
	}
	args := []string{"for-each-ref", "--format=%(objectname) %(refname)"}
	if prefix != "" {
		args = append(args, "--end-of-options", prefix)
	}
	out, err := m.output(ctx, gitCmd{dir: rp.dir, timeout: m.opts.CommandTimeout, args: args})
	if err != nil {
		return nil, fmt.Errorf("gitmirror: refs of %s: %w", name, err)
	}
	refs, err := parseRefs(out)
	if err != nil {
		return nil, fmt.Errorf("gitmirror: refs of %s: %w", name, err)
	}
	return refs, nil
}

func (m *Mirror) serveNudge(w http.ResponseWriter, r *http.Request, rp *repo) {
	if r.URL.Query().Get("wait") == "" {
		rp.request()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if err := rp.sync(r.Context()); err != nil {
		m.writeErr(w, r, rp, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// serveSmartHTTP passes the upload-pack half of git's smart HTTP protocol
// to git http-backend. Only the two upload-pack URLs are forwarded, so
// pushes (receive-pack) and the dumb protocol are refused before git sees
// them; receive-pack is also disabled in http-backend's configuration.
func (m *Mirror) serveSmartHTTP(w http.ResponseWriter, r *http.Request, rp *repo, rest string) {
	switch {
	case rest == "info/refs" && r.URL.Query().Get("service") == "git-upload-pack":
	case rest == "git-upload-pack":
	case rest == "git-receive-pack" || r.URL.Query().Get("service") == "git-receive-pack":
		httpError(w, http.StatusForbidden, "read-only mirror")
		return
	default:
		httpError(w, http.StatusNotFound, "not found (only smart HTTP upload-pack is served)")
		return
	}
	rp.mu.Lock()
	cloned := rp.cloned
	rp.mu.Unlock()
	if !cloned {
		httpError(w, http.StatusServiceUnavailable, "mirror not ready")
		return
	}
	h := &cgi.Handler{
		Path: m.opts.Git,
		Args: []string{"http-backend"},
		Root: "/",
		Env: append([]string{
			"GIT_PROJECT_ROOT=" + m.reposDir,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
		}, gitexec.ConfigEnv(gitexec.Config{Key: "http.receivepack", Value: "false"})...),
		Stderr: lineWriter(func(line string) { rp.log.WithField("stderr", line).Debug("http-backend") }),
	}
	h.ServeHTTP(w, r)
}

// parseRefs reads "<hash> <ref>" lines of git for-each-ref.
func parseRefs(out []byte) (map[string]string, error) {
	refs := map[string]string{}
	for line := range strings.Lines(string(out)) {
		hash, ref, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		if !ok || !client.IsFullHash(hash) || ref == "" {
			return nil, fmt.Errorf("unexpected for-each-ref line %q", line)
		}
		refs[ref] = hash
	}
	return refs, nil
}

// lineWriter calls f with each line of each write (a line split across
// two writes is logged in two pieces, which is fine for stderr).
type lineWriter func(line string)

func (f lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	sc.Buffer(nil, len(p)+1)
	for sc.Scan() {
		f(sc.Text())
	}
	return len(p), nil
}

func (m *Mirror) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "gitmirror: repositories (see /debug for their state)")
	for _, rp := range m.order {
		fmt.Fprintln(w, rp.cfg.Name)
	}
}

var debugTmpl = template.Must(template.New("debug").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339) + " (" + time.Since(t).Round(time.Second).String() + " ago)"
	},
	"ms": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
}).Parse(`<!DOCTYPE html>
<html><head><title>gitmirror</title>
<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left;vertical-align:top}.err{color:#b00}</style>
</head><body><h1>gitmirror</h1>
<table><tr><th>repository</th><th>upstream</th><th>cloned</th><th>last fetch</th><th>duration</th><th>last success</th><th>fetches</th><th>failures</th><th>error</th><th>push mirror</th></tr>
{{range .Repos}}<tr><td>{{.Name}}</td><td>{{.URL}}</td><td>{{.Cloned}}{{if .Fetching}} (fetching){{end}}</td><td>{{ago .LastFetch}}</td><td>{{ms .LastDuration}}</td><td>{{ago .LastSuccess}}</td><td>{{.Fetches}}</td><td>{{.Failures}}</td><td class="err">{{.LastError}}</td>
<td>{{with .Push}}{{.URL}}: last push {{ago .LastPush}}, {{.Pushes}} pushes{{if .LastError}} <span class="err">{{.LastError}}</span>{{end}}{{else}}none{{end}}</td></tr>
{{end}}</table>
<p>Tarball cache: {{.Cache.Entries}} tarballs, {{.Cache.Bytes}} of {{.Cache.Limit}} bytes, {{.Cache.Building}} being built.</p><p><a href="/debug?format=json">JSON</a> · <a href="/metrics">metrics</a></p></body></html>
`))

func (m *Mirror) serveDebug(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	st := m.Status()
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := debugTmpl.Execute(w, st); err != nil {
		m.log.WithError(err).Warn("render /debug")
	}
}
