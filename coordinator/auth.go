package coordinator

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/bearer"
)

var workerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ParseWorkerTokens reads a worker token file: one "name token" pair per
// line, blank lines and lines starting with # ignored. Errors name the
// line, never the token.
func ParseWorkerTokens(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 4<<20))
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	seen := map[string]bool{}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) != 2:
			return nil, fmt.Errorf("coordinator: worker tokens line %d: want \"name token\"", n)
		case !workerNameRE.MatchString(f[0]):
			return nil, fmt.Errorf("coordinator: worker tokens line %d: bad worker name %q", n, f[0])
		case len(f[1]) < 16:
			return nil, fmt.Errorf("coordinator: worker tokens line %d: token of %s shorter than 16 characters", n, f[0])
		case out[f[0]] != "":
			return nil, fmt.Errorf("coordinator: worker tokens line %d: worker %s listed twice", n, f[0])
		}
		h := hashToken(f[1])
		if seen[h] {
			return nil, fmt.Errorf("coordinator: worker tokens line %d: token of %s reused from another worker", n, f[0])
		}
		seen[h] = true
		out[f[0]] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("coordinator: worker tokens: %w", err)
	}
	return out, nil
}

func hashToken(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// auth checks bearer tokens against SHA-256 hashes; tokens themselves are
// dropped after New.
type auth struct {
	workers map[string]string // token hash → worker name
	client  *bearer.Set       // empty for none
}

func newAuth(workers map[string]string, client string) *auth {
	a := &auth{workers: map[string]string{}}
	for name, tok := range workers {
		a.workers[hashToken(tok)] = name
	}
	var clients []string
	if client != "" {
		clients = []string{client}
	}
	a.client = bearer.NewUnchecked(clients)
	return a
}

func (a *auth) workerHashes() map[string]string {
	out := map[string]string{}
	for h, name := range a.workers {
		out[name] = h
	}
	return out
}

// principal is who made a request.
type principal struct {
	worker string // worker name, or "" for the client
	client bool
}

// check returns the principal of r, or ErrUnauthorized.
func (a *auth) check(r *http.Request) (principal, error) {
	tok, ok := bearer.Token(r)
	if !ok {
		return principal{}, fmt.Errorf("missing bearer token: %w", api.ErrUnauthorized)
	}
	if _, ok := a.client.Match(tok); ok {
		return principal{client: true}, nil
	}
	// A map lookup by hash leaks nothing useful about the token: the
	// attacker would have to find a SHA-256 preimage.
	if name, ok := a.workers[hashToken(tok)]; ok {
		return principal{worker: name}, nil
	}
	return principal{}, fmt.Errorf("unknown token: %w", api.ErrUnauthorized)
}
