// Package client is the Go client of the trybot's HTTP JSON API, and owns
// that API's wire format, shared with the server (package trybot) and used
// by the dashboard.
//
// # Wire format
//
//	GET /api/runs?review=&repo=&change=&patch_set=&state=&limit=&before=
//	    → {"runs": [Run, ...]}, newest first; before pages by run ID
//	GET /api/runs/{id}
//	    → Run, or 404 {"error": "..."}
//
// A Run is a try run: one change (Gerrit) or pull request (GitHub) at one
// revision, the builders it runs, one coordinator build per builder and
// the outcome. Times are RFC 3339, durations milliseconds (*_ms). Errors
// are {"error": "message"} with 400 (bad query), 401 (the server requires
// "Authorization: Bearer TOKEN", trybot.api_token, and got none or a
// wrong one), 404 (no such run), 500 or 503 (store trouble: retry).
//
// A run lists in "report_errors" ({"what", "status", "error", "at",
// "awaiting_access"}) the posts that Gerrit or GitHub refused for good,
// and those waiting for GitHub access to the repository (see
// ReportError).
//
// A failed job of a failed build carries "classification" once the trybot
// has compared it with a rerun and with the base revision: "new" (passes
// at base), "pre-existing" (fails at base too) or "flaky" (passed when run
// again); the field is omitted until then.
//
// This package imports only the standard library.
package client

import (
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
)

// RunState is the state of a try run.
type RunState string

// Run states. A run is running until its builds finish, reporting while
// its result is being posted, and then one of the final states.
// Superseded runs were replaced by a newer patch set or push: their builds
// were cancelled and nothing more was posted for them.
const (
	StateRunning    RunState = "running"
	StateReporting  RunState = "reporting"
	StateSucceeded  RunState = "succeeded"
	StateFailed     RunState = "failed"
	StateInfra      RunState = "infra_failed"
	StateSuperseded RunState = "superseded"
)

// Finished reports whether the run will not change any more.
func (s RunState) Finished() bool {
	return s == StateSucceeded || s == StateFailed || s == StateInfra || s == StateSuperseded
}

// Review systems.
const (
	ReviewGerrit = "gerrit"
	ReviewGitHub = "github"
)

// Run is one try run.
type Run struct {
	ID int64 `json:"id"`
	// Review is "gerrit" or "github"; Server the configured server name.
	Review string `json:"review"`
	Server string `json:"server"`
	// Repo is tryd's repository name (gitmirror's); Project the Gerrit
	// project or GitHub "owner/repo".
	Repo    string `json:"repo"`
	Project string `json:"project"`
	// Change is the Gerrit change or GitHub pull request number;
	// PatchSet is the Gerrit patch set (0 on GitHub).
	Change   int32 `json:"change"`
	PatchSet int32 `json:"patch_set,omitempty"`
	// Revision is the commit under test; Branch the target branch.
	Revision string `json:"revision"`
	Branch   string `json:"branch,omitempty"`
	// Base is the change's parent on its branch (Gerrit: the patch set
	// commit's first parent; GitHub: the pull request's base commit),
	// where failures are compared; empty until known.
	Base string `json:"base,omitempty"`
	// ChangeURL links to the change or pull request.
	ChangeURL string `json:"change_url,omitempty"`
	// Trigger says what asked for the run: "vote", "label", "comment",
	// "rerequest".
	Trigger string `json:"trigger"`
	// RequestedBy is the account that asked (Gerrit account id or GitHub
	// login), when known.
	RequestedBy string `json:"requested_by,omitempty"`
	// Builders run in this try run, sorted; Unknown lists requested
	// SlowBot names that match no builder or alias.
	Builders []string `json:"builders"`
	Unknown  []string `json:"unknown,omitempty"`
	State    RunState `json:"state"`
	// Summary is the posted result message (empty until reported).
	Summary  string     `json:"summary,omitempty"`
	Created  time.Time  `json:"created"`
	Finished *time.Time `json:"finished,omitempty"`
	// DurationMS is from creation to finish (or to now while running).
	DurationMS int64   `json:"duration_ms"`
	Builds     []Build `json:"builds"`
	// ReportErrors lists what the review system refused for good (an
	// HTTP 4xx that retrying cannot change, such as GitHub's 422 "No
	// commit found for SHA" once a force-push removed the commit): the
	// trybot recorded the failure and stopped retrying it. Transient
	// failures (5xx, rate limits) are retried and never appear here.
	ReportErrors []ReportError `json:"report_errors,omitempty"`
}

