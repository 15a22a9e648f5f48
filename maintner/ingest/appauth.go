package ingest

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-github/v60/github"
	"golang.org/x/oauth2"
)

// appTokenSource mints GitHub App installation tokens: an RS256 JWT
// (iss = app ID, valid ten minutes, backdated a minute for clock drift)
// authenticates POST /app/installations/{id}/access_tokens.
type appTokenSource struct {
	app    *GitHubApp
	signer jose.Signer
	base   *url.URL
	hc     *http.Client
	clock  Clock
}

func newAppTokenSource(app *GitHubApp, base *url.URL, rt http.RoundTripper, clock Clock) (*appTokenSource, error) {
	if app.AppID <= 0 || app.InstallationID <= 0 {
		return nil, errors.New("ingest: GitHub App needs AppID and InstallationID")
	}
	key, err := parseRSAKey(app.KeyPEM)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("ingest: GitHub App key: %w", err)
	}
	return &appTokenSource{app: app, signer: signer, base: base, hc: &http.Client{Transport: rt}, clock: clock}, nil
}

// parseRSAKey reads a PKCS#1 or PKCS#8 PEM RSA key. Errors never quote
// the key.
func parseRSAKey(b []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("ingest: GitHub App key is not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("ingest: GitHub App key is neither a PKCS#1 nor a PKCS#8 RSA key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("ingest: GitHub App key is not an RSA key")
	}
	return rk, nil
}

// Token implements oauth2.TokenSource.
func (s *appTokenSource) Token() (*oauth2.Token, error) {
	now := s.clock.Now()
	raw, err := jwt.Signed(s.signer).Claims(jwt.Claims{
		Issuer:   strconv.FormatInt(s.app.AppID, 10),
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry:   jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}).Serialize()
	if err != nil {
		return nil, fmt.Errorf("ingest: sign GitHub App JWT: %w", err)
	}
	cl := github.NewClient(s.hc).WithAuthToken(raw)
	u := *s.base
	cl.BaseURL = &u
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, _, err := cl.Apps.CreateInstallationToken(ctx, s.app.InstallationID, nil)
	if err != nil {
		return nil, fmt.Errorf("ingest: GitHub App installation %d token: %w", s.app.InstallationID, err)
	}
	return &oauth2.Token{AccessToken: tok.GetToken(), TokenType: "token", Expiry: tok.GetExpiresAt().Time}, nil
}
