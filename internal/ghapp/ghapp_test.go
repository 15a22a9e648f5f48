package ghapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/githubsim"
)

// world is a simulator with private repositories of two users and an
// organization, and an App installed on the three accounts.
type world struct {
	sim  *githubsim.Sim
	cred githubsim.AppCredentials
	ids  map[string]int64 // installation by account
}

var worldRepos = []string{"alice/one", "bob/two", "gophers/three"}

func newWorld(t *testing.T, now func() time.Time) *world {
	t.Helper()
	sim := githubsim.StartForTest(t, githubsim.Options{Now: now})
	ctx := t.Context()
	fatalIf(t, sim.AddOrg("gophers"))
	for _, full := range worldRepos {
		fatalIf(t, sim.CreateRepo(ctx, full))
	}
	_, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd"})
	fatalIf(t, err)
	w := &world{sim: sim, ids: map[string]int64{}}
	w.cred, err = sim.AppCredentials("tryd")
	fatalIf(t, err)
	for _, acct := range []string{"alice", "bob", "gophers"} {
		w.ids[acct], err = sim.InstallationID("tryd", acct)
		fatalIf(t, err)
	}
	return w
}

// countingTransport counts the installation tokens minted through it
// and, while lookupDown is set, answers installation lookups 503 as
// GitHub does when it is unavailable.
type countingTransport struct {
	mints      atomic.Int64
	lookupDown atomic.Bool
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/access_tokens") {
		c.mints.Add(1)
	}
	if c.lookupDown.Load() && strings.HasSuffix(r.URL.Path, "/installation") {
		if r.Body != nil {
			r.Body.Close()
		}
		body := `{"message":"Service Unavailable"}`
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// app returns an App on w's simulator that knows w's repositories, and
// a REST client authenticated by its Transport.
func (w *world) app(t *testing.T, installation int64, now func() time.Time, ct *countingTransport) (*App, *github.Client) {
	t.Helper()
	base, err := url.Parse(w.sim.APIURL())
	fatalIf(t, err)
	var rt http.RoundTripper
	if ct != nil {
		rt = ct
	}
	a, err := New(Options{AppID: w.cred.ID, KeyPEM: w.cred.PrivateKeyPEM, InstallationID: installation, BaseURL: base, Transport: rt, Now: now})
	fatalIf(t, err)
	for _, full := range worldRepos {
		owner, name, _ := strings.Cut(full, "/")
		a.AddRepo(owner, name)
	}
	c := github.NewClient(&http.Client{Transport: a.Transport(rt)})
	c.BaseURL = base
	return a, c
}

func fatalIf(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func getRepo(ctx context.Context, c *github.Client, full string) error {
	owner, name, _ := strings.Cut(full, "/")
	_, _, err := c.Repositories.Get(ctx, owner, name)
	return err
}

// TestPerOwner reads private repositories of two users and an
// organization, each with the token of the installation on its owner's
// account, whether none is configured or the configured one is another
// account's.
func TestPerOwner(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	for _, tc := range []struct {
		name       string
		configured string // account whose installation is configured
	}{
		{"none configured", ""},
		{"alice's configured", "alice"},
		{"the organization's configured", "gophers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := &countingTransport{}
			a, c := w.app(t, w.ids[tc.configured], nil, ct)
			for _, full := range worldRepos {
				if err := getRepo(t.Context(), c, full); err != nil {
					t.Errorf("GET %s: %v", full, err)
				}
				if err := getRepo(t.Context(), c, full); err != nil {
					t.Errorf("GET %s again: %v", full, err)
				}
			}
			for acct, id := range w.ids {
				if got := a.Account(acct).ID(); got != id || !a.Account(acct).Found(id) {
					t.Errorf("%s's installation %d (found %v), want %d", acct, got, a.Account(acct).Found(id), id)
				}
			}
			if got := a.Account("ALICE").ID(); got != w.ids["alice"] {
				t.Errorf("logins are case-insensitive: ALICE's installation %d", got)
			}
			if n := ct.mints.Load(); n != 3 {
				t.Errorf("%d tokens minted for 3 accounts and 6 requests, want 3", n)
			}
		})
	}
}

// TestConcurrentMint checks that concurrent requests for one owner wait
// for one token rather than mint one each.
func TestConcurrentMint(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ct := &countingTransport{}
	_, c := w.app(t, 0, nil, ct)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := getRepo(t.Context(), c, "bob/two"); err != nil {
				t.Errorf("GET bob/two: %v", err)
			}
		})
	}
	wg.Wait()
	if n := ct.mints.Load(); n != 1 {
		t.Errorf("%d tokens minted for 8 concurrent requests, want 1", n)
	}
}

