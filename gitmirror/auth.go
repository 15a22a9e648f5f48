package gitmirror

import (
	"net/http"

	"github.com/tryd-ci/tryd/internal/bearer"
)

// requireToken wraps h so that it serves only requests carrying one of
// tokens (already validated with Options), as a bearer token or as the
// password of basic auth (git sends credentials that way; the user name
// is ignored): see internal/bearer for how they are compared. With no
// tokens it returns h.
func requireToken(tokens []string, h http.Handler) http.Handler {
	if len(tokens) == 0 {
		return h
	}
	set := bearer.NewUnchecked(tokens)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := set.CheckBasic(r); err != nil {
			// A Basic challenge makes git ask its credential helper.
			w.Header().Set("WWW-Authenticate", `Basic realm="tryd gitmirror", charset="UTF-8"`)
			httpError(w, http.StatusUnauthorized, "missing or bad token")
			return
		}
		h.ServeHTTP(w, r)
	})
}
