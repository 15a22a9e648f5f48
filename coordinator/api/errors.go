package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Error kinds that callers act on. The server maps them to status codes
// (see Status) and the client maps status codes back, so that
// errors.Is(err, api.ErrNotFound) works on both sides of the wire.
var (
	// ErrBadRequest: the request (e.g. a graph) is invalid; 400.
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: no or unknown token, or a token of the wrong
	// kind (worker vs client); 401.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotFound: no such build, job, attempt or artifact; 404.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the attempt is no longer current (requeued,
	// cancelled, already reported) or a log offset does not match; 409.
	ErrConflict = errors.New("conflict")
	// ErrUnknownWorker: the worker ID is not registered (e.g. the
	// coordinator restarted); the worker must register again; 410.
	ErrUnknownWorker = errors.New("unknown worker")
	// ErrMissingArtifacts: a submitted graph refers to uploaded files
	// the artifact store does not hold; Error.Missing lists them; 412.
	ErrMissingArtifacts = errors.New("missing artifacts")
	// ErrTooLarge: a body exceeds its limit; 413.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable: the coordinator is shutting down or its store
	// failed; retry later; 503.
	ErrUnavailable = errors.New("unavailable")
)

var kinds = []struct {
	err    error
	code   string
	status int
}{
	{ErrBadRequest, "bad_request", http.StatusBadRequest},
	{ErrUnauthorized, "unauthorized", http.StatusUnauthorized},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrConflict, "conflict", http.StatusConflict},
	{ErrUnknownWorker, "unknown_worker", http.StatusGone},
	{ErrMissingArtifacts, "missing_artifacts", http.StatusPreconditionFailed},
	{ErrTooLarge, "too_large", http.StatusRequestEntityTooLarge},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable},
}

// Error is the JSON body of every error answer, and the error the client
// returns for one. errors.Is(e, ErrNotFound) etc. hold by Code.
type Error struct {
	// Status is the HTTP status code (not serialized).
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Missing lists missing artifact digests (code missing_artifacts).
	Missing []string `json:"missing,omitempty"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("coordinator: %s (HTTP %d)", e.Code, e.Status)
	}
	return "coordinator: " + e.Message
}

// Is matches the sentinel of the error's code.
func (e *Error) Is(target error) bool {
	for _, k := range kinds {
		if k.err == target {
			return k.code == e.Code
		}
	}
	return false
}

// Status returns the HTTP status code and wire code for err: that of the
// first error kind err wraps (an *Error keeps its own), 500 "internal"
// otherwise.
func Status(err error) (int, string) {
	var e *Error
	if errors.As(err, &e) && e.Status != 0 {
		return e.Status, e.Code
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.status, k.code
		}
	}
	return http.StatusInternalServerError, "internal"
}

// WriteError writes err as an Error body with its status code. Internal
// errors are reported without detail beyond their message.
func WriteError(w http.ResponseWriter, err error) {
	status, code := Status(err)
	body := Error{Code: code, Message: err.Error()}
	var me *MissingError
	if errors.As(err, &me) {
		body.Missing = me.Digests
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// MissingError is returned by a submission whose uploaded files are not
// all in the artifact store; it is ErrMissingArtifacts.
type MissingError struct {
	Digests []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%d uploaded files are missing from the artifact store (first %s)", len(e.Digests), e.Digests[0])
}

// Is makes errors.Is(err, ErrMissingArtifacts) true.
func (e *MissingError) Is(target error) bool { return target == ErrMissingArtifacts }

// readError turns a non-2xx response into an *Error.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Code == "" {
		e.Code = "internal"
		for _, k := range kinds {
			if k.status == resp.StatusCode {
				e.Code = k.code
			}
		}
		e.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, truncate(string(b)))
	}
	return e
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
