package coordinator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Body limits.
const (
	maxJSONBody   = 1 << 20
	maxLogChunk   = 4 << 20
	maxArtifact   = 16 << 30
	maxMissingReq = 200_000
)

// Handler returns the coordinator's HTTP API (see api/PROTOCOL.md). Serve
// it with internal/httpserver, which adds /healthz and /metrics.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	client := func(h func(w http.ResponseWriter, r *http.Request)) http.Handler {
		return c.authorize(func(p principal) bool { return p.client }, h)
	}
	worker := func(h func(w http.ResponseWriter, r *http.Request, p principal)) http.Handler {
		return c.authorizeP(func(p principal) bool { return p.worker != "" }, h)
	}
	anyone := func(h func(w http.ResponseWriter, r *http.Request)) http.Handler {
		return c.authorize(func(principal) bool { return true }, h)
	}
	mux.Handle("POST /api/graphs", client(c.handleSubmit))
	mux.Handle("GET /api/builds", client(c.handleList))
	mux.Handle("GET /api/builds/{id}", client(c.handleBuild))
	mux.Handle("GET /api/builds/{id}/events", client(c.handleEvents))
	mux.Handle("POST /api/builds/{id}/cancel", client(c.handleCancel))
	mux.Handle("GET /api/attempts/{id}/log", client(c.handleAttemptLog))
	mux.Handle("GET /api/jobs/{id}", client(c.handleJob))
	mux.Handle("GET /api/jobs/{id}/log", client(c.handleJobLog))
	mux.Handle("GET /api/jobs/{id}/output", client(c.handleJobOutput))
	mux.Handle("GET /api/workers", client(c.handleWorkers))

	mux.Handle("PUT /api/artifacts/{digest}", anyone(c.handlePutArtifact))
	mux.Handle("GET /api/artifacts/{digest}", anyone(c.handleGetArtifact))
	mux.Handle("HEAD /api/artifacts/{digest}", anyone(c.handleGetArtifact))
	mux.Handle("POST /api/artifacts/missing", anyone(c.handleMissing))

	mux.Handle("POST /api/worker/register", worker(c.handleRegister))
	mux.Handle("POST /api/worker/poll", worker(c.handlePoll))
	mux.Handle("POST /api/worker/attempts/{id}/log", worker(c.handleAppendLog))
	mux.Handle("POST /api/worker/attempts/{id}/result", worker(c.handleResult))
	return c.routeToHolder(mux)
}

func (c *Coordinator) authorize(ok func(principal) bool, h func(w http.ResponseWriter, r *http.Request)) http.Handler {
	return c.authorizeP(ok, func(w http.ResponseWriter, r *http.Request, _ principal) { h(w, r) })
}

func (c *Coordinator) authorizeP(ok func(principal) bool, h func(w http.ResponseWriter, r *http.Request, p principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := c.auth.check(r)
		if err == nil && !ok(p) {
			err = fmt.Errorf("this token may not call %s %s: %w", r.Method, r.URL.Path, api.ErrUnauthorized)
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tryd"`)
			api.WriteError(w, err)
			return
		}
		h(w, r, p)
	})
}

// writeErr answers with an error; internal errors are logged.
func (c *Coordinator) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if status, _ := api.Status(err); status >= 500 {
		c.log.WithError(err).WithField("path", r.URL.Path).Warn("request failed")
	}
	api.WriteError(w, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body with a size limit and strict fields.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body larger than %d bytes: %w", limit, api.ErrTooLarge)
		}
		return badRequest(fmt.Errorf("decode body: %v", err))
	}
	return nil
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("bad build ID %q: %w", truncate(r.PathValue("id")), api.ErrNotFound)
	}
	return id, nil
}

func (c *Coordinator) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req api.SubmitRequest
	if err := decode(w, r, graph.MaxGraphBytes, &req); err != nil {
		c.writeErr(w, r, err)
		return
	}
	resp, err := c.Submit(r.Context(), req)
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (c *Coordinator) handleBuild(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var b *api.Build
		if b, err = c.Build(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, b)
			return
		}
	}
	c.writeErr(w, r, err)
}