// TestRenewal checks that a token is renewed a minute before it expires
// (GitHub's last an hour), on the injected clock.
func TestRenewal(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	w := newWorld(t, clock)
	ct := &countingTransport{}
	_, c := w.app(t, 0, clock, ct)
	for _, step := range []struct {
		advance time.Duration
		mints   int64
	}{
		{0, 1},
		{58 * time.Minute, 1},
		{90 * time.Second, 2}, // 59m30s: half a minute left
		{time.Minute, 2},
	} {
		advance(step.advance)
		if err := getRepo(t.Context(), c, "alice/one"); err != nil {
			t.Fatalf("after %v: %v", step.advance, err)
		}
		if n := ct.mints.Load(); n != step.mints {
			t.Errorf("after %v more: %d tokens minted, want %d", step.advance, n, step.mints)
		}
	}
}

// TestAccountLifecycle checks what an account's installation going away
// and coming back does, to that account's repositories only: not
// installed and suspended are *TokenError matching ErrNotInstalled and
// ErrSuspended and naming the account; a revoked token (401) is dropped
// and the App installed again under a new ID is found by the next
// request.
func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	a, c := w.app(t, 0, nil, nil)
	for _, full := range worldRepos {
		fatalIf(t, getRepo(ctx, c, full))
	}
	others := func(step string) {
		t.Helper()
		for _, full := range []string{"alice/one", "gophers/three"} {
			if err := getRepo(ctx, c, full); err != nil {
				t.Errorf("%s: GET %s: %v", step, full, err)
			}
		}
	}

	fatalIf(t, w.sim.DeleteInstallation(ctx, "tryd", "bob"))
	err := getRepo(ctx, c, "bob/two")
	var ge *github.ErrorResponse
	if !errors.As(err, &ge) || ge.Response.StatusCode != http.StatusUnauthorized {
		t.Errorf("uninstalled, with the revoked token: %v, want 401", err)
	}
	err = getRepo(ctx, c, "bob/two")
	var te *TokenError
	if !errors.Is(err, ErrNotInstalled) || !errors.As(err, &te) || te.Owner != "bob" || te.ID != w.ids["bob"] ||
		!strings.Contains(err.Error(), "the GitHub App is not installed on bob's account") {
		t.Errorf("uninstalled: %v, want ErrNotInstalled for bob", err)
	}
	others("bob uninstalled")

	newID, err := w.sim.CreateInstallation(ctx, "tryd", "bob")
	fatalIf(t, err)
	if err := getRepo(ctx, c, "bob/two"); err != nil {
		t.Errorf("installed again: %v", err)
	}
	if got := a.Account("bob").ID(); got != newID {
		t.Errorf("bob's installation %d, want the new %d", got, newID)
	}

	fatalIf(t, w.sim.SuspendInstallation(ctx, "tryd", "gophers"))
	a.Account("gophers").Forget()
	err = getRepo(ctx, c, "gophers/three")
	if !errors.Is(err, ErrSuspended) || errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "on gophers's account is suspended") {
		t.Errorf("suspended: %v, want ErrSuspended", err)
	}
	if err := getRepo(ctx, c, "alice/one"); err != nil {
		t.Errorf("gophers suspended: GET alice/one: %v", err)
	}

	// A request that names no repository uses the configured
	// installation: none here.
	_, _, err = c.Apps.ListRepos(ctx, nil)
	if !errors.As(err, &te) || te.ID != 0 || !errors.Is(err, ErrNotInstalled) {
		t.Errorf("no owner, none configured: %v, want ErrNotInstalled", err)
	}
}

