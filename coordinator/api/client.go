package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Client talks to a coordinator. The same type serves API clients (with a
// client token) and workers (with a worker token); the server refuses
// calls the token is not entitled to.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the coordinator at baseURL
// ("http://host:port"), authenticating with token. A nil hc means a client
// without overall timeout (polls and event streams are long); every call
// is bounded by its context instead.
func NewClient(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("coordinator client: bad base URL %q", baseURL)
	}
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Workers run many requests at once against one host.
		tr.MaxIdleConnsPerHost = 64
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}, nil
}

// BaseURL returns the coordinator's URL.
func (c *Client) BaseURL() string { return c.base }

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("coordinator client: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return req, nil
}

// do sends a request and returns the response if it is 2xx; otherwise it
// returns the decoded *Error.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("coordinator client: %s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, fmt.Errorf("coordinator client: %s %s: %w", req.Method, req.URL.Path, readError(resp))
	}
	return resp, nil
}

// call sends in as JSON (if not nil) and decodes the answer into out (if
// not nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("coordinator client: encode %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("coordinator client: decode %s %s: %w", method, path, err)
	}
	return nil
}

// ---- client API ----

// Submit submits a graph and returns the new build's ID and the
// normalized job IDs by name. For uploaded sources, call Missing and
// PutArtifact for the files first (or use SubmitWithFiles).
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (*SubmitResponse, error) {
	var out SubmitResponse
	if err := c.call(ctx, http.MethodPost, "/api/graphs", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SubmitWithFiles performs the missing-files handshake for an uploaded
// source, then submits: it asks which of the graph's file digests the
// store lacks, uploads only those with open (which returns the contents
// of a file of the manifest), and submits the graph.
func (c *Client) SubmitWithFiles(ctx context.Context, req SubmitRequest, open func(f graph.File) (io.ReadCloser, error)) (*SubmitResponse, error) {
	digests := make([]string, 0, len(req.Graph.Source.Files))
	byDigest := map[string]graph.File{}
	for _, f := range req.Graph.Source.Files {
		if _, ok := byDigest[f.Digest]; !ok {
			digests = append(digests, f.Digest)
			byDigest[f.Digest] = f
		}
	}
	if len(digests) > 0 {
		missing, err := c.Missing(ctx, digests)
		if err != nil {
			return nil, err
		}
		for _, d := range missing {
			f := byDigest[d]
			rc, err := open(f)
			if err != nil {
				return nil, fmt.Errorf("coordinator client: open %s: %w", f.Path, err)
			}
			err = c.PutArtifact(ctx, d, rc, f.Size)
			rc.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	return c.Submit(ctx, req)
}

// Build returns a build's status with every job.
func (c *Client) Build(ctx context.Context, id int64) (*Build, error) {
	var out Build
	if err := c.call(ctx, http.MethodGet, "/api/builds/"+strconv.FormatInt(id, 10), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Builds lists builds, newest first.
func (c *Client) Builds(ctx context.Context, opts ListOptions) ([]Build, error) {
	q := url.Values{}
	if opts.State != "" {
		q.Set("state", string(opts.State))
	}
	for k, v := range opts.Labels {
		q.Add("label", k+"="+v)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Before > 0 {
		q.Set("before", strconv.FormatInt(opts.Before, 10))
	}
	var out BuildList
	if err := c.call(ctx, http.MethodGet, "/api/builds?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out.Builds, nil
}

// Cancel cancels a build: queued jobs become cancelled, running attempts
// are killed. Cancelling a finished build is a no-op.
func (c *Client) Cancel(ctx context.Context, id int64) error {
	return c.call(ctx, http.MethodPost, "/api/builds/"+strconv.FormatInt(id, 10)+"/cancel", nil, nil)
}

// Events streams a build's events to fn, starting at index from of the
// given epoch (empty epoch: from the beginning), until the build finishes
// (after EventBuildFinished), fn returns an error, or ctx ends. It returns
// nil after the build finished.
func (c *Client) Events(ctx context.Context, id int64, from int, epoch string, fn func(Event) error) error {
	q := url.Values{}
	q.Set("from", strconv.Itoa(from))
	if epoch != "" {
		q.Set("epoch", epoch)
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/api/builds/"+strconv.FormatInt(id, 10)+"/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("coordinator client: events of build %d: %w", id, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
		if ev.Type == EventBuildFinished {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("coordinator client: events of build %d: %w", id, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("coordinator client: events of build %d: stream ended early: %w", id, io.ErrUnexpectedEOF)
}

// Wait follows a build's events (reconnecting after a dropped stream or a
// coordinator restart) until it finishes, calling fn (if not nil) for each
// event, and returns its final status.
func (c *Client) Wait(ctx context.Context, id int64, fn func(Event)) (*Build, error) {
	from, epoch := 0, ""
	for {
		err := c.Events(ctx, id, from, epoch, func(ev Event) error {
			if ev.Type == EventHello {
				if ev.Epoch != epoch {
					epoch, from = ev.Epoch, 0
				}
			} else {
				from = ev.Index + 1
			}
			if fn != nil {
				fn(ev)
			}
			return nil
		})
		if err == nil {
			b, err := c.Build(ctx, id)
			if !errors.Is(err, ErrUnavailable) {
				return b, err
			}
			// The build finished, but its status cannot be read
			// now (a database outage): retry, as for a dropped
			// stream.
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AttemptLog returns an attempt's log from byte offset on. With follow,
// the answer streams until the attempt finishes.
func (c *Client) AttemptLog(ctx context.Context, attemptID string, offset int64, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	q.Set("offset", strconv.FormatInt(offset, 10))
	if follow {
		q.Set("follow", "1")
	}
	return c.get(ctx, "/api/attempts/"+url.PathEscape(attemptID)+"/log?"+q.Encode())
}

// JobLog returns the log of a job ID's latest attempt (for a cached job,
// the attempt that produced the result).
func (c *Client) JobLog(ctx context.Context, jobID string) (io.ReadCloser, error) {
	return c.get(ctx, "/api/jobs/"+url.PathEscape(jobID)+"/log")
}

// JobOutput returns a job's output archive (see graph.ReadOutputs).
func (c *Client) JobOutput(ctx context.Context, jobID string) (io.ReadCloser, error) {
	return c.get(ctx, "/api/jobs/"+url.PathEscape(jobID)+"/output")
}

// Job returns the cached result of a job ID.
func (c *Client) Job(ctx context.Context, jobID string) (*JobResult, error) {
	var out JobResult
	if err := c.call(ctx, http.MethodGet, "/api/jobs/"+url.PathEscape(jobID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Workers lists the workers the coordinator knows.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	var out WorkerList
	if err := c.call(ctx, http.MethodGet, "/api/workers", nil, &out); err != nil {
		return nil, err
	}
	return out.Workers, nil
}

func (c *Client) get(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ---- artifacts (clients and workers) ----

// Missing returns the digests the artifact store does not hold.
func (c *Client) Missing(ctx context.Context, digests []string) ([]string, error) {
	var out MissingResponse
	if err := c.call(ctx, http.MethodPost, "/api/artifacts/missing", MissingRequest{Digests: digests}, &out); err != nil {
		return nil, err
	}
	return out.Missing, nil
}

// PutArtifact uploads a blob whose SHA-256 is digest; the server verifies
// it. size is the length of r, or -1 if unknown.
func (c *Client) PutArtifact(ctx context.Context, digest string, r io.Reader, size int64) error {
	req, err := c.newRequest(ctx, http.MethodPut, "/api/artifacts/"+url.PathEscape(digest), r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if size >= 0 {
		req.ContentLength = size
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// GetArtifact opens a blob; the caller closes it and should verify the
// digest of what it reads.
func (c *Client) GetArtifact(ctx context.Context, digest string) (io.ReadCloser, error) {
	return c.get(ctx, "/api/artifacts/"+url.PathEscape(digest))
}

// HasArtifact reports whether the store holds a blob.
func (c *Client) HasArtifact(ctx context.Context, digest string) (bool, error) {
	req, err := c.newRequest(ctx, http.MethodHead, "/api/artifacts/"+url.PathEscape(digest), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("coordinator client: HEAD artifact: %w", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode/100 == 2:
		return true, nil
	}
	return false, fmt.Errorf("coordinator client: HEAD artifact: %w", &Error{Status: resp.StatusCode, Code: codeFor(resp.StatusCode)})
}

func codeFor(status int) string {
	for _, k := range kinds {
		if k.status == status {
			return k.code
		}
	}
	return "internal"
}

// ---- worker protocol ----

// Register announces the worker and returns its session.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (*RegisterResponse, error) {
	var out RegisterResponse
	if err := c.call(ctx, http.MethodPost, "/api/worker/register", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Poll heartbeats, reports results and waits for assignments. A result of
// ErrUnknownWorker means: register again.
func (c *Client) Poll(ctx context.Context, req PollRequest) (*PollResponse, error) {
	var out PollResponse
	if err := c.call(ctx, http.MethodPost, "/api/worker/poll", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PollEarly is Poll with PollRequest.Early set: when the answer comes in
// two parts, early receives the first (assignments and cancellations,
// whose results are not durable yet) as soon as it arrives, and
// PollEarly returns once the results are acknowledged, with the first
// part again (More cleared) or with the error that kept them from being
// recorded. An answer in one part (nothing was early) is returned
// without calling early. Use it only with a coordinator whose
// RegisterResponse.EarlyAssignments is set.
func (c *Client) PollEarly(ctx context.Context, req PollRequest, early func(*PollResponse)) (*PollResponse, error) {
	req.Early = true
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("coordinator client: encode poll: %w", err)
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, "/api/worker/poll", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var out PollResponse
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("coordinator client: decode poll answer: %w", err)
	}
	if !out.More {
		return &out, nil
	}
	out.More = false
	early(&out)
	var ack PollAck
	if err := dec.Decode(&ack); err != nil {
		return &out, fmt.Errorf("coordinator client: poll acknowledgement: %w", err)
	}
	if !ack.Acked {
		return &out, fmt.Errorf("coordinator client: poll acknowledgement: %w", ack.err())
	}
	return &out, nil
}

// err returns the error an acknowledgement that is not one carries.
func (a PollAck) err() error {
	e := &Error{Code: a.Code, Message: a.Message}
	if e.Code == "" {
		e.Code = "internal"
	}
	for _, k := range kinds {
		if k.code == e.Code {
			e.Status = k.status
		}
	}
	if e.Status == 0 {
		e.Status = http.StatusInternalServerError
	}
	return e
}

// AppendLog appends a chunk to an attempt's live log; offset is where the
// chunk starts (the log's size so far), so that a retried append is not
// duplicated. It returns the log's new size. ErrConflict means the attempt
// is no longer current (stop it) or offset is beyond the log's end.
func (c *Client) AppendLog(ctx context.Context, attemptID string, offset int64, chunk []byte) (int64, error) {
	req, err := c.newRequest(ctx, http.MethodPost, "/api/worker/attempts/"+url.PathEscape(attemptID)+"/log?offset="+strconv.FormatInt(offset, 10), bytes.NewReader(chunk))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out LogResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("coordinator client: decode log answer: %w", err)
	}
	return out.Size, nil
}

// Result reports a finished attempt. ErrConflict means the coordinator no
// longer expects it (requeued or cancelled); the worker drops it.
func (c *Client) Result(ctx context.Context, res AttemptResult) error {
	return c.call(ctx, http.MethodPost, "/api/worker/attempts/"+url.PathEscape(res.AttemptID)+"/result", res, nil)
}