func (c *Coordinator) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := api.ListOptions{State: api.BuildState(q.Get("state"))}
	switch opts.State {
	case "", api.BuildRunning, api.BuildSucceeded, api.BuildFailed, api.BuildCancelled:
	default:
		c.writeErr(w, r, badRequest(fmt.Errorf("unknown state %q", truncate(string(opts.State)))))
		return
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			c.writeErr(w, r, badRequest(fmt.Errorf("label filter %q is not key=value", truncate(l))))
			return
		}
		if opts.Labels == nil {
			opts.Labels = map[string]string{}
		}
		opts.Labels[k] = v
	}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"limit", nil}, {"before", &opts.Before}} {
		s := q.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			c.writeErr(w, r, badRequest(fmt.Errorf("bad %s %q", p.name, truncate(s))))
			return
		}
		if p.dst != nil {
			*p.dst = n
		} else {
			opts.Limit = int(min(n, 1000))
		}
	}
	bs, err := c.Builds(r.Context(), opts)
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.BuildList{Builds: bs})
}

func (c *Coordinator) handleEvents(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	from, _ := strconv.Atoi(r.URL.Query().Get("from"))
	epoch := r.URL.Query().Get("epoch")
	started := false
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 32<<10)
	var line []byte
	err = c.Events(r.Context(), id, from, epoch, func(evs []api.Event) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		for i := range evs {
			// Event.AppendJSON is json.Marshal's encoding without
			// reflection: two or three events per job.
			line = append(evs[i].AppendJSON(line[:0]), '\n')
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && !started {
		c.writeErr(w, r, err)
	}
}

func (c *Coordinator) handleCancel(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		if err = c.Cancel(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, struct{}{})
			return
		}
	}
	c.writeErr(w, r, err)
}

func (c *Coordinator) handleAttemptLog(w http.ResponseWriter, r *http.Request) {
	off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if off < 0 {
		off = 0
	}
	follow := r.URL.Query().Get("follow") == "1"
	lw := &lazyWriter{w: w}
	rc := http.NewResponseController(w)
	err := c.AttemptLog(r.Context(), r.PathValue("id"), off, follow, lw, func() { rc.Flush() })
	if err != nil && !lw.started {
		c.writeErr(w, r, err)
		return
	}
	lw.start()
}

// lazyWriter sends the text/plain header on the first write, so that an
// error found before any output can still be answered with its status.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) start() {
	if !l.started {
		l.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		l.w.Header().Set("X-Content-Type-Options", "nosniff")
		l.w.WriteHeader(http.StatusOK)
		l.started = true
	}
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	l.start()
	return l.w.Write(p)
}

func (c *Coordinator) handleJob(w http.ResponseWriter, r *http.Request) {
	res, err := c.JobResult(r.Context(), r.PathValue("id"))
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (c *Coordinator) handleJobLog(w http.ResponseWriter, r *http.Request) {
	lw := &lazyWriter{w: w}
	if err := c.JobLog(r.Context(), r.PathValue("id"), lw); err != nil && !lw.started {
		c.writeErr(w, r, err)
		return
	}
	lw.start()
}

func (c *Coordinator) handleJobOutput(w http.ResponseWriter, r *http.Request) {
	rc, n, err := c.JobOutput(r.Context(), r.PathValue("id"))
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	io.Copy(w, rc)
}

func (c *Coordinator) handleWorkers(w http.ResponseWriter, r *http.Request) {
	ws, err := c.Workers(r.Context())
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WorkerList{Workers: ws})
}

func (c *Coordinator) handlePutArtifact(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	if !artifacts.ValidDigest(digest) {
		c.writeErr(w, r, badRequest(fmt.Errorf("bad digest %q", truncate(digest))))
		return
	}
	status := http.StatusCreated
	if _, err := c.arts.Stat(r.Context(), digest); err == nil {
		status = http.StatusOK
	}
	err := c.arts.Put(r.Context(), digest, http.MaxBytesReader(w, r.Body, maxArtifact))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		err = fmt.Errorf("artifact larger than %d bytes: %w", int64(maxArtifact), api.ErrTooLarge)
	case errors.Is(err, artifacts.ErrDigestMismatch):
		err = badRequest(err)
	}
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, status, struct{}{})
}

// urlSigner is implemented by artifact stores whose blobs can be fetched
// directly with a signed URL (gcsartifacts with signed URLs enabled).
type urlSigner interface {
	SignedURL(ctx context.Context, digest string) (string, error)
}

