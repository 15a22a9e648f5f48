package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/bearer"
	"github.com/tryd-ci/tryd/maintner/query"
	tbclient "github.com/tryd-ci/tryd/trybot/client"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Repo is a repository shown on the home page, with the branches whose
// grids it links to.
type Repo struct {
	Name     string   `json:"name"`
	Branches []string `json:"branches,omitempty"`
}

// Planner makes the graph of a builder for a source; force builds use it
// (trybot.Builders implements it).
type Planner interface {
	Plan(builder string, src graph.Source) (*graph.Graph, error)
}

// Options configures a Server. Only Coordinator is required.
type Options struct {
	// Coordinator reads builds, jobs, logs and workers, and submits
	// forced builds (client token).
	Coordinator *api.Client
	// Trybot, if set, serves try runs (home page and /try pages).
	Trybot *tbclient.Client
	// Query, if set, lists the corpus's repositories on the home page.
	Query *query.Client
	// Grid feeds the grid pages; nil means CoordinatorGrid over
	// Coordinator.
	Grid GridSource
	// Repos are the configured repositories shown on the home page.
	Repos []Repo
	// Planner and AdminToken enable force builds: a holder of the admin
	// token (signed in through /login, or sending it as a bearer token)
	// may rebuild a builder at a build's source. Without either, no
	// force-build button is shown and POSTs are refused. The token must
	// pass bearer.Validate (at least 16 characters, no white space):
	// /login accepts guesses without limit.
	Planner    Planner
	AdminToken string
	// TryPlanner, when set, plans force builds of try builds (kind "try"
	// or "base"), so that a rebuilt change under test stays in the try
	// trust domain (trybot.try_labels) while Planner plans post-submit,
	// periodic and forced builds (trybot.postsubmit_labels).
	TryPlanner Planner
	// LogTailLines is how many lines of a failed job's log the try run
	// page shows (default 30).
	LogTailLines int
	// KeepAlive is how often a live log stream with nothing new sends a
	// comment, so that proxies keep it open (default 15s).
	KeepAlive time.Duration
	// BodyTimeout bounds reading the form of a POST (default 30s), so
	// that a client trickling bytes to /login, which anyone may call,
	// cannot hold connections open forever.
	BodyTimeout time.Duration
	// Log receives the dashboard's logs; nil discards them.
	Log logrus.FieldLogger
	// Registry receives the dashboard's metrics; nil registers nowhere.
	Registry *prometheus.Registry
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server serves the dashboard. It holds no state of its own besides its
// options: every page is read from the coordinator, the trybot and the
// corpus on request, so several dashboards may serve the same cluster.
type Server struct {
	opts  Options
	log   logrus.FieldLogger
	tmpl  map[string]*template.Template
	grid  GridSource
	admin *admin
	m     *metrics
}

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Coordinator == nil {
		return nil, errors.New("dashboard: Options.Coordinator is nil")
	}
	if opts.LogTailLines < 0 {
		return nil, errors.New("dashboard: Options.LogTailLines is negative")
	}
	if opts.LogTailLines == 0 {
		opts.LogTailLines = 30
	}
	if opts.KeepAlive < 0 {
		return nil, errors.New("dashboard: Options.KeepAlive is negative")
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.BodyTimeout < 0 {
		return nil, errors.New("dashboard: Options.BodyTimeout is negative")
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	s := &Server{opts: opts, log: log, grid: opts.Grid}
	if s.grid == nil {
		s.grid = &CoordinatorGrid{Client: opts.Coordinator}
	}
	if opts.AdminToken != "" {
		if err := bearer.Validate(opts.AdminToken); err != nil {
			return nil, fmt.Errorf("dashboard: Options.AdminToken: %w", err)
		}
		s.admin = newAdmin(opts.AdminToken)
	}
	var err error
	if s.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	if s.m, err = newMetrics(opts.Registry); err != nil {
		return nil, err
	}
	return s, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Handler returns the dashboard's HTTP handler. Every page also answers
// as JSON with ?format=json. URLs (stable, shareable):
//
//	GET  /                              home
//	GET  /grid/{repo...}?branch=&page=&n=  commits × builders
//	GET  /try?repo=&change=&patch_set=  try runs (the newest matching run when change is given)
//	GET  /try/{id}                      one try run
//	GET  /builds/{id}                   a build: jobs, attempts, timeline
//	GET  /builds/{id}/events            job state changes as server-sent events
//	POST /builds/{id}/force             rebuild (admin; CSRF token or bearer)
//	GET  /logs/{attempt}                a job attempt's log (live while running)
//	GET  /logs/{attempt}/raw            the raw log (?download=1 as attachment)
//	GET  /logs/{attempt}/events?offset= live log as server-sent events
//	GET  /workers                       the worker pool
//	GET, POST /login, POST /logout      admin session for force builds
//	GET  /static/...                    embedded CSS and JS
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	page := func(name string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
		return s.m.wrap(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				s.fail(w, r, err)
			}
		}))
	}
	mux.Handle("GET /{$}", page("home", s.serveHome))
	mux.Handle("GET /grid/{repo...}", page("grid", s.serveGrid))
	mux.Handle("GET /try", page("tryruns", s.serveTryList))
	mux.Handle("GET /try/{id}", page("tryrun", s.serveTryRun))
	mux.Handle("GET /builds/{id}", page("build", s.serveBuild))
	mux.Handle("GET /builds/{id}/events", page("buildevents", s.serveBuildEvents))
	mux.Handle("POST /builds/{id}/force", page("force", s.serveForce))
	mux.Handle("GET /logs/{attempt}", page("log", s.serveLog))
	mux.Handle("GET /logs/{attempt}/raw", page("lograw", s.serveLogRaw))
	mux.Handle("GET /logs/{attempt}/events", page("logevents", s.serveLogEvents))
	mux.Handle("GET /workers", page("workers", s.serveWorkers))
	mux.Handle("GET /login", page("login", s.serveLoginForm))
	mux.Handle("POST /login", page("login", s.serveLogin))
	mux.Handle("POST /logout", page("logout", s.serveLogout))
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	return secureHeaders(mux)
}

