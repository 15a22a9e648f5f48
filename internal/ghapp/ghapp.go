// Package ghapp authenticates to GitHub's REST API as a GitHub App, with
// the installation of each repository owner's account.
//
// GitHub installs an App once per account (a user or an organization),
// and an installation's token reaches that account's repositories only:
// a private repository of another account answers 404 as if it did not
// exist. So an App that serves repositories of several owners needs a
// token per owner. ghapp owns that logic for every GitHub client of tryd
// (maintner's ingestion, the trybot):
//
//   - the App's JWT (RS256, iss = the App ID, iat backdated a minute for
//     clock drift, exp nine minutes on, as GitHub documents) for the
//     /app endpoints (App.Client);
//   - per owner (App.Account), the installation on its account, looked up
//     with GET /repos/{owner}/{repo}/installation of one of the owner's
//     repositories (App.AddRepo) and accepted only when the answer's
//     account is the owner; the configured installation ID, if any, is
//     only where every owner starts (it may be another account's);
//   - installation tokens, minted with POST
//     /app/installations/{id}/access_tokens and kept until a minute
//     before they expire; a 404 on minting (the App was installed again
//     under a new ID) looks the installation up again;
//   - an http.RoundTripper (App.Transport) that gives each request the
//     token of the owner in its /repos/{owner}/... path, and drops that
//     token when GitHub answers 401 (revoked: the App was uninstalled),
//     so that the next request mints one for whatever is installed then.
//
// A failure to mint is a *TokenError; errors.Is(err, ErrNotInstalled)
// tells that the App has no installation on the owner's account (never
// installed there, or uninstalled), which callers report as lost access
// to that account's repositories only.
package ghapp

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-github/v60/github"
)

// ErrNotInstalled is matched (errors.Is) by a *TokenError when the App
// has no installation on the owner's account: GitHub answered 404 for
// the installation and found no other on the account, or none was found
// and none is configured.
var ErrNotInstalled = errors.New("the GitHub App is not installed on the account")

// ErrSuspended is matched (errors.Is) by a *TokenError when the owner's
// installation is suspended (GitHub refuses to mint with 403).
var ErrSuspended = errors.New("the GitHub App's installation on the account is suspended")

// Options configures an App.
type Options struct {
	// AppID is the App's ID, the JWT's issuer. Required.
	AppID int64
	// KeyPEM is the App's RSA private key, PKCS#1 (as GitHub lets one
	// download it) or PKCS#8 PEM. Required.
	KeyPEM []byte
	// InstallationID is where every owner starts until its own
	// installation was looked up; 0 (the default) means each owner's is
	// looked up on first use. It may be any account's.
	InstallationID int64
	// BaseURL is the REST base URL, ending in "/" (default
	// https://api.github.com/; a GitHub Enterprise server's ends in
	// /api/v3/).
	BaseURL *url.URL
	// Transport carries the App's own requests: JWT calls, installation
	// lookups and token minting (default http.DefaultTransport).
	Transport http.RoundTripper
	// Now is the clock of the JWT's times and of token expiry (default
	// time.Now).
	Now func() time.Time
	// Timeout bounds getting a token: the installation lookup and the
	// mint (default 30 seconds), and each request of Client.
	Timeout time.Duration
}

// App is a GitHub App and its installations on the accounts of the
// repositories it serves. It is safe for concurrent use.
type App struct {
	id         int64
	configured int64
	signer     jose.Signer
	now        func() time.Time
	timeout    time.Duration
	client     *github.Client // authenticated by the JWT

	mu       sync.Mutex
	accounts map[string]*Installation // by lower-cased login
}

// New validates opts and returns the App.
func New(opts Options) (*App, error) {
	if opts.AppID <= 0 {
		return nil, errors.New("ghapp: the GitHub App ID must be positive")
	}
	if opts.InstallationID < 0 {
		return nil, errors.New("ghapp: the installation ID must not be negative")
	}
	key, err := ParseKey(opts.KeyPEM)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("ghapp: GitHub App key: %w", err)
	}
	if opts.BaseURL == nil {
		opts.BaseURL = &url.URL{Scheme: "https", Host: "api.github.com", Path: "/"}
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Timeout < 0 {
		return nil, errors.New("ghapp: the timeout must not be negative")
	}
	a := &App{id: opts.AppID, configured: opts.InstallationID, signer: signer, now: opts.Now, timeout: opts.Timeout,
		accounts: map[string]*Installation{}}
	a.client = github.NewClient(&http.Client{Timeout: opts.Timeout, Transport: &jwtTransport{app: a, base: opts.Transport}})
	base := *opts.BaseURL
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	a.client.BaseURL = &base
	return a, nil
}

// ParseKey reads a PKCS#1 or PKCS#8 PEM RSA key. Errors never quote the
// key.
func ParseKey(b []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("ghapp: GitHub App key is not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("ghapp: GitHub App key is neither a PKCS#1 nor a PKCS#8 RSA key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("ghapp: GitHub App key is not an RSA key")
	}
	return rk, nil
}

