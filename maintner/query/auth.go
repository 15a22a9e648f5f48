package query

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MinTokenLength is the shortest API token RequireToken accepts, as for
// the coordinator's and the dashboard's tokens: a short token is
// guessable by anyone who can reach the port.
const MinTokenLength = 16

// ErrUnauthorized means the server refused the request's token, or it
// sent none where one is required (HTTP 401).
var ErrUnauthorized = errors.New("query: unauthorized")

// RequireToken wraps h (the query API) so that every request must carry
// "Authorization: Bearer T" for one of tokens; others get 401 with
// {"error": ...} and a WWW-Authenticate header, before h sees them.
// Several tokens allow rotation. Tokens are compared as SHA-256 digests
// in constant time against every configured token, so that neither a
// token's content nor its length leaks through timing.
//
// Only the query API is meant to be wrapped: maintnerd's /logs, the
// mutation log, stays open, as golang.org's maintnerd serves it to
// anyone, because its followers (x/build's maintner and godata-style
// programs) have no way to send a token, and the log holds only what the
// public review servers show anyway. The query API is closed by default
// off loopback because it is a cheap way to make maintnerd do work, and a
// private deployment's corpus is not necessarily public.
func RequireToken(h http.Handler, tokens []string) (http.Handler, error) {
	if h == nil {
		return nil, errors.New("query: RequireToken: nil handler")
	}
	if len(tokens) == 0 {
		return nil, errors.New("query: RequireToken: no tokens")
	}
	sums := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		if len(t) < MinTokenLength {
			return nil, fmt.Errorf("query: API token %d of %d is shorter than %d characters", i+1, len(tokens), MinTokenLength)
		}
		if strings.ContainsAny(t, " \t\r\n\x00") {
			return nil, fmt.Errorf("query: API token %d of %d contains white space or NUL", i+1, len(tokens))
		}
		sums[i] = sha256.Sum256([]byte(t))
	}
	return &tokenHandler{next: h, sums: sums}, nil
}

type tokenHandler struct {
	next http.Handler
	sums [][sha256.Size]byte
}

func (t *tokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !t.match(got) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tryd maintnerd query API"`)
		msg := "the query API needs a token: send \"Authorization: Bearer TOKEN\" (maintnerd.api_token)"
		if ok {
			msg = "bad query API token"
		}
		writeError(w, http.StatusUnauthorized, msg)
		return
	}
	t.next.ServeHTTP(w, r)
}

// match compares got with every token, without stopping at the first
// match, so that the time taken does not say which one matched.
func (t *tokenHandler) match(got string) bool {
	sum := sha256.Sum256([]byte(got))
	ok := 0
	for i := range t.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
	}
	return ok == 1
}
