package query

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tryd-ci/tryd/internal/bearer"
)

// MinTokenLength is the shortest API token RequireToken accepts, as for
// the coordinator's and the dashboard's tokens: a short token is
// guessable by anyone who can reach the port.
const MinTokenLength = bearer.MinLength

// ErrUnauthorized means the server refused the request's token, or it
// sent none where one is required (HTTP 401).
var ErrUnauthorized = errors.New("query: unauthorized")

// RequireToken wraps h (the query API) so that every request must carry
// "Authorization: Bearer T" for one of tokens; others get 401 with
// {"error": ...} and a WWW-Authenticate header, before h sees them.
// Several tokens allow rotation. Tokens are checked by internal/bearer:
// as SHA-256 digests, in constant time, against every configured token,
// so that neither a token's content nor its length leaks through timing.
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
	set, err := bearer.New(tokens)
	if err != nil {
		return nil, fmt.Errorf("query: API tokens: %w", err)
	}
	return &tokenHandler{next: h, tokens: set}, nil
}

type tokenHandler struct {
	next   http.Handler
	tokens *bearer.Set
}

func (t *tokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := t.tokens.Check(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tryd maintnerd query API"`)
		msg := "bad query API token"
		if errors.Is(err, bearer.ErrNoToken) {
			msg = "the query API needs a token: send \"Authorization: Bearer TOKEN\" (maintnerd.api_token)"
		}
		writeError(w, http.StatusUnauthorized, msg)
		return
	}
	t.next.ServeHTTP(w, r)
}
