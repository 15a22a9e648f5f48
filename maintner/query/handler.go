package query

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/maintner"
)

// Handler serves the query API over a corpus. Mount it at the server
// root (it answers only under /api/).
type Handler struct {
	c   *maintner.Corpus
	log logrus.FieldLogger
	mux *http.ServeMux
}

// NewHandler returns a handler for c; log may be nil.
func NewHandler(c *maintner.Corpus, log logrus.FieldLogger) *Handler {
	if log == nil {
		l := logrus.New()
		l.SetOutput(discardWriter{})
		log = l
	}
	h := &Handler{c: c, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /api/stats", h.stats)
	h.mux.HandleFunc("GET /api/github/repos", h.repos)
	h.mux.HandleFunc("GET /api/github/repos/{owner}/{repo}", h.repo)
	h.mux.HandleFunc("GET /api/github/repos/{owner}/{repo}/issues", h.issues)
	h.mux.HandleFunc("GET /api/github/repos/{owner}/{repo}/issues/{number}", h.issue)
	h.mux.HandleFunc("GET /api/gerrit/projects", h.projects)
	h.mux.HandleFunc("GET /api/gerrit/changes", h.changes)
	h.mux.HandleFunc("GET /api/gerrit/changes/{number}", h.change)
	h.mux.HandleFunc("GET /api/gerrit/changes/{number}/votes", h.votes)
	h.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "the query API is read-only: use GET")
			return
		}
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return h
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: msg})
}

// fail maps an error kind to its status code.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrBadRequest):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		h.log.WithError(err).Warn("query failed")
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		h.fail(w, badf("stats takes no parameters"))
		return
	}
	writeJSON(w, Stats(h.c))
}

func (h *Handler) repos(w http.ResponseWriter, r *http.Request) { writeJSON(w, Repos(h.c)) }

func (h *Handler) repo(w http.ResponseWriter, r *http.Request) {
	rp, err := GetRepo(h.c, r.PathValue("owner"), r.PathValue("repo"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, rp)
}

func (h *Handler) issues(w http.ResponseWriter, r *http.Request) {
	f, err := ParseIssueFilter(r.URL.Query())
	if err != nil {
		h.fail(w, err)
		return
	}
	p, err := Issues(h.c, r.PathValue("owner"), r.PathValue("repo"), f)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, p)
}

// parseNumber parses an issue or change number from the path.
func parseNumber(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n <= 0 {
		return 0, badf("number %q: want a positive number", s)
	}
	return int32(n), nil
}

func (h *Handler) issue(w http.ResponseWriter, r *http.Request) {
	n, err := parseNumber(r.PathValue("number"))
	if err != nil {
		h.fail(w, err)
		return
	}
	is, err := GetIssue(h.c, r.PathValue("owner"), r.PathValue("repo"), n)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, is)
}

func (h *Handler) projects(w http.ResponseWriter, r *http.Request) { writeJSON(w, Projects(h.c)) }

func (h *Handler) changes(w http.ResponseWriter, r *http.Request) {
	f, err := ParseChangeFilter(r.URL.Query())
	if err != nil {
		h.fail(w, err)
		return
	}
	p, err := Changes(h.c, f)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, p)
}

// changeArgs reads the change number from the path and the required
// project parameter.
func changeArgs(r *http.Request) (string, int32, error) {
	n, err := parseNumber(r.PathValue("number"))
	if err != nil {
		return "", 0, err
	}
	q := r.URL.Query()
	if err := checkParams(q, []string{"project"}); err != nil {
		return "", 0, err
	}
	project, err := one(q, "project")
	if err != nil {
		return "", 0, err
	}
	if strings.TrimSpace(project) == "" {
		return "", 0, badf("project is required (e.g. project=go.googlesource.com/go)")
	}
	return project, n, nil
}

func (h *Handler) change(w http.ResponseWriter, r *http.Request) {
	project, n, err := changeArgs(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	ch, err := GetChange(h.c, project, n)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, ch)
}

func (h *Handler) votes(w http.ResponseWriter, r *http.Request) {
	project, n, err := changeArgs(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	v, err := Votes(h.c, project, n)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, v)
}