// ID returns the App's ID.
func (a *App) ID() int64 { return a.id }

// Client returns a client of the REST API authenticated by the App's
// JWT, for the /app endpoints (installations, their tokens) and
// GET /repos/{owner}/{repo}/installation.
func (a *App) Client() *github.Client { return a.client }

// jwtTransport authenticates each request by a fresh JWT of the App.
type jwtTransport struct {
	app  *App
	base http.RoundTripper
}

func (j *jwtTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	raw, err := j.app.jwt()
	if err != nil {
		if r.Body != nil {
			r.Body.Close() // a RoundTripper closes the body, even on errors
		}
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+raw)
	return j.base.RoundTrip(r2)
}

// jwt signs a JWT of the App: valid from a minute ago (GitHub's clock
// may be behind) for ten minutes at most, as GitHub requires.
func (a *App) jwt() (string, error) {
	now := a.now()
	raw, err := jwt.Signed(a.signer).Claims(jwt.Claims{
		Issuer:   strconv.FormatInt(a.id, 10),
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry:   jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("ghapp: sign GitHub App JWT: %w", err)
	}
	return raw, nil
}

// Account returns the installation of owner's account (GitHub logins are
// case-insensitive); "" is the configured installation, for requests
// that name no repository.
func (a *App) Account(owner string) *Installation {
	key := strings.ToLower(owner)
	a.mu.Lock()
	defer a.mu.Unlock()
	in := a.accounts[key]
	if in == nil {
		in = &Installation{app: a, owner: owner, id: a.configured, minting: make(chan struct{}, 1)}
		a.accounts[key] = in
	}
	return in
}

// AddRepo records repository owner/name, by which the installation on
// owner's account is looked up.
func (a *App) AddRepo(owner, name string) {
	in := a.Account(owner)
	in.mu.Lock()
	defer in.mu.Unlock()
	if !slices.Contains(in.repos, name) {
		in.repos = append(in.repos, name)
	}
}

// Transport returns a RoundTripper over base that authenticates each
// request with the token of the installation on the account that owns
// the repository in its path (/repos/{owner}/...; other paths get the
// configured installation's), and drops that token when GitHub answers
// 401, so that the next request mints another.
func (a *App) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{app: a, base: base}
}

type transport struct {
	app  *App
	base http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := t.app.Account(repoOwner(r.URL.Path))
	tok, err := in.Token(r.Context())
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "token "+tok)
	resp, err := t.base.RoundTrip(r2)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		in.Forget()
	}
	return resp, err
}

// repoOwner returns the owner in a REST path's /repos/{owner}/..., or "".
func repoOwner(path string) string {
	_, rest, ok := strings.Cut(path, "/repos/")
	if !ok {
		return ""
	}
	owner, _, _ := strings.Cut(rest, "/")
	return owner
}

// Installation is the App's installation on one account, and its
// current token. Its ID changes when the App is installed again (Use,
// or a lookup after a 404): the token is then dropped, since the old
// installation's tokens were revoked with it.
type Installation struct {
	app   *App
	owner string // the account's login ("": the configured installation)
	// minting holds a token while one request mints, so that
	// concurrent requests wait for its token rather than mint their own.
	minting chan struct{}

	mu sync.Mutex
	// repos are the account's repositories (AddRepo), by which the
	// installation is looked up.
	repos []string
	id    int64
	// found is set once the installation on the account was looked up
	// (or named by Use).
	found  bool
	tok    string
	expiry time.Time
}

// TokenError is a failure to mint a token of owner's installation: it
// may be gone (ErrNotInstalled) or suspended (ErrSuspended), or GitHub
// could not be asked. Err is the cause (go-github's *ErrorResponse, a
// transport error, or ErrNotInstalled when no installation was known).
type TokenError struct {
	Owner string
	ID    int64
	Err   error
}

func (e *TokenError) Error() string {
	acct := e.Owner + "'s account"
	if e.Owner == "" {
		acct = "the configured installation (the request names no repository)"
	}
	switch {
	case e.ID == 0 && errors.Is(e.Err, ErrNotInstalled):
		// GitHub names an installation only for a repository it
		// covers: one on the account that covers none of the
		// repositories asked about looks the same.
		return fmt.Sprintf("ghapp: the GitHub App is not installed on %s, or not for any of the repositories asked about", acct)
	case e.ID == 0:
		return fmt.Sprintf("ghapp: the GitHub App's installation on %s: %v", acct, e.Err)
	case errors.Is(e, ErrNotInstalled):
		return fmt.Sprintf("ghapp: the GitHub App is not installed on %s (installation %d: %v)", acct, e.ID, e.Err)
	case errors.Is(e, ErrSuspended):
		return fmt.Sprintf("ghapp: the GitHub App's installation %d on %s is suspended: %v", e.ID, acct, e.Err)
	}
	return fmt.Sprintf("ghapp: token of the GitHub App's installation %d on %s: %v", e.ID, acct, e.Err)
}

func (e *TokenError) Unwrap() error { return e.Err }

