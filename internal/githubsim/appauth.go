package githubsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GitHub App authentication, as GitHub does it: the app signs a JWT
// (RS256, iss = app ID, iat, exp at most 10 minutes later) with its
// private key and sends it as "Authorization: Bearer <jwt>" to the /app
// endpoints, where POST /app/installations/{id}/access_tokens exchanges
// it for an installation token valid for one hour.

// AppCredentials is what a GitHub App's operator configures: its IDs and
// PEM private key.
type AppCredentials struct {
	Slug string
	ID   int64
	// InstallationID is the app's first installation (on the account
	// whose repository was created first; 0 when there is none): the
	// one to configure when the app is used on one account.
	// Sim.InstallationID gives the others.
	InstallationID int64
	// PrivateKeyPEM is the app's RSA key in PKCS#1 PEM form, as GitHub
	// lets one download it.
	PrivateKeyPEM []byte
}

// AppCredentials returns the credentials of the app registered by AddApp.
// The key is generated on first use (RSA generation is slow, and most
// tests use AddApp's token).
func (s *Sim) AppCredentials(slug string) (AppCredentials, error) {
	s.mu.Lock()
	a, ok := s.apps[slug]
	hasKey := ok && a.key != nil
	s.mu.Unlock()
	if !ok {
		return AppCredentials{}, fmt.Errorf("githubsim: app %q: %w", slug, ErrNotFound)
	}
	var key *rsa.PrivateKey
	if !hasKey {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return AppCredentials{}, fmt.Errorf("githubsim: app %q: generate key: %w", slug, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.key == nil {
		a.key = key
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(a.key)})
	creds := AppCredentials{Slug: a.slug, ID: a.id, PrivateKeyPEM: keyPEM}
	for _, in := range sortedInsts(a) {
		if !in.uninstalled {
			creds.InstallationID = in.id
			break
		}
	}
	return creds, nil
}

// maxJWTBytes bounds a JWT before it is parsed.
const maxJWTBytes = 8 << 10

// verifyAppJWT returns the app whose key signed raw, or the message
// GitHub answers with 401.
func (s *Sim) verifyAppJWT(raw string) (*app, string) {
	const undecodable = "A JSON web token could not be decoded"
	if len(raw) > maxJWTBytes {
		return nil, undecodable
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, undecodable
	}
	var claims struct {
		Iss json.RawMessage  `json:"iss"`
		Iat *jwt.NumericDate `json:"iat"`
		Exp *jwt.NumericDate `json:"exp"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return nil, undecodable
	}
	// GitHub accepts the app ID as a number or a string.
	var iss string
	if json.Unmarshal(claims.Iss, &iss) != nil {
		var n json.Number
		if json.Unmarshal(claims.Iss, &n) != nil {
			return nil, "'Issuer' claim ('iss') must be an Integer"
		}
		iss = n.String()
	}
	id, err := strconv.ParseInt(iss, 10, 64)
	if err != nil {
		return nil, "'Issuer' claim ('iss') must be an Integer"
	}
	s.mu.Lock()
	var a *app
	for _, x := range s.apps {
		if x.id == id {
			a = x
		}
	}
	now := s.opts.Now()
	s.mu.Unlock()
	if a == nil {
		return nil, "Integration not found"
	}
	s.mu.Lock()
	key := a.key
	s.mu.Unlock()
	if key == nil { // nobody has the app's key yet, so nothing can verify
		return nil, undecodable
	}
	if err := tok.Claims(&key.PublicKey, &claims); err != nil {
		return nil, undecodable
	}
	switch {
	case claims.Iat == nil:
		return nil, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	case claims.Exp == nil:
		return nil, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	case claims.Iat.Time().After(now.Add(time.Minute)):
		return nil, "'Issued at' claim ('iat') must be an Integer representing a time in the past"
	case !claims.Exp.Time().After(now):
		return nil, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	case claims.Exp.Time().Sub(claims.Iat.Time()) > 10*time.Minute:
		return nil, "'Expiration time' claim ('exp') is too far in the future"
	}
	return a, ""
}

type wAppInstallation struct {
	ID                  int64             `json:"id"`
	Account             *wUser            `json:"account"`
	RepositorySelection string            `json:"repository_selection"`
	AccessTokensURL     string            `json:"access_tokens_url"`
	RepositoriesURL     string            `json:"repositories_url"`
	HTMLURL             string            `json:"html_url"`
	AppID               int64             `json:"app_id"`
	AppSlug             string            `json:"app_slug"`
	TargetID            int64             `json:"target_id"`
	TargetType          string            `json:"target_type"`
	Permissions         map[string]string `json:"permissions"`
	Events              []string          `json:"events"`
	CreatedAt           ghTime            `json:"created_at"`
	UpdatedAt           ghTime            `json:"updated_at"`
	SingleFileName      *string           `json:"single_file_name"`
	SuspendedAt         *ghTime           `json:"suspended_at"`
	SuspendedBy         *wUser            `json:"suspended_by"`
}

// wInstallationOf renders installation in; its account is the owner of
// the repositories it covers, a user or an organization, and its
// html_url the account's settings page for it, as on GitHub.
func (s *Sim) wInstallationOf(in *installation) *wAppInstallation {
	a := in.app
	wa := s.wAppOf(a)
	html := fmt.Sprintf("%s/settings/installations/%d", s.base, in.id)
	if in.account.typ == "Organization" {
		html = fmt.Sprintf("%s/organizations/%s/settings/installations/%d", s.base, in.account.login, in.id)
	}
	inst := &wAppInstallation{
		ID: in.id, Account: s.wUserOf(in.account), RepositorySelection: selection(in),
		AccessTokensURL: fmt.Sprintf("%s/app/installations/%d/access_tokens", s.api(), in.id),
		RepositoriesURL: s.api() + "/installation/repositories",
		HTMLURL:         html,
		AppID:           a.id, AppSlug: a.slug, TargetID: in.account.id, TargetType: s.wUserOf(in.account).Type,
		Permissions: wa.Permissions, Events: wa.Events, CreatedAt: ghTime(in.created), UpdatedAt: ghTime(in.created),
		SuspendedAt: tp(in.suspended),
	}
	if !in.suspended.IsZero() {
		// Suspended by whoever manages the installation.
		inst.SuspendedBy = s.wUserOf(s.adminLocked(in))
	}
	return inst
}

func (s *Sim) getApp(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wAppOf(c.app)
}

// listInstallations lists the app's installations by ID, a page at a
// time; uninstalled ones are gone.
func (s *Sim) listInstallations(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*installation
	for _, in := range sortedInsts(c.app) {
		if !in.uninstalled {
			live = append(live, in)
		}
	}
	return http.StatusOK, pageOf(c, live, s.wInstallationOf)
}

// installationOf returns the app's installation whose ID is in the path,
// or nil when it has none by that ID (or it was uninstalled).
func (c *call) installationOf() *installation {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if err != nil {
		return nil
	}
	for _, in := range c.app.insts {
		if in.id == id && !in.uninstalled {
			return in
		}
	}
	return nil
}

func (s *Sim) getInstallation(c *call) (int, any) {
	in := c.installationOf()
	if in == nil {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wInstallationOf(in)
}

func (s *Sim) getRepoInstallation(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wInstallationOf(s.instLocked(c.app, c.repo))
}

// listInstallationRepos answers GET /installation/repositories: the
// repositories the caller's installation covers, by name, a page at a
// time (AddApp's token: those of every installation of its app).
func (s *Sim) listInstallationRepos(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.u == nil || c.u.app == nil {
		return http.StatusForbidden, &errorBody{Message: "You must authenticate with an installation access token in order to list repositories for an installation.",
			DocumentationURL: "https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation", Status: "403"}
	}
	insts := []*installation{c.inst}
	sel := "all"
	if c.inst == nil {
		insts = sortedInsts(c.u.app)
	}
	var list []*repo
	for _, in := range insts {
		if !in.uninstalled {
			list = append(list, s.installedReposLocked(in)...)
			if selection(in) != "all" {
				sel = "selected"
			}
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].fullName() < list[j].fullName() })
	return http.StatusOK, &struct {
		TotalCount          int      `json:"total_count"`
		RepositorySelection string   `json:"repository_selection"`
		Repositories        []*wRepo `json:"repositories"`
	}{len(list), sel, pageOf(c, list, s.wRepoOf)}
}

// createInstallationToken mints an installation token valid for one hour
// for the app's bot user.
func (s *Sim) createInstallationToken(c *call) (int, any) {
	in := c.installationOf()
	if in == nil {
		return notFound()
	}
	if c.r.ContentLength != 0 {
		// The body (repositories, permissions) may narrow the token;
		// the simulator checks it parses and grants the full set.
		var in struct {
			Repositories  []string          `json:"repositories"`
			RepositoryIDs []int64           `json:"repository_ids"`
			Permissions   map[string]string `json:"permissions"`
		}
		if code, v := c.decode(&in); code != 0 {
			return code, v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !in.suspended.IsZero() {
		return http.StatusForbidden, &errorBody{Message: "This installation has been suspended",
			DocumentationURL: "https://docs.github.com/rest/reference/apps#create-an-installation-access-token-for-an-app", Status: "403"}
	}
	tok := "ghs_" + randomHex(18)
	exp := s.opts.Now().Add(time.Hour).Truncate(time.Second)
	s.tokens[tok] = c.app.bot
	s.tokenExp[tok] = exp
	s.tokenInst[tok] = in
	return http.StatusCreated, map[string]any{
		"token": tok, "expires_at": ghTime(exp), "permissions": s.wAppOf(c.app).Permissions, "repository_selection": selection(in),
	}
}
