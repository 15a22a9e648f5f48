// Package client is the Go client of pubsubhelper's subscription API:
// Wait (one long poll of GET /waitevent), Recent (GET /recent) and
// Subscribe, which follows the event stream from a cursor, resumes
// exactly after restarts on either side (by sequence number within a
// journal, by time across journals) and retries transient failures with
// backoff. maintnerd, gitmirror and trybot use it through cmd wiring.
//
// The wire format is that of package pubsubtypes.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// Errors that retrying does not cure.
var (
	// ErrBadRequest marks a query the server rejected (HTTP 400).
	ErrBadRequest = errors.New("pubsubhelper client: bad request")
	// ErrUnauthorized marks a missing or wrong subscriber token (HTTP 401
	// or 403).
	ErrUnauthorized = errors.New("pubsubhelper client: unauthorized")
)

// Client talks to one pubsubhelper.
type Client struct {
	base  string
	hc    *http.Client
	token string
}

// Options configure a Client.
type Options struct {
	// HTTPClient makes the requests; nil means a client without an
	// overall timeout, as long polls need (requests are bounded by their
	// contexts).
	HTTPClient *http.Client
	// Token is the subscriber token, sent as "Authorization: Bearer".
	// tryd's pubsubhelper requires one, except when it listens on
	// loopback with none configured (and then serves no raw payloads);
	// x/build's requires none.
	Token string
}

// New returns a client of the pubsubhelper at baseURL (e.g.
// "http://127.0.0.1:8082").
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pubsubhelper client: bad base URL %q", baseURL)
	}
	if opts.Token != "" && (strings.TrimSpace(opts.Token) != opts.Token || strings.ContainsAny(opts.Token, "\r\n")) {
		// Never echo the token itself.
		return nil, errors.New("pubsubhelper client: the subscriber token has surrounding spaces or line breaks")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc, token: opts.Token}, nil
}

// WaitOptions tune one long poll.
type WaitOptions struct {
	// Timeout is how long the server waits for an event (default: the
	// server's, 30s).
	Timeout time.Duration
	// Raw asks for the payload as received in Event.Raw.
	Raw bool
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("pubsubhelper client: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("pubsubhelper client: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		err := fmt.Errorf("pubsubhelper client: GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
		switch resp.StatusCode {
		case http.StatusBadRequest:
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %v", ErrUnauthorized, err)
		}
		return err
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(out); err != nil {
		return fmt.Errorf("pubsubhelper client: GET %s: decode: %w", path, err)
	}
	return nil
}

// Wait long-polls for the first event after cur that passes f. When none
// arrives within the timeout it returns an event with LongPollTimeout set
// whose Cursor is where to resume.
func (c *Client) Wait(ctx context.Context, cur pubsubtypes.Cursor, f pubsubtypes.Filter, opts WaitOptions) (*pubsubtypes.Event, error) {
	q := url.Values{}
	cur.Values(q)
	f.Values(q)
	if opts.Timeout > 0 {
		q.Set("timeout", opts.Timeout.String())
	}
	if opts.Raw {
		q.Set("raw", "1")
	}
	var ev pubsubtypes.Event
	if err := c.get(ctx, "/waitevent", q, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// Recent returns up to limit recent events that pass f (after cur, if it
// is not zero), newest first.
func (c *Client) Recent(ctx context.Context, cur pubsubtypes.Cursor, f pubsubtypes.Filter, limit int) ([]pubsubtypes.Event, error) {
	q := url.Values{}
	cur.Values(q)
	f.Values(q)
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var evs []pubsubtypes.Event
	if err := c.get(ctx, "/recent", q, &evs); err != nil {
		return nil, err
	}
	return evs, nil
}

// SubscribeOptions tune Subscribe.
type SubscribeOptions struct {
	WaitOptions
	// MinBackoff and MaxBackoff bound the wait between retries after a
	// failure (defaults 100ms and 10s; the wait doubles, with jitter).
	MinBackoff, MaxBackoff time.Duration
	// PollGrace is how long past its long-poll timeout (WaitOptions.
	// Timeout, or 30s, pubsubhelper's default, when unset) a poll may
	// take before it is abandoned and retried (default 1m): a server
	// that accepted the request and went silent would otherwise stop the
	// subscription for good.
	PollGrace time.Duration
	// Log receives retry warnings; nil discards them.
	Log logrus.FieldLogger
}

// Subscribe calls fn for every event after from that passes f, in order,
// until ctx is done or fn returns an error (which Subscribe returns).
// Store ev.Cursor() after handling an event to resume there later: the
// cursor resumes exactly within one journal, and by receipt time if the
// server's journal was replaced. Network and server errors are retried
// with backoff; a rejected query (ErrBadRequest) or token
// (ErrUnauthorized) is returned.
//
// The zero cursor starts at the server's current end: only new events.
func (c *Client) Subscribe(ctx context.Context, from pubsubtypes.Cursor, f pubsubtypes.Filter, opts SubscribeOptions, fn func(context.Context, *pubsubtypes.Event) error) error {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(10*time.Second, opts.MinBackoff)
	}
	if opts.PollGrace <= 0 {
		opts.PollGrace = time.Minute
	}
	pollLimit := opts.Timeout
	if pollLimit <= 0 {
		pollLimit = 30 * time.Second // the server's default
	}
	pollLimit += opts.PollGrace
	cur := from
	backoff := opts.MinBackoff
	for {
		pctx, cancel := context.WithTimeout(ctx, pollLimit)
		ev, err := c.Wait(pctx, cur, f, opts.WaitOptions)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if errors.Is(err, ErrBadRequest) || errors.Is(err, ErrUnauthorized) {
				return err
			}
			if opts.Log != nil {
				opts.Log.WithError(err).WithField("retry_in", backoff).Warn("pubsubhelper subscription")
			}
			d := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff = min(2*backoff, opts.MaxBackoff)
			continue
		}
		backoff = opts.MinBackoff
		next := ev.Cursor()
		if cur.IsZero() && next.Seq == 0 && next.T().IsZero() {
			// A server without journal cursors (x/build's): keep "now".
			next = cur
		}
		if !ev.LongPollTimeout {
			if err := fn(ctx, ev); err != nil {
				return err
			}
		}
		cur = next
	}
}
