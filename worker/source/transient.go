package source

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/internal/gitexec"
)

// gitTransient reports whether git's message says the server could not be
// reached or answered with a server error. Git has no machine-readable
// error kinds over HTTP; its messages come from libcurl and from its own
// remote-helper, and these have been stable for years. A message that
// matches neither list is taken as permanent: failing fast is the safe
// side when the reason is unknown.
func gitTransient(e *gitexec.Error) bool {
	if e.TimedOut {
		return true
	}
	msg := strings.ToLower(e.Stderr)
	for _, p := range permanentGitMessages {
		if strings.Contains(msg, p) {
			return false
		}
	}
	for _, p := range transientGitMessages {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// permanentGitMessages are checked first: "returned error: 404" must not
// be read as a connection problem because a later line says the remote
// hung up.
var permanentGitMessages = []string{
	"returned error: 400", "returned error: 401", "returned error: 403", "returned error: 404", "returned error: 410",
	"not found",                 // "repository '…' not found"
	"authentication failed",     // a refused token
	"could not read username",   // 401 with prompts disabled
	"could not read password",   // idem
	"couldn't find remote ref",  // unknown ref
	"not our ref",               // unknown object
	"unadvertised object",       // idem, older servers
	"bad object", "not a valid", // corrupt or bad names
}

var transientGitMessages = []string{
	"failed to connect", "couldn't connect", "could not connect", "connection refused",
	"connection reset", "connection timed out", "operation timed out", "timed out",
	"empty reply from server", "recv failure", "send failure",
	"the requested url returned error: 5", "returned error: 408", "returned error: 429",
	"rpc failed", "early eof", "unexpected disconnect", "remote end hung up unexpectedly",
	"could not resolve host",
}

// statusError is an HTTP answer other than 200 from the tarball URL.
type statusError struct {
	code        int
	status, msg string
}

func (e *statusError) Error() string { return e.status + ": " + e.msg }

// transient: server errors, 408 Request Timeout and 429 Too Many Requests
// may pass; other client errors will not.
func (e *statusError) transient() bool {
	return e.code >= 500 || e.code == http.StatusRequestTimeout || e.code == http.StatusTooManyRequests
}

// IsTransient reports whether err, from Checkout or a step of it, is one
// that may pass if tried again: the server refused or dropped the
// connection, timed out, or answered 5xx. Any such cause in err's tree
// counts, so that a failed fetch followed by a failed lookup of what it
// should have fetched is still transient; ErrBadRevision is never.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, ErrBadRevision) {
		return false
	}
	return transientTree(err)
}

func transientTree(err error) bool {
	switch e := err.(type) {
	case *gitexec.Error:
		return gitTransient(e)
	case *statusError:
		return e.transient()
	case syscall.Errno:
		return e == syscall.ECONNREFUSED || e == syscall.ECONNRESET || e == syscall.EPIPE || e == syscall.ETIMEDOUT
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		// The server went away: before answering (net/http's "Get …:
		// EOF") or in the middle of the body.
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if transientTree(e) {
				return true
			}
		}
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			return transientTree(next)
		}
	}
	return false
}

// metrics are the store's Prometheus metrics (fixed label sets).
type metrics struct {
	retries   prometheus.Counter
	checkouts *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_worker_source_retries_total",
			Help: "Checkouts tried again after a transient failure (server down, 5xx, timeout).",
		}),
		checkouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_worker_source_checkouts_total",
			Help: "Source checkouts by result: ok, unavailable (transient failures until the retries ran out), failed (permanent failure); bad_inputs counts, besides, checkouts of source_mode inputs jobs refused because an input did not match the revision or was refused.",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.retries, m.checkouts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("source: register metrics: %w", err)
		}
	}
	return m, nil
}
