package trybot

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tryd-ci/tryd/internal/bearer"
	"github.com/tryd-ci/tryd/trybot/client"
)

// MinAPITokenLength is the shortest API token the trybot accepts, as for
// maintnerd's, the coordinator's and the dashboard's tokens: a short
// token is guessable by anyone who can reach the port.
const MinAPITokenLength = bearer.MinLength

// apiAuth checks the bearer token of the try run API (Options.APITokens)
// with internal/bearer: as SHA-256 digests compared in constant time
// with every token, so that neither a token's content nor its length,
// nor which one matched, leaks through timing.
type apiAuth struct {
	tokens *bearer.Set
}

// newAPIAuth validates tokens; none means the API is open (nil).
func newAPIAuth(tokens []string) (*apiAuth, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	set, err := bearer.New(tokens)
	if err != nil {
		return nil, fmt.Errorf("trybot: API tokens: %w", err)
	}
	return &apiAuth{tokens: set}, nil
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
		if _, err := a.tokens.Check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tryd trybot API"`)
			msg := "bad try run API token"
			if errors.Is(err, bearer.ErrNoToken) {
				msg = "the try run API needs a token: send \"Authorization: Bearer TOKEN\" (trybot.api_token)"
			}
			writeJSON(w, http.StatusUnauthorized, client.ErrorBody{Error: msg})
			return
		}
		h(w, r)
	}
}
