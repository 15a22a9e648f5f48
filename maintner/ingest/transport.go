package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrRateLimited is wrapped by errors of requests refused because the
// GitHub rate limit is exhausted (by GitHub, or locally before sending
// while the limit has not reset).
var ErrRateLimited = errors.New("ingest: GitHub rate limit exhausted")

// rateGate remembers until when GitHub refuses requests.
type rateGate struct {
	clock Clock
	mu    sync.Mutex
	until time.Time
}

// closedUntil returns the time requests may resume, or the zero time
// when they may be sent now.
func (g *rateGate) closedUntil() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.until.IsZero() || !g.clock.Now().Before(g.until) {
		return time.Time{}
	}
	return g.until
}

func (g *rateGate) close(until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until.After(g.until) {
		g.until = until
	}
}

// githubTransport sits under go-github: it refuses requests while the
// rate limit is exhausted, notices 403/429 rate-limit answers, and makes
// GET requests conditional with the ETag of the last 200 for the same URL,
// answering a 304 from its cache (GitHub does not count 304s against the
// rate limit). A cached answer carries X-From-Cache so that go-github
// does not take its rate headers for fresh ones.
type githubTransport struct {
	base     http.RoundTripper
	gate     *rateGate
	maxBytes int64
	requests *prometheus.CounterVec // by result

	mu      sync.Mutex
	entries map[string]*etagEntry
	order   []string // insertion order, for eviction
	size    int64
}

type etagEntry struct {
	etag   string
	header http.Header
	body   []byte
}

// maxResponseBytes bounds one REST response body kept for revalidation.
const maxResponseBytes = 32 << 20

// Request results counted in tryd_ingest_github_requests_total.
const (
	reqOK          = "ok"
	reqNotModified = "not_modified"
	reqRateLimited = "rate_limited"
	reqRefused     = "refused_locally"
	reqError       = "error"
)

func (t *githubTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if until := t.gate.closedUntil(); !until.IsZero() {
		t.requests.WithLabelValues(reqRefused).Inc()
		return nil, fmt.Errorf("%w until %s", ErrRateLimited, until.UTC().Format(time.RFC3339))
	}
	var key string
	var cached *etagEntry
	if req.Method == http.MethodGet {
		key = req.URL.String() + "\x00" + req.Header.Get("Accept")
		t.mu.Lock()
		cached = t.entries[key]
		t.mu.Unlock()
		if cached != nil {
			req = req.Clone(req.Context())
			req.Header.Set("If-None-Match", cached.etag)
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.requests.WithLabelValues(reqError).Inc()
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotModified && cached != nil:
		t.requests.WithLabelValues(reqNotModified).Inc()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		h := cached.header.Clone()
		// The 304's own headers win (RFC 9111 4.3.4): rate limits, and
		// above all Link, since a page whose items did not change (same
		// ETag) may still have gained a next page.
		for k, v := range resp.Header {
			h[k] = v
		}
		if resp.Header.Get("Link") == "" {
			h.Del("Link")
		}
		h.Set("Content-Length", strconv.Itoa(len(cached.body)))
		h.Set("X-From-Cache", "1")
		return &http.Response{
			Status: "200 OK", StatusCode: http.StatusOK, Proto: resp.Proto, ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor,
			Header: h, Body: io.NopCloser(bytes.NewReader(cached.body)), ContentLength: int64(len(cached.body)), Request: req,
		}, nil
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests:
		if until, ok := rateLimitedUntil(resp, t.gate.clock.Now()); ok {
			t.gate.close(until)
			t.requests.WithLabelValues(reqRateLimited).Inc()
			return resp, nil
		}
	case resp.StatusCode == http.StatusOK && key != "" && resp.Header.Get("ETag") != "":
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
		resp.Body.Close()
		if err != nil {
			t.requests.WithLabelValues(reqError).Inc()
			return nil, fmt.Errorf("ingest: read %s: %w", req.URL.Path, err)
		}
		if int64(len(body)) <= maxResponseBytes {
			t.store(key, &etagEntry{etag: resp.Header.Get("ETag"), header: resp.Header.Clone(), body: body})
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		t.requests.WithLabelValues(reqOK).Inc()
	} else {
		t.requests.WithLabelValues(reqError).Inc()
	}
	return resp, nil
}

func (t *githubTransport) store(key string, e *etagEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.entries[key]; old != nil {
		t.size -= int64(len(old.body))
	} else {
		t.order = append(t.order, key)
	}
	t.entries[key] = e
	t.size += int64(len(e.body))
	for t.size > t.maxBytes && len(t.order) > 0 {
		k := t.order[0]
		t.order = t.order[1:]
		if old := t.entries[k]; old != nil {
			t.size -= int64(len(old.body))
			delete(t.entries, k)
		}
	}
}

// rateLimitedUntil reports whether a 403/429 answer is a rate limit, and
// until when: the Retry-After header (secondary limits), else
// X-RateLimit-Reset when X-RateLimit-Remaining is 0, else a minute for a
// bare 429, as GitHub's documentation advises.
func rateLimitedUntil(resp *http.Response, now time.Time) (time.Time, bool) {
	until, ok := rateLimitReset(resp, now)
	// A reset in the past (clock skew) still waits a second: never spin.
	return maxTime(until, now.Add(time.Second)), ok
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func rateLimitReset(resp *http.Response, now time.Time) (time.Time, bool) {
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			return now.Add(time.Duration(n) * time.Second), true
		}
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if n, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil && n > 0 {
			return time.Unix(n, 0), true
		}
		return now.Add(time.Minute), true
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return now.Add(time.Minute), true
	}
	return time.Time{}, false
}
