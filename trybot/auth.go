package trybot

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/tryd-ci/tryd/trybot/client"
)

// MinAPITokenLength is the shortest API token the trybot accepts, as for
// maintnerd's, the coordinator's and the dashboard's tokens: a short
// token is guessable by anyone who can reach the port.
const MinAPITokenLength = 16

// apiAuth checks the bearer token of the try run API (Options.APITokens).
// Tokens are kept as SHA-256 digests and a presented token is compared
// with every one of them in constant time, so that neither a token's
// content nor its length, nor which one matched, leaks through timing.
type apiAuth struct {
	sums [][sha256.Size]byte
}

// newAPIAuth validates tokens; none means the API is open (nil).
func newAPIAuth(tokens []string) (*apiAuth, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	a := &apiAuth{sums: make([][sha256.Size]byte, len(tokens))}
	for i, t := range tokens {
		if len(t) < MinAPITokenLength {
			return nil, fmt.Errorf("trybot: API token %d of %d is shorter than %d characters", i+1, len(tokens), MinAPITokenLength)
		}
		if strings.ContainsAny(t, " \t\r\n\x00") {
			return nil, fmt.Errorf("trybot: API token %d of %d contains white space or NUL", i+1, len(tokens))
		}
		a.sums[i] = sha256.Sum256([]byte(t))
	}
	return a, nil
}

// wrap makes h answer only requests with "Authorization: Bearer T" for
// one of the tokens; others get 401 {"error": ...} with a
// WWW-Authenticate challenge before h sees them. A nil a (no tokens)
// returns h.
func (a *apiAuth) wrap(h http.HandlerFunc) http.HandlerFunc {
	if a == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !a.match(got) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tryd trybot API"`)
			msg := "the try run API needs a token: send \"Authorization: Bearer TOKEN\" (trybot.api_token)"
			if ok {
				msg = "bad try run API token"
			}
			writeJSON(w, http.StatusUnauthorized, client.ErrorBody{Error: msg})
			return
		}
		h(w, r)
	}
}

// match compares got with every token, without stopping at the first
// match.
func (a *apiAuth) match(got string) bool {
	sum := sha256.Sum256([]byte(got))
	ok := 0
	for i := range a.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], a.sums[i][:])
	}
	return ok == 1
}
