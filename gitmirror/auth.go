package gitmirror

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// requireToken wraps h so that it serves only requests carrying one of
// tokens, as a bearer token or as the password of basic auth (git sends
// credentials that way; the user name is ignored). With no tokens it
// returns h. Tokens are kept as SHA-256 hashes and compared in constant
// time, all of them every time, so timing says nothing about which
// matched or how much of one did.
func requireToken(tokens []string, h http.Handler) http.Handler {
	if len(tokens) == 0 {
		return h
	}
	hashes := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		hashes[i] = sha256.Sum256([]byte(t))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := presentedToken(r)
		if ok {
			sum := sha256.Sum256([]byte(given))
			match := 0
			for i := range hashes {
				match |= subtle.ConstantTimeCompare(sum[:], hashes[i][:])
			}
			ok = match == 1
		}
		if !ok {
			// A Basic challenge makes git ask its credential helper.
			w.Header().Set("WWW-Authenticate", `Basic realm="tryd gitmirror", charset="UTF-8"`)
			httpError(w, http.StatusUnauthorized, "missing or bad token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// presentedToken returns the token of a request's Authorization header.
func presentedToken(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, pass != ""
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		t := strings.TrimSpace(h[7:])
		return t, t != ""
	}
	return "", false
}
