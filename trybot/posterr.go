package trybot

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/go-github/v60/github"
)

// statusError is a failed call to a review server that answered with an
// HTTP status. go-gerrit reports only a string, so the Gerrit reporter
// wraps its errors in one, with the response's status; go-github's
// *github.ErrorResponse carries the status itself.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// withStatus wraps err with resp's status code, when there is a response.
func withStatus(err error, resp *http.Response) error {
	if err == nil || resp == nil {
		return err
	}
	return &statusError{status: resp.StatusCode, err: err}
}

// permanentStatus says which refusals retrying cannot change: the request
// itself is wrong for the server's current state (a commit that no longer
// exists: GitHub's 422 "No commit found for SHA"; a deleted pull request
// or change: 404, 410; a closed Gerrit change refusing votes: 409; a body
// over a limit: 413; malformed input: 400, 415, 422).
//
// 401 and 403 are left to retrying on purpose: they mean the credentials
// or permissions are wrong, which an operator fixes, and the result must
// then still be posted. Rate limits (403 or 429 with a reset time), 408
// and 5xx are transient.
func permanentStatus(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusGone,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// refusal is a post that a review server refused for good (see
// permanentStatus): status is the HTTP status, msg the server's message
// without request URLs.
type refusal struct {
	status int
	msg    string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// asRefusal classifies err from a call to GitHub or Gerrit: a *refusal
// when retrying cannot help, nil when it may.
func asRefusal(err error) *refusal {
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	if errors.As(err, &rl) || errors.As(err, &ab) {
		return nil
	}
	var ge *github.ErrorResponse
	if errors.As(err, &ge) && ge.Response != nil && permanentStatus(ge.Response.StatusCode) {
		msg := fmt.Sprintf("GitHub answered %d: %s", ge.Response.StatusCode, ge.Message)
		for _, e := range ge.Errors {
			if e.Message != "" {
				msg += "; " + e.Message
			} else if e.Field != "" {
				msg += fmt.Sprintf("; %s %s: %s", e.Resource, e.Field, e.Code)
			}
		}
		return &refusal{status: ge.Response.StatusCode, msg: msg, err: err}
	}
	var se *statusError
	if errors.As(err, &se) && permanentStatus(se.status) {
		return &refusal{status: se.status, msg: fmt.Sprintf("the review server answered %d %s", se.status, http.StatusText(se.status)), err: err}
	}
	return nil
}

// retryAfter is how long to wait before retrying err: until a GitHub
// rate limit resets (or the secondary limit's Retry-After) when that is
// later than the backoff d, else d.
func retryAfter(err error, d time.Duration, now time.Time) time.Duration {
	var rl *github.RateLimitError
	if errors.As(err, &rl) && !rl.Rate.Reset.IsZero() {
		if w := rl.Rate.Reset.Sub(now) + time.Second; w > d {
			return min(w, maxRateLimitWait)
		}
	}
	var ab *github.AbuseRateLimitError
	if errors.As(err, &ab) && ab.RetryAfter != nil && *ab.RetryAfter > d {
		return min(*ab.RetryAfter, maxRateLimitWait)
	}
	// A rate limit go-github does not recognise (a 429, or a 403 whose
	// documentation_url it does not know) still says when.
	var ge *github.ErrorResponse
	if rateLimited(err) && errors.As(err, &ge) && ge.Response != nil {
		h := ge.Response.Header
		if s, perr := strconv.Atoi(h.Get("Retry-After")); perr == nil && s >= 0 {
			if w := time.Duration(s) * time.Second; w > d {
				return min(w, maxRateLimitWait)
			}
		} else if reset, perr := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); perr == nil && h.Get("X-RateLimit-Remaining") == "0" {
			if w := time.Unix(reset, 0).Sub(now) + time.Second; w > d {
				return min(w, maxRateLimitWait)
			}
		}
	}
	return d
}

// maxRateLimitWait bounds a wait for a rate limit to reset (GitHub's
// primary limits reset hourly), against a bogus reset time.
const maxRateLimitWait = time.Hour