// ReportError is one post the review system refused for good.
type ReportError struct {
	// What was being posted: "begin", "started:<builder>",
	// "done:<builder>" or "result".
	What string `json:"what"`
	// Status is the HTTP status of the refusal.
	Status int `json:"status"`
	// Error is the review system's message, or why the post was not
	// made.
	Error string    `json:"error"`
	At    time.Time `json:"at"`
	// AwaitingAccess marks a post not made because the trybot's GitHub
	// credentials had lost access to the repository (the App
	// uninstalled, or the repository taken out of its installation):
	// unlike the other entries it is made once access is back, and the
	// entry then goes.
	AwaitingAccess bool `json:"awaiting_access,omitempty"`
}

// BuildState is the state of one builder's build within a run: the
// coordinator's build state, plus "pending" before submission and
// "infra_failed" when the build could not run for reasons that are not
// the change's fault.
type BuildState string

// Build states.
const (
	BuildPending   BuildState = "pending"
	BuildRunning   BuildState = "running"
	BuildSucceeded BuildState = "succeeded"
	BuildFailed    BuildState = "failed"
	BuildInfra     BuildState = "infra_failed"
	BuildCancelled BuildState = "cancelled"
)

// Finished reports whether the build will not change any more.
func (s BuildState) Finished() bool {
	return s == BuildSucceeded || s == BuildFailed || s == BuildInfra || s == BuildCancelled
}

// Build is one builder's coordinator build in a run.
type Build struct {
	Builder string `json:"builder"`
	// BuildID is the coordinator's build ID (0 until submitted).
	BuildID  int64      `json:"build_id,omitempty"`
	State    BuildState `json:"state"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// DurationMS is from submission to finish.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Failed lists the jobs that failed (for a failed or infra_failed
	// build).
	Failed []FailedJob `json:"failed,omitempty"`
	// Error explains an infrastructure failure.
	Error string `json:"error,omitempty"`
	// ClassifyError says why the failed jobs of a failed build could not
	// be classified (they then count as new failures).
	ClassifyError string `json:"classify_error,omitempty"`
	// URL is the build's status page.
	URL string `json:"url,omitempty"`
}

// FailedJob is one failed job of a build.
type FailedJob struct {
	Name  string `json:"name"`
	JobID string `json:"job_id"`
	// State is the coordinator's job state (failed, cancelled, ...).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// LogURL links to the job's log.
	LogURL string `json:"log_url,omitempty"`
	// Infra is set when the job failed for reasons that are not the
	// change's fault (worker lost, source unavailable, no worker).
	Infra bool `json:"infra,omitempty"`
	// Classification compares the failure with the base revision and a
	// rerun: one of the Class* values, omitted until classified (and for
	// infrastructure failures, which are never classified).
	Classification string `json:"classification,omitempty"`
}

// Classifications of a failed job (FailedJob.Classification).
const (
	// ClassNew: the job passes at the change's base revision: the
	// change broke it.
	ClassNew = "new"
	// ClassPreExisting: the job fails at the base revision too.
	ClassPreExisting = "pre-existing"
	// ClassFlaky: the job passed when run again at the same revision.
	ClassFlaky = "flaky"
)

// RunList answers GET /api/runs.
type RunList struct {
	Runs []Run `json:"runs"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// ListOptions filter GET /api/runs. Zero fields do not filter.
type ListOptions struct {
	Review   string
	Repo     string
	Change   int32
	PatchSet int32
	State    RunState
	// Limit bounds the answer (default 50, at most 1000).
	Limit int
	// Before lists runs with an ID lower than this.
	Before int64
}

// Query encodes the options as URL query parameters.
func (o ListOptions) Query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("review", o.Review)
	set("repo", o.Repo)
	set("state", string(o.State))
	if o.Change != 0 {
		q.Set("change", strconv.Itoa(int(o.Change)))
	}
	if o.PatchSet != 0 {
		q.Set("patch_set", strconv.Itoa(int(o.PatchSet)))
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Before != 0 {
		q.Set("before", strconv.FormatInt(o.Before, 10))
	}
	return q
}

// MaxLimit bounds ListOptions.Limit.
const MaxLimit = 1000

// ParseListOptions decodes a query (the server's side of Query); bad
// values are errors naming the parameter.
func ParseListOptions(q url.Values) (ListOptions, error) {
	var o ListOptions
	o.Review, o.Repo, o.State = q.Get("review"), q.Get("repo"), RunState(q.Get("state"))
	switch o.Review {
	case "", ReviewGerrit, ReviewGitHub:
	default:
		return o, fmt.Errorf("bad review %q (want gerrit or github)", o.Review)
	}
	switch o.State {
	case "", StateRunning, StateReporting, StateSucceeded, StateFailed, StateInfra, StateSuperseded:
	default:
		return o, fmt.Errorf("bad state %q", o.State)
	}
	num := func(name string, bits int) (int64, error) {
		s := q.Get(name)
		if s == "" {
			return 0, nil
		}
		v, err := strconv.ParseInt(s, 10, bits)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("bad %s %q (want a non-negative integer)", name, s)
		}
		return v, nil
	}
	var err error
	var v int64
	if v, err = num("change", 32); err != nil {
		return o, err
	}
	o.Change = int32(v)
	if v, err = num("patch_set", 32); err != nil {
		return o, err
	}
	o.PatchSet = int32(v)
	if v, err = num("limit", 32); err != nil {
		return o, err
	}
	o.Limit = int(v)
	if o.Limit > MaxLimit {
		return o, fmt.Errorf("bad limit %d (at most %d)", o.Limit, MaxLimit)
	}
	if o.Before, err = num("before", 64); err != nil {
		return o, err
	}
	return o, nil
}

