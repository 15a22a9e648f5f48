package githubsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strconv"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// appJWT signs claims as a GitHub App would.
func appJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestAppJWTFlow(t *testing.T) {
	clk := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	w := newWorld(t, Options{Now: clk.Now})
	ctx := ctxT(t)
	creds, err := w.s.AppCredentials("tryd")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(creds.PrivateKeyPEM)
	if block == nil || block.Type != "RSA PRIVATE KEY" {
		t.Fatalf("private key PEM block %v", block)
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	good := appJWT(t, key, map[string]any{"iss": strconv.FormatInt(creds.ID, 10), "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()})
	asApp := client(t, w.s, good)

	a, _, err := asApp.Apps.Get(ctx, "")
	if err != nil || a.GetSlug() != "tryd" || a.GetID() != creds.ID {
		t.Fatalf("GET /app = %+v, %v", a, err)
	}
	inst, _, err := asApp.Apps.FindRepositoryInstallation(ctx, "octo", "hello")
	if err != nil || inst.GetID() != creds.InstallationID || inst.GetAppID() != creds.ID {
		t.Fatalf("repo installation = %+v, %v", inst, err)
	}
	list, _, err := asApp.Apps.ListInstallations(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("installations = %v, %v", list, err)
	}
	it, _, err := asApp.Apps.CreateInstallationToken(ctx, creds.InstallationID, nil)
	if err != nil || it.GetToken() == "" || !it.GetExpiresAt().Time.Equal(now.Add(time.Hour)) {
		t.Fatalf("installation token = %+v, %v", it, err)
	}
	// The minted token acts as the app: it may create check runs.
	head := lsRemote(t, w.s.GitURL(w.repo))["refs/heads/main"]
	createRun(t, client(t, w.s, it.GetToken()), head)
	// A JWT is not an installation token.
	if _, _, err := asApp.Repositories.Get(ctx, "octo", "hello"); !isStatus(err, 401) {
		t.Errorf("JWT on a repository endpoint = %v, want 401", err)
	}
	if _, _, err := asApp.Apps.CreateInstallationToken(ctx, creds.InstallationID+1, nil); !isStatus(err, 404) {
		t.Errorf("token for another installation = %v, want 404", err)
	}

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := strconv.FormatInt(creds.ID, 10)
	cases := []struct {
		name  string
		token string
	}{
		{"personal token", w.writeTok},
		{"wrong key", appJWT(t, other, map[string]any{"iss": iss, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})},
		{"expired", appJWT(t, key, map[string]any{"iss": iss, "iat": now.Add(-20 * time.Minute).Unix(), "exp": now.Add(-time.Minute).Unix()})},
		{"too long", appJWT(t, key, map[string]any{"iss": iss, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})},
		{"no exp", appJWT(t, key, map[string]any{"iss": iss, "iat": now.Unix()})},
		{"unknown app", appJWT(t, key, map[string]any{"iss": "999999", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})},
		{"garbage", "a.b.c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := client(t, w.s, tc.token).Apps.Get(ctx, ""); !isStatus(err, 401) {
				t.Fatalf("GET /app = %v, want 401", err)
			}
		})
	}
	// A numeric iss is accepted too, as by GitHub.
	numeric := appJWT(t, key, map[string]any{"iss": creds.ID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	if _, _, err := client(t, w.s, numeric).Apps.Get(ctx, ""); err != nil {
		t.Errorf("numeric iss: %v", err)
	}
	// Installation tokens expire after an hour.
	clk.Advance(time.Hour)
	if _, _, err := client(t, w.s, it.GetToken()).Repositories.Get(ctx, "octo", "hello"); !isStatus(err, 401) {
		t.Errorf("expired installation token = %v, want 401", err)
	}
}
