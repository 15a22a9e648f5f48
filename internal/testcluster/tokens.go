package testcluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// WorkerNames are the worker identities a launched coordinator (and a
// token set WriteTokens writes) has tokens for.
var WorkerNames = []string{"w1", "w2", "w3", "w4"}

// Tokens is a token set written under a directory by WriteTokens, in the
// layout a coordinator's configuration points at: NAME.token per worker
// name (TokenFile), worker-tokens ("NAME TOKEN" lines, WorkerTokensFile)
// and client-token (ClientTokenFile), each 0600 and ending in a newline.
type Tokens struct {
	// Dir is the directory holding the files.
	Dir string
	// Client is the client token.
	Client string
	// Workers are the worker tokens by worker name (WorkerNames).
	Workers map[string]string
}

// WriteTokens writes new random tokens for WorkerNames and a client token
// under dir (which must exist) and returns them.
func WriteTokens(dir string) (*Tokens, error) {
	ts := &Tokens{Dir: dir, Client: randomToken(), Workers: map[string]string{}}
	var lines []string
	for _, n := range WorkerNames {
		tok := randomToken()
		ts.Workers[n] = tok
		if err := writeTokenFile(dir, n, tok); err != nil {
			return nil, err
		}
		lines = append(lines, n+" "+tok)
	}
	if err := writeSecret(ts.WorkerTokensFile(), strings.Join(lines, "\n")); err != nil {
		return nil, err
	}
	if err := writeSecret(ts.ClientTokenFile(), ts.Client); err != nil {
		return nil, err
	}
	return ts, nil
}

// TokenFile returns the file holding the token of worker name, e.g. for
// "tryd worker --token-file".
func (ts *Tokens) TokenFile(name string) string { return tokenFile(ts.Dir, name) }

// WorkerTokensFile returns the file of "NAME TOKEN" lines, for the
// coordinator's worker_tokens.
func (ts *Tokens) WorkerTokensFile() string { return filepath.Join(ts.Dir, "worker-tokens") }

// ClientTokenFile returns the file holding the client token, for the
// coordinator's client_token or "tryd try --token-file".
func (ts *Tokens) ClientTokenFile() string { return filepath.Join(ts.Dir, "client-token") }

// namePattern is what a worker name may be: it names files in a
// directory.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func tokenFile(dir, name string) string { return filepath.Join(dir, name+".token") }

// writeTokenFile writes worker name's token to dir/NAME.token once the
// name is checked to be a plain file name.
func writeTokenFile(dir, name, token string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("testcluster: bad worker name %q", name)
	}
	return writeSecret(tokenFile(dir, name), token)
}

func writeSecret(path, content string) error {
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
