package githubsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
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
	Slug           string
	ID             int64
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
	return AppCredentials{Slug: a.slug, ID: a.id, InstallationID: a.installationID, PrivateKeyPEM: keyPEM}, nil
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

// wInstallationOf renders the app's one installation, which covers every
// repository of the simulator but those RemoveFromInstallation took out;
// its account is the app's owner.
func (s *Sim) wInstallationOf(a *app) *wAppInstallation {
	wa := s.wAppOf(a)
	inst := &wAppInstallation{
		ID: a.installationID, Account: s.wUserOf(a.owner), RepositorySelection: selection(a),
		AccessTokensURL: fmt.Sprintf("%s/app/installations/%d/access_tokens", s.api(), a.installationID),
		RepositoriesURL: s.api() + "/installation/repositories",
		HTMLURL:         fmt.Sprintf("%s/settings/installations/%d", s.base, a.installationID),
		AppID:           a.id, AppSlug: a.slug, TargetID: a.owner.id, TargetType: a.owner.typ,
		Permissions: wa.Permissions, Events: wa.Events, CreatedAt: ghTime(a.created), UpdatedAt: ghTime(a.created),
		SuspendedAt: tp(a.suspended),
	}
	if !a.suspended.IsZero() {
		// Suspended by the account's owner, in its settings.
		inst.SuspendedBy = s.wUserOf(a.owner)
	}
	return inst
}

func (s *Sim) getApp(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wAppOf(c.app)
}

func (s *Sim) listInstallations(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.page(1)
	if c.app.uninstalled {
		return http.StatusOK, []*wAppInstallation{}
	}
	return http.StatusOK, []*wAppInstallation{s.wInstallationOf(c.app)}
}

func (c *call) installationID() (int64, bool) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return id, err == nil && id == c.app.installationID && !c.app.uninstalled
}

func (s *Sim) getInstallation(c *call) (int, any) {
	if _, ok := c.installationID(); !ok {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wInstallationOf(c.app)
}

func (s *Sim) getRepoInstallation(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wInstallationOf(c.app)
}

// createInstallationToken mints an installation token valid for one hour
// for the app's bot user.
func (s *Sim) createInstallationToken(c *call) (int, any) {
	if _, ok := c.installationID(); !ok {
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
	if !c.app.suspended.IsZero() {
		return http.StatusForbidden, &errorBody{Message: "This installation has been suspended",
			DocumentationURL: "https://docs.github.com/rest/reference/apps#create-an-installation-access-token-for-an-app", Status: "403"}
	}
	tok := "ghs_" + randomHex(18)
	exp := s.opts.Now().Add(time.Hour).Truncate(time.Second)
	s.tokens[tok] = c.app.bot
	s.tokenExp[tok] = exp
	return http.StatusCreated, map[string]any{
		"token": tok, "expires_at": ghTime(exp), "permissions": s.wAppOf(c.app).Permissions, "repository_selection": selection(c.app),
	}
}