// secureHeaders sets headers that keep hostile data inert even if an
// escaping bug let markup through: no inline or foreign scripts, no
// framing, no MIME sniffing.
func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// Error kinds of the dashboard's own input checks.
var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
	errForbidden  = errors.New("forbidden")
)

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// status maps an error from a client or the dashboard to an HTTP status.
func status(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, api.ErrBadRequest), errors.Is(err, query.ErrBadRequest), errors.Is(err, tbclient.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound), errors.Is(err, api.ErrNotFound), errors.Is(err, query.ErrNotFound), errors.Is(err, tbclient.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, context.Canceled):
		return 499
	}
	// The coordinator, trybot or corpus failed or could not be reached.
	return http.StatusBadGateway
}

// errorView is the body of error answers.
type errorView struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := status(err)
	if code == 499 {
		return
	}
	v := errorView{Status: code, Error: err.Error()}
	if code >= 500 {
		// Upstream errors name internal hosts and carry their
		// answers: they go to the log, under an ID the page shows.
		rid := newRequestID()
		w.Header().Set("X-Request-Id", rid)
		s.log.WithError(err).WithFields(logrus.Fields{"path": r.URL.Path, "request_id": rid}).Warn("dashboard: page failed")
		v.Error = "the coordinator, trybot or corpus server did not answer; the dashboard's log has the cause under request ID " + rid
	}
	if wantJSON(r) {
		writeJSON(w, code, v)
		return
	}
	s.render(w, r, code, "error", "Error", v)
}

// newRequestID returns a random ID that ties an error page to its log
// line.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func wantJSON(r *http.Request) bool { return r.URL.Query().Get("format") == "json" }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// pageData is what every page template gets: the title, the view and the
// signed-in admin's CSRF token (empty when not signed in).
type pageData struct {
	Title string
	View  any
	CSRF  string
	Admin bool
	// CanForce: force builds are configured (planner and admin token).
	CanForce bool
	Path     string
	// JSONURL is this page as JSON.
	JSONURL string
}

func newPageData(r *http.Request, title string, view any) pageData {
	q := r.URL.Query()
	q.Set("format", "json")
	return pageData{Title: title, View: view, Path: r.URL.Path, JSONURL: r.URL.Path + "?" + q.Encode()}
}

// show answers with the view as JSON (?format=json) or rendered by the
// named template.
func (s *Server) show(w http.ResponseWriter, r *http.Request, name, title string, view any) error {
	if wantJSON(r) {
		writeJSON(w, http.StatusOK, view)
		return nil
	}
	s.render(w, r, http.StatusOK, name, title, view)
	return nil
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name, title string, view any) {
	t := s.tmpl[name]
	d := newPageData(r, title, view)
	d.CanForce = s.admin != nil && s.opts.Planner != nil
	if s.admin != nil {
		if sess, ok := s.admin.session(r); ok {
			d.Admin, d.CSRF = true, s.admin.csrf(sess)
		}
	}
	// Render into a buffer so that a template error becomes a 500 rather
	// than half a page.
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "page", d); err != nil {
		s.log.WithError(err).WithField("template", name).Error("dashboard: render")
		http.Error(w, "dashboard: render "+name+" failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, b.String())
}