// Is matches ErrNotInstalled for GitHub's 404 on minting, and
// ErrSuspended for its 403 that is not a rate limit.
func (e *TokenError) Is(target error) bool {
	var er *github.ErrorResponse
	if !errors.As(e.Err, &er) || er.Response == nil {
		return false
	}
	switch target {
	case ErrNotInstalled:
		return er.Response.StatusCode == http.StatusNotFound
	case ErrSuspended:
		var rl *github.RateLimitError
		var ab *github.AbuseRateLimitError
		return er.Response.StatusCode == http.StatusForbidden && !errors.As(e.Err, &rl) && !errors.As(e.Err, &ab)
	}
	return false
}

// Token returns a token of the installation, minting one (and first
// looking the installation up, if it was not yet) when the current one
// expires within a minute, so that it cannot expire between being handed
// out and being used. Failures are *TokenError.
func (in *Installation) Token(ctx context.Context) (string, error) {
	if tok, ok := in.current(); ok {
		return tok, nil
	}
	select {
	case in.minting <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("ghapp: token for %s: %w", in.owner, ctx.Err())
	}
	defer func() { <-in.minting }()
	if tok, ok := in.current(); ok {
		return tok, nil // minted while this one waited
	}
	ctx, cancel := context.WithTimeout(ctx, in.app.timeout)
	defer cancel()
	in.mu.Lock()
	id, found := in.id, in.found
	in.mu.Unlock()
	if !found {
		// The configured installation may be another account's.
		nid, ferr := in.find(ctx)
		switch {
		case nid != 0:
			id = in.settle(id, nid)
		case id == 0 && ferr != nil:
			return "", &TokenError{Owner: in.owner, Err: ferr} // GitHub could not tell
		case id == 0:
			return "", &TokenError{Owner: in.owner, Err: ErrNotInstalled}
		}
	}
	c := in.app.client
	it, resp, err := c.Apps.CreateInstallationToken(ctx, id, nil)
	if err != nil && resp != nil && resp.StatusCode == http.StatusNotFound {
		// The installation is gone: the App may have been installed
		// again, under another ID, whose webhook was missed.
		nid, ferr := in.find(ctx)
		switch {
		case nid != 0 && nid != id:
			id = in.settle(id, nid)
			it, _, err = c.Apps.CreateInstallationToken(ctx, id, nil)
		case nid == 0 && ferr != nil:
			// Whether it was installed again, GitHub could not tell:
			// not "not installed".
			err = fmt.Errorf("installation %d not found, and looking for another failed: %w", id, ferr)
		}
	}
	if err != nil {
		return "", &TokenError{Owner: in.owner, ID: id, Err: err}
	}
	in.mu.Lock()
	if in.id == id {
		in.tok, in.expiry = it.GetToken(), it.GetExpiresAt().Time
	}
	in.mu.Unlock()
	return it.GetToken(), nil
}

// current returns the current token unless it expires within a minute.
func (in *Installation) current() (string, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.tok != "" && in.expiry.Sub(in.app.now()) > time.Minute {
		return in.tok, true
	}
	return "", false
}

// find returns the ID of the installation on the account, as GitHub
// gives it for the first of its repositories that has one whose account
// is the owner, or 0 and the last error other than GitHub's 404 (none:
// the App is not installed on the account, or not on these
// repositories).
func (in *Installation) find(ctx context.Context) (int64, error) {
	in.mu.Lock()
	repos := slices.Clone(in.repos)
	in.mu.Unlock()
	var last error
	for _, name := range repos {
		inst, resp, err := in.app.client.Apps.FindRepositoryInstallation(ctx, in.owner, name)
		switch {
		case err == nil && strings.EqualFold(inst.GetAccount().GetLogin(), in.owner):
			return inst.GetID(), nil
		case err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound):
			last = fmt.Errorf("installation of %s/%s: %w", in.owner, name, err)
		}
	}
	return 0, last
}

// settle makes nid the current installation, found by looking it up,
// unless the ID changed since it was old (Use said which is current
// meanwhile), and returns the current one.
func (in *Installation) settle(old, nid int64) int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.found = true
	if in.id == old && nid != old {
		in.id, in.tok = nid, ""
	}
	return in.id
}

// Owner returns the account's login as first given ("" for the
// configured installation).
func (in *Installation) Owner() string { return in.owner }

// ID returns the current installation ID (0: none known yet).
func (in *Installation) ID() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.id
}

// Found reports whether id is the installation found on the account
// (not merely the configured one, which may be another account's).
func (in *Installation) Found(id int64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.found && in.id == id
}

// Use makes id the account's installation (GitHub said so: a webhook, a
// lookup) and reports whether it changed; the token is then dropped, as
// it was the old installation's.
func (in *Installation) Use(id int64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.found = true
	changed := id != in.id
	if changed {
		in.id, in.tok = id, ""
	}
	return changed
}

// Forget drops the current token (GitHub refused it), so that the next
// request mints another.
func (in *Installation) Forget() {
	in.mu.Lock()
	in.tok = ""
	in.mu.Unlock()
}
