package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tryd-ci/tryd/maintner"
)

// Client calls a query API server. Errors for 404 and 400 answers wrap
// ErrNotFound and ErrBadRequest, like the in-process functions; 401
// answers wrap ErrUnauthorized.
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string
}

// NewClient returns a client of the server at baseURL (e.g.
// "http://localhost:8081"); hc nil means http.DefaultClient.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("query: bad server URL %q (want http(s)://host[:port])", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, hc: hc}, nil
}

// WithToken returns a copy of c that sends token, as "Authorization:
// Bearer TOKEN", with every request: for a server whose query API is
// wrapped by RequireToken (maintnerd.api_token). An empty token sends
// none.
func (c *Client) WithToken(token string) *Client {
	c2 := *c
	c2.token = token
	return &c2
}

// maxResponse bounds a response body, against a misbehaving server.
const maxResponse = 256 << 20

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	// path is already escaped segment by segment.
	target := c.base.String() + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("query: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxResponse)
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		data, _ := io.ReadAll(io.LimitReader(body, 64<<10))
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w (GET %s: %s)", ErrNotFound, path, msg)
		case http.StatusBadRequest:
			return fmt.Errorf("%w (GET %s: %s)", ErrBadRequest, path, msg)
		case http.StatusUnauthorized:
			return fmt.Errorf("%w (GET %s: %s)", ErrUnauthorized, path, msg)
		}
		return fmt.Errorf("query: GET %s: %s: %s", path, resp.Status, msg)
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("query: GET %s: decode response: %w", path, err)
	}
	return nil
}

func pathEscape(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(p))
	}
	return b.String()
}

// Stats returns the server corpus's statistics.
func (c *Client) Stats(ctx context.Context) (maintner.Stats, error) {
	var s maintner.Stats
	err := c.get(ctx, "/api/stats", nil, &s)
	return s, err
}

// Repos lists the GitHub repositories.
func (c *Client) Repos(ctx context.Context) ([]RepoSummary, error) {
	var out []RepoSummary
	err := c.get(ctx, "/api/github/repos", nil, &out)
	return out, err
}

// Repo returns one GitHub repository.
func (c *Client) Repo(ctx context.Context, owner, name string) (*Repo, error) {
	var out Repo
	if err := c.get(ctx, "/api/github/repos"+pathEscape(owner, name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Issues lists one page of a repository's issues matching f.
func (c *Client) Issues(ctx context.Context, owner, name string, f IssueFilter) (Page[IssueSummary], error) {
	var out Page[IssueSummary]
	err := c.get(ctx, "/api/github/repos"+pathEscape(owner, name)+"/issues", f.Values(), &out)
	return out, err
}

// Issue returns one issue or pull request.
func (c *Client) Issue(ctx context.Context, owner, name string, number int32) (*Issue, error) {
	var out Issue
	if err := c.get(ctx, "/api/github/repos"+pathEscape(owner, name)+"/issues/"+strconv.Itoa(int(number)), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Projects lists the Gerrit projects.
func (c *Client) Projects(ctx context.Context) ([]Project, error) {
	var out []Project
	err := c.get(ctx, "/api/gerrit/projects", nil, &out)
	return out, err
}

// Changes lists one page of Gerrit changes matching f.
func (c *Client) Changes(ctx context.Context, f ChangeFilter) (Page[ChangeSummary], error) {
	var out Page[ChangeSummary]
	err := c.get(ctx, "/api/gerrit/changes", f.Values(), &out)
	return out, err
}

// Change returns one Gerrit change.
func (c *Client) Change(ctx context.Context, project string, number int32) (*Change, error) {
	var out Change
	if err := c.get(ctx, "/api/gerrit/changes/"+strconv.Itoa(int(number)), url.Values{"project": {project}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Votes returns a change's votes per patch set.
func (c *Client) Votes(ctx context.Context, project string, number int32) ([]PatchSetVotes, error) {
	var out []PatchSetVotes
	err := c.get(ctx, "/api/gerrit/changes/"+strconv.Itoa(int(number))+"/votes", url.Values{"project": {project}}, &out)
	return out, err
}
