package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// startTokenGitmirror runs "tryd gitmirror" with gitmirror.token and
// gitmirror.tokens set, mirroring a one-commit repository as demo/up, and
// returns its base URL and the config.
func startTokenGitmirror(t *testing.T, token, rotated string) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	up := upstreamRepo(t)
	tokFile, toksFile := filepath.Join(dir, "gm-token"), filepath.Join(dir, "gm-tokens")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(toksFile, []byte("# next one\n"+rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "repos:\n  - name: demo/up\n    url: " + up + "\ngitmirror:\n  token: file:" + tokFile + "\n  tokens: file:" + toksFile + "\n"
	cfgPath := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := startCommand(t, "gitmirror", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--pubsubhelper", "off")
	return base, cfg
}

// TestGitmirrorCommandToken checks that "tryd gitmirror" with tokens
// configured refuses requests without one, accepts gitmirror.token and
// every token of gitmirror.tokens, and that postsubmit fetches with the
// token (postsubmit.Options.Credentials) where it is refused without.
func TestGitmirrorCommandToken(t *testing.T) {
	testenv.NeedTool(t, "git")
	const token, rotated = "current-token-0123456789", "rotated-token-0123456789"
	base, cfg := startTokenGitmirror(t, token, rotated)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "wrong-token-0123456789", http.StatusUnauthorized},
		{"gitmirror.token", token, http.StatusOK},
		{"gitmirror.tokens", rotated, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := getStatus(t, base+"/demo/up/refs", bearer(tc.token)); got != tc.want {
				t.Errorf("GET /demo/up/refs: %d, want %d", got, tc.want)
			}
		})
	}
	// postsubmit, wired as "tryd postsubmit" wires it, fetches history
	// from the token-protected mirror; without the token it cannot. The
	// coordinator is unreachable on purpose: once git has fetched the
	// branch, Update asks the coordinator what it built last and fails
	// there, which shows that the fetch got through.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	update := func(cfg *config.Config) error {
		cfg.Coordinator.URL = deadURL
		cfg.Builders = []config.Builder{{Name: "b", PostSubmit: true, Steps: []config.Step{{Name: "x", Shell: "true"}}}}
		a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
		fs, cf := a.flags("postsubmit", "", "")
		if err := a.parse(fs, cf, []string{"--data-dir", t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		a.cfg = cfg
		coord, tokenFile, gm, gmTokenFile := "", "", base, ""
		b, _, err := newPostsubmit(a, postsubmitFlags{coord: &coord, tokenFile: &tokenFile, gitmirror: &gm, gmTokenFile: &gmTokenFile})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Update(context.Background(), "demo/up", "main", "")
		return err
	}
	withToken := *cfg
	deadline := time.Now().Add(30 * time.Second)
	var ge *gitexec.Error
	for {
		// Until gitmirror's first fetch made refs/heads/main servable,
		// git fails.
		err := update(&withToken)
		if err != nil && !errors.As(err, &ge) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postsubmit with gitmirror.token: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	noToken := *cfg
	noToken.Gitmirror.Token = config.Secret{}
	if err := update(&noToken); !errors.As(err, &ge) || ge.Verb != "fetch" {
		t.Errorf("postsubmit without the token: %v, want a refused git fetch", err)
	} else if strings.Contains(err.Error(), token) {
		t.Errorf("the error shows the token: %v", err)
	}
	// The same with the token in an environment variable.
	t.Setenv("TRYD_TEST_GM_TOKEN", rotated)
	envCfg := *cfg
	envCfg.Gitmirror.Token = config.EnvSecret("TRYD_TEST_GM_TOKEN")
	if err := update(&envCfg); err == nil || errors.As(err, &ge) {
		t.Errorf("postsubmit with the token in env: %v, want a coordinator error after the fetch", err)
	}
}

func TestGitmirrorClientWiring(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	if err := os.WriteFile(tok, []byte("client-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := &config.Config{Gitmirror: config.Gitmirror{Endpoint: config.Endpoint{URL: "http://gm.internal:8083/"}, Token: config.FileSecret(tok)}}
	t.Run("worker credentials", func(t *testing.T) {
		creds, err := workerSourceCredentials("", "", withToken)
		if err != nil || len(creds) != 1 || creds[0].URLPrefix != "http://gm.internal:8083/" || creds[0].Token != "client-token-0123456789" {
			t.Errorf("credentials = %+v, %v", creds, err)
		}
		if creds, err := workerSourceCredentials("", "", &config.Config{}); err != nil || creds != nil {
			t.Errorf("no token: credentials = %+v, %v", creds, err)
		}
		if _, err := workerSourceCredentials("", tok, &config.Config{}); err == nil {
			t.Error("a token without a gitmirror URL was accepted")
		}
	})
	t.Run("postsubmit credentials", func(t *testing.T) {
		creds, err := gitmirrorCredentials("http://gm.internal:8083", "", withToken)
		if err != nil || len(creds) != 1 || creds[0].URLPrefix != "http://gm.internal:8083/" || creds[0].Token != "client-token-0123456789" {
			t.Errorf("credentials = %+v, %v", creds, err)
		}
	})
	t.Run("no token, no credentials", func(t *testing.T) {
		if creds, err := gitmirrorCredentials("http://gm.internal:8083", "", &config.Config{}); err != nil || creds != nil {
			t.Errorf("gitmirrorCredentials = %+v, %v", creds, err)
		}
	})
	t.Run("unreadable token", func(t *testing.T) {
		if _, err := gitmirrorCredentials("http://gm.internal:8083", filepath.Join(dir, "missing"), &config.Config{}); err == nil {
			t.Error("a missing token file was accepted")
		}
	})
	t.Run("server tokens", func(t *testing.T) {
		got, err := gitmirrorTokens("", withToken.Gitmirror)
		if err != nil || strings.Join(got, ",") != "client-token-0123456789" {
			t.Errorf("tokens = %q, %v", got, err)
		}
		if got, err := gitmirrorTokens("", config.Gitmirror{}); err != nil || got != nil {
			t.Errorf("no tokens = %q, %v", got, err)
		}
	})
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8083": true, "[::1]:8083": true, "localhost:8083": true,
		":8083": false, "0.0.0.0:8083": false, "10.0.0.5:8083": false, "bogus": false,
	} {
		if got := loopbackListen(addr); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}