// Error kinds returned by the client (wrapped; test with errors.Is).
// ErrUnauthorized: the server requires a token (trybot.api_token) and
// the client sent none or a wrong one.
var (
	ErrNotFound     = errors.New("trybot: not found")
	ErrBadRequest   = errors.New("trybot: bad request")
	ErrUnauthorized = errors.New("trybot: unauthorized")
	ErrUnavailable  = errors.New("trybot: unavailable")
)

// Client talks to one trybot server.
type Client struct {
	base  string
	hc    *http.Client
	token string
}

// WithToken returns a copy of c that sends token, as "Authorization:
// Bearer TOKEN", with every request: for a trybot whose API requires
// one (trybot.api_token). An empty token sends none.
func (c *Client) WithToken(token string) *Client {
	c2 := *c
	c2.token = token
	return &c2
}

// New returns a client for the trybot at baseURL (e.g.
// "http://trybot:8085"). A nil hc means http.DefaultClient.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("trybot client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u.String(), hc: hc}, nil
}

// Runs lists try runs, newest first.
func (c *Client) Runs(ctx context.Context, o ListOptions) ([]Run, error) {
	var out RunList
	if err := c.get(ctx, "/api/runs?"+o.Query().Encode(), &out); err != nil {
		return nil, err
	}
	return out.Runs, nil
}

// Run returns one try run.
func (c *Client) Run(ctx context.Context, id int64) (*Run, error) {
	var out Run
	if err := c.get(ctx, "/api/runs/"+strconv.FormatInt(id, 10), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("trybot client: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("trybot client: GET %s: %w: %w", path, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(body))
		}
		kind := ErrUnavailable
		switch {
		case resp.StatusCode == http.StatusNotFound:
			kind = ErrNotFound
		case resp.StatusCode == http.StatusBadRequest:
			kind = ErrBadRequest
		case resp.StatusCode == http.StatusUnauthorized:
			kind = ErrUnauthorized
		}
		return fmt.Errorf("trybot client: GET %s: %d %s: %w", path, resp.StatusCode, eb.Error, kind)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("trybot client: GET %s: decode: %w", path, err)
	}
	return nil
}
