package trybot

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
)

func TestAsRefusal(t *testing.T) {
	ghErr := func(code int, msg string) error {
		return fmt.Errorf("github: create check run: %w", &github.ErrorResponse{Response: &http.Response{StatusCode: code, Request: &http.Request{Method: "POST"}}, Message: msg})
	}
	reset := github.Timestamp{Time: time.Unix(1_700_000_000, 0)}
	for _, tc := range []struct {
		name   string
		err    error
		status int // 0: not a refusal (retried)
	}{
		{"no commit found", ghErr(422, "No commit found for SHA: abc"), 422},
		{"validation failed", ghErr(422, "Validation Failed"), 422},
		{"pull request gone", ghErr(404, "Not Found"), 404},
		{"gone", ghErr(410, "Gone"), 410},
		{"too large", ghErr(413, "too large"), 413},
		{"server error", ghErr(502, "Server Error"), 0},
		{"unavailable", ghErr(503, "Unavailable"), 0},
		{"bad credentials", ghErr(401, "Bad credentials"), 0},
		{"no permission", ghErr(403, "Resource not accessible by integration"), 0},
		{"too many requests", ghErr(429, "slow down"), 0},
		{"rate limit", &github.RateLimitError{Response: &http.Response{StatusCode: 403}, Rate: github.Rate{Reset: reset}}, 0},
		{"secondary rate limit", &github.AbuseRateLimitError{Response: &http.Response{StatusCode: 403}}, 0},
		{"gerrit closed change", withStatus(errors.New("API call failed: 409 Conflict"), &http.Response{StatusCode: 409}), 409},
		{"gerrit change deleted", withStatus(errors.New("API call failed: 404"), &http.Response{StatusCode: 404}), 404},
		{"gerrit unavailable", withStatus(errors.New("API call failed: 503"), &http.Response{StatusCode: 503}), 0},
		{"no response", errors.New("dial tcp: connection refused"), 0},
		{"nil", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rf := asRefusal(tc.err)
			switch {
			case tc.status == 0 && rf != nil:
				t.Errorf("refusal %d %q, want retried", rf.status, rf.msg)
			case tc.status != 0 && (rf == nil || rf.status != tc.status || !errors.Is(rf, tc.err)):
				t.Errorf("refusal %+v, want status %d wrapping the error", rf, tc.status)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	after := 90 * time.Second
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"plain error", errors.New("boom"), time.Second},
		{"rate limit resets later", &github.RateLimitError{Rate: github.Rate{Reset: github.Timestamp{Time: now.Add(10 * time.Minute)}}}, 10*time.Minute + time.Second},
		{"rate limit already reset", &github.RateLimitError{Rate: github.Rate{Reset: github.Timestamp{Time: now.Add(-time.Minute)}}}, time.Second},
		{"bogus reset far away", &github.RateLimitError{Rate: github.Rate{Reset: github.Timestamp{Time: now.Add(48 * time.Hour)}}}, maxRateLimitWait},
		{"secondary limit", fmt.Errorf("wrapped: %w", &github.AbuseRateLimitError{RetryAfter: &after}), after},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.err, time.Second, now); got != tc.want {
				t.Errorf("retryAfter = %v, want %v", got, tc.want)
			}
		})
	}
}