func (c *Coordinator) handleGetArtifact(w http.ResponseWriter, r *http.Request) {
	if s, ok := c.arts.(urlSigner); ok && r.Method == http.MethodGet {
		// Send the reader to the store itself (HTTP clients drop the
		// Authorization header when redirected to another host).
		// Signing is local computation: try it before asking the store
		// whether the blob exists.
		d := r.PathValue("digest")
		if u, err := s.SignedURL(r.Context(), d); err == nil {
			if _, err := c.arts.Stat(r.Context(), d); err != nil {
				if errors.Is(err, artifacts.ErrNotFound) {
					err = fmt.Errorf("artifact %s: %w", truncate(d), api.ErrNotFound)
				}
				c.writeErr(w, r, err)
				return
			}
			http.Redirect(w, r, u, http.StatusTemporaryRedirect)
			return
		}
		// Signing is off or failed: serve the blob through here.
	}
	rc, n, err := c.OpenArtifact(r.Context(), r.PathValue("digest"))
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	if r.Method == http.MethodHead {
		return
	}
	io.Copy(w, rc)
}

func (c *Coordinator) handleMissing(w http.ResponseWriter, r *http.Request) {
	var req api.MissingRequest
	if err := decode(w, r, 80*maxMissingReq, &req); err != nil {
		c.writeErr(w, r, err)
		return
	}
	if len(req.Digests) > maxMissingReq {
		c.writeErr(w, r, badRequest(fmt.Errorf("%d digests, more than %d", len(req.Digests), maxMissingReq)))
		return
	}
	resp := api.MissingResponse{Missing: []string{}}
	for _, d := range req.Digests {
		if !artifacts.ValidDigest(d) {
			c.writeErr(w, r, badRequest(fmt.Errorf("bad digest %q", truncate(d))))
			return
		}
		if _, err := c.arts.Stat(r.Context(), d); err != nil {
			if !errors.Is(err, artifacts.ErrNotFound) {
				c.writeErr(w, r, err)
				return
			}
			resp.Missing = append(resp.Missing, d)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (c *Coordinator) handleRegister(w http.ResponseWriter, r *http.Request, p principal) {
	var req api.RegisterRequest
	if err := decode(w, r, maxJSONBody, &req); err != nil {
		c.writeErr(w, r, err)
		return
	}
	resp, err := c.Register(r.Context(), p.worker, req)
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (c *Coordinator) handlePoll(w http.ResponseWriter, r *http.Request, p principal) {
	var req api.PollRequest
	if err := decode(w, r, 16*maxJSONBody, &req); err != nil {
		c.writeErr(w, r, err)
		return
	}
	// An early answer (see api.PollRequest.Early) is the first of two
	// JSON values in the body; the second, api.PollAck, follows once
	// the poll's results are durable.
	started := false
	resp, err := c.PollEarly(r.Context(), p.worker, req, func(first *api.PollResponse) {
		started = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		json.NewEncoder(w).Encode(first)
		http.NewResponseController(w).Flush()
	})
	switch {
	case started && err != nil:
		_, code := api.Status(err)
		json.NewEncoder(w).Encode(api.PollAck{Code: code, Message: err.Error()})
	case started:
		json.NewEncoder(w).Encode(api.PollAck{Acked: true})
	case err != nil:
		c.writeErr(w, r, err)
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

func (c *Coordinator) handleAppendLog(w http.ResponseWriter, r *http.Request, p principal) {
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil {
		c.writeErr(w, r, badRequest(fmt.Errorf("bad offset %q", truncate(r.URL.Query().Get("offset")))))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLogChunk))
	if err != nil {
		c.writeErr(w, r, fmt.Errorf("log chunk larger than %d bytes: %w", maxLogChunk, api.ErrTooLarge))
		return
	}
	size, err := c.AppendLog(r.Context(), p.worker, r.PathValue("id"), off, data)
	if err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.LogResponse{Size: size})
}

func (c *Coordinator) handleResult(w http.ResponseWriter, r *http.Request, p principal) {
	var res api.AttemptResult
	if err := decode(w, r, maxJSONBody, &res); err != nil {
		c.writeErr(w, r, err)
		return
	}
	if res.AttemptID == "" {
		res.AttemptID = r.PathValue("id")
	}
	if res.AttemptID != r.PathValue("id") {
		c.writeErr(w, r, badRequest(fmt.Errorf("attempt_id %q does not match the path", truncate(res.AttemptID))))
		return
	}
	switch res.State {
	case api.AttemptSucceeded, api.AttemptFailed, api.AttemptTimedOut, api.AttemptError:
	default:
		c.writeErr(w, r, badRequest(fmt.Errorf("bad result state %q", truncate(string(res.State)))))
		return
	}
	if err := c.Result(r.Context(), p.worker, res); err != nil {
		c.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ResultResponse{Accepted: true})
}
