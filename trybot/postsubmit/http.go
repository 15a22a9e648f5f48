package postsubmit

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
// coordinator or git failed. An empty adminToken refuses every request.
func (b *Builder) Handler(adminToken string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/force", func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if adminToken == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(adminToken)) != 1 {
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
			b.log.WithError(err).Warn("force build failed")
			writeError(w, http.StatusBadGateway, "unavailable", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int64{"build_id": id})
	})
	return mux
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
