package trybot

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tryd-ci/tryd/trybot/client"
)

// Handler serves the try run API (see package client for the wire
// format), behind Options.APITokens when set, the GitHub App webhook
// (authenticated by its signature) and a plain-text index at /.
func (t *Trybot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/runs", t.auth.wrap(t.serveRuns))
	mux.HandleFunc("GET /api/runs/{id}", t.auth.wrap(t.serveRun))
	mux.HandleFunc("POST /github-app-webhook", t.serveAppWebhook)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("tryd trybot\n\n/api/runs        try runs (JSON; ?review=&repo=&change=&patch_set=&state=&limit=&before=)\n/api/runs/{id}   one try run\n"))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr answers err with its status code. A 4xx says what was wrong
// with the request; a 5xx says only that the trybot failed, with a
// request ID (also in X-Request-Id) under which the cause is logged, so
// that file paths and database errors stay out of answers.
func (t *Trybot) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, client.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, client.ErrBadRequest):
		code = http.StatusBadRequest
	}
	if code < 500 {
		writeJSON(w, code, client.ErrorBody{Error: err.Error()})
		return
	}
	rid := newRequestID()
	w.Header().Set("X-Request-Id", rid)
	t.log.WithError(err).WithFields(map[string]any{"request_id": rid, "path": r.URL.Path}).Error("trybot: request failed")
	writeJSON(w, code, client.ErrorBody{Error: "the trybot failed to answer; its log has the cause under request ID " + rid})
}

// newRequestID returns a random ID that ties an error answer to its log
// line.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// live returns the in-memory version of a run being driven, which is
// fresher than the store between saves.
func (t *Trybot) live(r *client.Run) *client.Run {
	t.mu.Lock()
	ar := t.active[runKeyOf(r)]
	t.mu.Unlock()
	if ar != nil && ar.run.ID == r.ID {
		return t.snapshot(ar)
	}
	return r
}

func (t *Trybot) fill(r *client.Run) {
	if !r.State.Finished() {
		r.DurationMS = time.Since(r.Created).Milliseconds()
	}
	if r.Builders == nil {
		r.Builders = []string{}
	}
	if r.Builds == nil {
		r.Builds = []client.Build{}
	}
}

func (t *Trybot) serveRuns(w http.ResponseWriter, r *http.Request) {
	o, err := client.ParseListOptions(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, client.ErrorBody{Error: err.Error()})
		return
	}
	runs, err := t.store.list(r.Context(), o)
	if err != nil {
		t.writeErr(w, r, err)
		return
	}
	out := client.RunList{Runs: make([]client.Run, 0, len(runs))}
	for i := range runs {
		x := t.live(&runs[i])
		t.fill(x)
		out.Runs = append(out.Runs, *x)
	}
	writeJSON(w, http.StatusOK, out)
}

func (t *Trybot) serveRun(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeJSON(w, http.StatusBadRequest, client.ErrorBody{Error: "bad run id " + strconv.Quote(r.PathValue("id"))})
		return
	}
	run, err := t.store.get(r.Context(), id)
	if err != nil {
		t.writeErr(w, r, err)
		return
	}
	run = t.live(run)
	t.fill(run)
	writeJSON(w, http.StatusOK, run)
}