// TestLookupUnavailable checks that an installation GitHub could not
// look up (a 503) is not reported as not installed, and that the next
// request looks again.
func TestLookupUnavailable(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	ct := &countingTransport{}
	ct.lookupDown.Store(true)
	_, c := w.app(t, 0, nil, ct)
	err := getRepo(ctx, c, "alice/one")
	var te *TokenError
	if !errors.As(err, &te) || errors.Is(err, ErrNotInstalled) || errors.Is(err, ErrSuspended) || !strings.Contains(err.Error(), "503") {
		t.Errorf("lookup unavailable: %v, want a TokenError with the 503, not ErrNotInstalled", err)
	}
	ct.lookupDown.Store(false)
	if err := getRepo(ctx, c, "alice/one"); err != nil {
		t.Errorf("lookup back: %v", err)
	}
}

// TestUse checks that an installation named by a webhook (Use) replaces
// the current one and its token.
func TestUse(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	a, c := w.app(t, w.ids["alice"], nil, nil)
	in := a.Account("alice")
	if in.Found(w.ids["alice"]) {
		t.Error("the configured installation counts as found before any lookup")
	}
	fatalIf(t, getRepo(ctx, c, "alice/one"))
	fatalIf(t, w.sim.DeleteInstallation(ctx, "tryd", "alice"))
	newID, err := w.sim.CreateInstallation(ctx, "tryd", "alice")
	fatalIf(t, err)
	if !in.Use(newID) || in.Use(newID) {
		t.Error("Use reports a change only the first time")
	}
	if err := getRepo(ctx, c, "alice/one"); err != nil {
		t.Errorf("with the installation Use named: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	key := rsaPEM(t, false)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no app ID", Options{KeyPEM: key}},
		{"negative installation", Options{AppID: 1, InstallationID: -1, KeyPEM: key}},
		{"no key", Options{AppID: 1}},
		{"negative timeout", Options{AppID: 1, KeyPEM: key, Timeout: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := New(Options{AppID: 1, KeyPEM: key}); err != nil {
		t.Errorf("without an installation ID: %v", err)
	}
}

func rsaPEM(t testing.TB, pkcs8 bool) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	fatalIf(t, err)
	if !pkcs8 {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	}
	b, err := x509.MarshalPKCS8PrivateKey(k)
	fatalIf(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fatalIf(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	fatalIf(t, err)
	secret := "c2VjcmV0IGtleSBtYXRlcmlhbA"
	for _, tc := range []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"PKCS#1", rsaPEM(t, false), true},
		{"PKCS#8", rsaPEM(t, true), true},
		{"not PEM", []byte(secret), false},
		{"garbage in PEM", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte(secret)}), false},
		{"EC key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKey(tc.pem)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseKey: %v, want ok %v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}

func TestRepoOwner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ path, want string }{
		{"/repos/alice/one", "alice"},
		{"/api/v3/repos/Gophers/three/issues", "Gophers"},
		{"/app/installations/1/access_tokens", ""},
		{"/installation/repositories", ""},
		{"/repos/", ""},
	} {
		if got := repoOwner(tc.path); got != tc.want {
			t.Errorf("repoOwner(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// FuzzParseKey checks that no key file makes ParseKey panic or quote
// the file in its error.
func FuzzParseKey(f *testing.F) {
	f.Add(rsaPEM(f, false))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseKey(b)
		if err != nil && len(b) > 8 && strings.Contains(err.Error(), string(b)) {
			t.Errorf("the error quotes the key: %v", err)
		}
	})
}
