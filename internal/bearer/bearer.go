// Package bearer checks static API tokens: the secrets an operator
// configures for a server (maintnerd's query API, gitmirror,
// pubsubhelper's subscribers and Gerrit webhooks, the trybot's try run
// API, the dashboard's and postsubmit's admin token) and that clients
// present with every request. Several tokens may be accepted at once, so
// that one can be rotated: add the new one, switch the clients, remove
// the old one.
//
// Wire format: a client presents a token as
//
//	Authorization: Bearer TOKEN
//
// (RFC 6750), the scheme in any case (RFC 7235 says schemes are
// case-insensitive), with spaces or tabs around TOKEN ignored. Where the
// server asks for it (Set.CheckBasic: gitmirror, because git sends
// credentials that way, and Gerrit's webhooks plugin), the token may
// instead be the password of HTTP basic auth (RFC 7617), with any user
// name.
//
// Tokens are kept only as SHA-256 digests and a presented token is
// compared with them by digest, with crypto/subtle: comparing two digests
// of fixed size takes the same time whatever the presented token's
// length and however much of a real token it gets right, so timing tells
// an attacker neither a token's content nor its length. A presented token
// is compared with every configured token, also after one matched, so
// that the time taken does not say which token matched either.
//
// The package only says whether a request presents an accepted token
// (and which); each server answers a refusal itself, since the status,
// the error body and the WWW-Authenticate challenge are part of its
// API's contract.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MinLength is the shortest token New accepts: a shorter one is
// guessable by anyone who can reach the port, and nothing limits how
// often a client may guess.
const MinLength = 16

// Kinds of refusal, for servers that say which it was (a request without
// a token is told how to send one).
var (
	// ErrNoToken means the request presents no token: no Authorization
	// header, another scheme, or an empty token.
	ErrNoToken = errors.New("bearer: no token presented")
	// ErrBadToken means the request presents a token that is not one of
	// the Set's.
	ErrBadToken = errors.New("bearer: token not accepted")
)

// Validate reports whether tok is fit to be an API token: at least
// MinLength bytes, and no white space or NUL, which a client could not
// send intact in a header or a token file could not hold on one line.
// The error never contains tok.
func Validate(tok string) error {
	if w := weakness(tok); w != "" {
		return fmt.Errorf("bearer: token %s", w)
	}
	return nil
}

func weakness(tok string) string {
	switch {
	case len(tok) < MinLength:
		return fmt.Sprintf("is shorter than %d characters", MinLength)
	case strings.ContainsAny(tok, " \t\r\n\x00"):
		return "contains white space or NUL"
	}
	return ""
}

// Set is a set of accepted tokens, kept as SHA-256 digests (the tokens
// themselves are not retained). A Set is immutable and safe for
// concurrent use; the empty Set (and a nil *Set) accepts nothing.
type Set struct {
	sums [][sha256.Size]byte
}

// New returns the Set of tokens, each of which must pass Validate. The
// error names a bad token by its position, never by its content.
func New(tokens []string) (*Set, error) {
	for i, t := range tokens {
		if w := weakness(t); w != "" {
			if len(tokens) == 1 {
				return nil, fmt.Errorf("bearer: token %s", w)
			}
			return nil, fmt.Errorf("bearer: token %d of %d %s", i+1, len(tokens), w)
		}
	}
	return NewUnchecked(tokens), nil
}

// NewUnchecked returns the Set of tokens without Validate's rules, for
// secrets whose rules are not tryd's to set (a Gerrit webhook secret is
// whatever the Gerrit administrator chose) and for servers that have
// always accepted any token (pubsubhelper's subscriber tokens,
// postsubmit's admin token). An empty token is never matched.
func NewUnchecked(tokens []string) *Set {
	s := &Set{sums: make([][sha256.Size]byte, len(tokens))}
	for i, t := range tokens {
		s.sums[i] = sha256.Sum256([]byte(t))
	}
	return s
}

// Len returns the number of tokens in s, so that a server can tell "no
// tokens configured" (open, or refusing everything, as it documents)
// from a refused token.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.sums)
}

// Match reports whether tok is one of s's tokens and, if so, the index
// of the first such token in the list s was built from. It compares tok
// with every token, in constant time, whichever matches. An empty tok
// matches nothing.
func (s *Set) Match(tok string) (int, bool) {
	if tok == "" || s == nil {
		return -1, false
	}
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i := range s.sums {
		eq := subtle.ConstantTimeCompare(sum[:], s.sums[i][:])
		// Keep the first match without a branch on the secret.
		found = subtle.ConstantTimeSelect(eq&subtle.ConstantTimeEq(int32(found), -1), i, found)
	}
	return found, found >= 0
}

// Check reports whether r presents one of s's tokens as "Authorization:
// Bearer TOKEN": the index of the token (as Match), or ErrNoToken or
// ErrBadToken.
func (s *Set) Check(r *http.Request) (int, error) {
	tok, ok := Token(r)
	return s.check(tok, ok)
}

// CheckBasic is Check, also accepting the token as the password of basic
// auth (TokenOrPassword).
func (s *Set) CheckBasic(r *http.Request) (int, error) {
	tok, ok := TokenOrPassword(r)
	return s.check(tok, ok)
}

func (s *Set) check(tok string, presented bool) (int, error) {
	if !presented {
		return -1, ErrNoToken
	}
	i, ok := s.Match(tok)
	if !ok {
		return -1, ErrBadToken
	}
	return i, nil
}

// Token returns the token r presents in its Authorization header (see
// Parse).
func Token(r *http.Request) (string, bool) {
	return Parse(r.Header.Get("Authorization"))
}

// TokenOrPassword returns the password of r's basic auth (any user
// name) if r uses basic auth, else what Token returns. ok is false for
// an empty password.
func TokenOrPassword(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, pass != ""
	}
	return Token(r)
}

// Parse returns the token of an Authorization header value "Bearer
// TOKEN": the scheme in any case, then at least one space, then TOKEN
// without the spaces and tabs around it. ok is false for another scheme
// or an empty token.
func Parse(header string) (token string, ok bool) {
	const scheme = "bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	token = strings.Trim(header[len(scheme):], " \t")
	return token, token != ""
}
