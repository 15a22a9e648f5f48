package postsubmit

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/bearer"
)

// maxForceBody bounds a force request's body.
const maxForceBody = 64 << 10

// Handler serves the force API:
//
//	POST /api/force  {"repo": R, "revision": C, "builder": B, "branch": optional}
//	                 → 200 {"build_id": N}
//
// with "Authorization: Bearer <admin token>". Errors are
// {"code", "message"}: 401 without the token, 400 for an unknown
// repository, branch or builder or a bad revision, 502 when the
// coordinator or git failed. A 502 says only that, with a request ID
// (also in the X-Request-Id header) under which the cause is logged:
// upstream errors name internal hosts and carry git's output, which are
// not for API clients. An empty adminToken refuses every request.
//
// The token is checked by internal/bearer (as a SHA-256 digest in
// constant time, so that neither its content nor its length leaks
// through timing). It is taken as it is, without bearer.Validate's
// rules, as postsubmit always has; an empty one matches nothing.
func (b *Builder) Handler(adminToken string) http.Handler {
	admin := bearer.NewUnchecked([]string{adminToken})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/force", func(w http.ResponseWriter, r *http.Request) {
		if _, err := admin.Check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tryd postsubmit"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "force builds need the admin token")
			return
		}
		req, err := DecodeForce(http.MaxBytesReader(w, r.Body, maxForceBody))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		id, err := b.Force(r.Context(), req)
		switch {
		case errors.Is(err, ErrUnknown) || errors.Is(err, ErrBadRevision):
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		case err != nil:
			rid := newRequestID()
			w.Header().Set("X-Request-Id", rid)
			b.log.WithError(err).WithFields(logrus.Fields{"request_id": rid, "repo": req.Repo, "revision": req.Revision, "builder": req.Builder}).
				Error("postsubmit: force build failed")
			writeError(w, http.StatusBadGateway, "unavailable",
				"the force build could not be submitted (coordinator or gitmirror unavailable); postsubmit's log has the cause under request ID "+rid)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int64{"build_id": id})
	})
	return mux
}

// newRequestID returns a random ID that ties an error answer to its log
// line.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// DecodeForce parses a force request's JSON strictly (unknown fields and
// trailing data are errors) and checks that the fields are present.
func DecodeForce(r io.Reader) (ForceRequest, error) {
	var req ForceRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return ForceRequest{}, fmt.Errorf("postsubmit: force request: %v", err)
	}
	if dec.More() {
		return ForceRequest{}, errors.New("postsubmit: force request: trailing data")
	}
	if req.Repo == "" || req.Revision == "" || req.Builder == "" {
		return ForceRequest{}, errors.New("postsubmit: force request: repo, revision and builder are required")
	}
	if !hashRE.MatchString(req.Revision) {
		return ForceRequest{}, fmt.Errorf("postsubmit: force request: revision %q is not a full commit hash", clip(req.Revision))
	}
	return req, nil
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}
