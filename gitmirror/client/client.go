// Package client is the Go client of tryd's gitmirror, used by workers and
// the trybot to get source code: a tarball of any revision unpacked into a
// directory, the refs of a repository, a nudge to fetch now, and the URL of
// a repository for git fetch over read-only smart HTTP.
//
// It also owns gitmirror's wire format, shared with the server:
//
//	GET  /<repo>.tar.gz?rev=<rev>      gzip'd tar of the revision (git archive);
//	                                   headers X-Tryd-Commit, X-Tryd-Tree, X-Tryd-Cache
//	GET  /<repo>/refs[?prefix=refs/x/] JSON Refs
//	POST /<repo>/nudge[?wait=1]        202 (fetch scheduled) or, with wait, 200
//	                                   after a fetch that started after the request
//	GET  /<repo>.git/info/refs?service=git-upload-pack   git smart HTTP, read-only
//	POST /<repo>.git/git-upload-pack
//	GET  /debug[?format=json]          HTML or JSON Status of every repository
//
// A repository name is "/"-separated parts (CheckRepoName); a revision is
// 4 to 64 hex digits or a refs/... name (CheckRev). Errors are short
// plain-text bodies: 400 for a bad name, 404 for an unknown repository or
// revision, 502 when the upstream fetch failed, 503 while the mirror is not
// ready or when a tarball could not be built (e.g. a full disk), 403 for
// receive-pack; the client maps them to ErrBadName, ErrNotFound and
// ErrUnavailable. A mirror configured with tokens answers 401 (with a
// Basic challenge) to a request without "Authorization: Bearer TOKEN" or
// basic auth whose password is the token (ErrUnauthorized). A cached
// tarball has a Content-Length; one streamed while it is built is
// chunked, and a build failing mid-stream aborts the connection rather
// than ending a short body cleanly.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Error kinds returned by the client (wrapped; test with errors.Is).
var (
	// ErrNotFound: the repository or revision is unknown to the mirror,
	// even after a fetch.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the mirror or its upstream failed; retrying later
	// may succeed.
	ErrUnavailable = errors.New("gitmirror unavailable")
	// ErrUnauthorized: the mirror requires a token (see WithToken) and
	// the client sent none or a wrong one.
	ErrUnauthorized = errors.New("gitmirror: missing or bad token")
)

// maxErrorBody bounds how much of an error response is read into an
// error message.
const maxErrorBody = 1024

// maxJSONBody bounds JSON responses (a large GitHub repository has tens
// of thousands of pull request refs).
const maxJSONBody = 64 << 20

// Client talks to one gitmirror server.
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string
}

// New returns a client for the gitmirror at baseURL (e.g.
// "http://gitmirror:8083"). A nil hc means http.DefaultClient; requests
// are bounded by the contexts given to each method.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("gitmirror client: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("gitmirror client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, hc: hc}, nil
}

// WithToken returns a copy of c that sends token, as "Authorization:
// Bearer TOKEN", with every request: for a mirror configured with
// gitmirror.Options.Tokens.
func (c *Client) WithToken(token string) *Client {
	c2 := *c
	c2.token = token
	return &c2
}

// RepoURL returns the URL to give to git clone or git fetch for repo,
// served read-only over smart HTTP.
func (c *Client) RepoURL(repo string) string {
	return c.base.String() + "/" + repo + ".git"
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = q.Encode()
	return u.String()
}

// Refs returns the refs of repo under prefix ("" for all), mapping each
// ref name to its object name.
func (c *Client) Refs(ctx context.Context, repo, prefix string) (map[string]string, error) {
	if err := CheckRepoName(repo); err != nil {
		return nil, fmt.Errorf("gitmirror client: refs: %w", err)
	}
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	resp, err := c.do(ctx, http.MethodGet, c.url("/"+repo+"/refs", q))
	if err != nil {
		return nil, fmt.Errorf("gitmirror client: refs of %s: %w", repo, err)
	}
	defer resp.Body.Close()
	var refs Refs
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&refs); err != nil {
		return nil, fmt.Errorf("gitmirror client: refs of %s: decode: %w", repo, err)
	}
	if refs.Refs == nil {
		refs.Refs = map[string]string{}
	}
	return refs.Refs, nil
}

// Nudge asks the mirror to fetch repo now and returns without waiting.
func (c *Client) Nudge(ctx context.Context, repo string) error {
	return c.nudge(ctx, repo, false)
}

// Sync asks the mirror to fetch repo and waits until a fetch that started
// after the call has finished; it returns that fetch's failure as
// ErrUnavailable.
func (c *Client) Sync(ctx context.Context, repo string) error {
	return c.nudge(ctx, repo, true)
}

func (c *Client) nudge(ctx context.Context, repo string, wait bool) error {
	if err := CheckRepoName(repo); err != nil {
		return fmt.Errorf("gitmirror client: nudge: %w", err)
	}
	q := url.Values{}
	if wait {
		q.Set("wait", "1")
	}
	resp, err := c.do(ctx, http.MethodPost, c.url("/"+repo+"/nudge", q))
	if err != nil {
		return fmt.Errorf("gitmirror client: nudge %s: %w", repo, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	return nil
}

// Tarball is an open tarball response.
type Tarball struct {
	// Body is the gzip'd tar stream; the caller closes it.
	Body io.ReadCloser
	// Commit and Tree are the object names the server resolved rev to.
	Commit, Tree string
	// Cache is the server's X-Tryd-Cache header: hit, miss or join.
	Cache string
}

// Tarball opens the gzip'd tar of repo at rev.
func (c *Client) Tarball(ctx context.Context, repo, rev string) (*Tarball, error) {
	if err := CheckRepoName(repo); err != nil {
		return nil, fmt.Errorf("gitmirror client: tarball: %w", err)
	}
	if err := CheckRev(rev); err != nil {
		return nil, fmt.Errorf("gitmirror client: tarball of %s: %w", repo, err)
	}
	resp, err := c.do(ctx, http.MethodGet, c.url("/"+repo+".tar.gz", url.Values{"rev": {rev}}))
	if err != nil {
		return nil, fmt.Errorf("gitmirror client: tarball of %s at %s: %w", repo, rev, err)
	}
	return &Tarball{
		Body:   resp.Body,
		Commit: resp.Header.Get(HeaderCommit),
		Tree:   resp.Header.Get(HeaderTree),
		Cache:  resp.Header.Get(HeaderCache),
	}, nil
}

// Download unpacks repo at rev into dir, which must exist and should be
// empty. Entries that would leave dir (absolute paths, "..", writes
// through symbolic links) are refused. It returns the resolved commit.
func (c *Client) Download(ctx context.Context, repo, rev, dir string) (commit string, err error) {
	tb, err := c.Tarball(ctx, repo, rev)
	if err != nil {
		return "", err
	}
	defer tb.Body.Close()
	if err := Extract(tb.Body, dir); err != nil {
		return "", fmt.Errorf("gitmirror client: tarball of %s at %s: %w", repo, rev, err)
	}
	return tb.Commit, nil
}

// do sends a request and returns the response if its status is 2xx;
// otherwise it maps the status to an error kind with the server's short
// message.
func (c *Client) do(ctx context.Context, method, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(b))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, msg)
	case resp.StatusCode == http.StatusBadRequest:
		return nil, fmt.Errorf("%w: %s", ErrBadName, msg)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, resp.Status, msg)
	default:
		return nil, fmt.Errorf("unexpected response %s: %s", resp.Status, msg)
	}
}
