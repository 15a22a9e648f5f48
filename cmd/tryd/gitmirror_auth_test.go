package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// startTokenGitmirror runs "tryd gitmirror" with gitmirror.token and
// gitmirror.tokens set, mirroring a one-commit repository as demo/up, and
// returns its base URL and the config.
func startTokenGitmirror(t *testing.T, token, rotated string) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	up := filepath.Join(dir, "up.git")
	work := filepath.Join(dir, "work")
	gitRun := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	gitRun(dir, "init", "-q", "--bare", "-b", "main", up)
	gitRun(dir, "init", "-q", "-b", "main", work)
	if err := os.WriteFile(filepath.Join(work, "f.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(work, "add", "f.txt")
	gitRun(work, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "one")
	gitRun(work, "push", "-q", up, "main")
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
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"gitmirror", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
			"--listen", "127.0.0.1:0", "--pubsubhelper", "off", "--log-format", "json"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit code %d: %s", code, stderr.String())
		}
	})
	addrRE := regexp.MustCompile(`"addr":"(http://[^"]+)"`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			if resp, err := http.Get(m[1] + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return m[1], cfg
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gitmirror not healthy: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGitmirrorCommandToken checks that "tryd gitmirror" with tokens
// configured refuses requests without one, accepts gitmirror.token and
// every token of gitmirror.tokens, and that postsubmit's git wrapper
// fetches with the token where plain git is refused.
func TestGitmirrorCommandToken(t *testing.T) {
	testenv.NeedTool(t, "git")
	const token, rotated = "current-token-0123456789", "rotated-token-0123456789"
	base, cfg := startTokenGitmirror(t, token, rotated)
	get := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/demo/up/refs", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
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
			if got := get(tc.token); got != tc.want {
				t.Errorf("GET /demo/up/refs: %d, want %d", got, tc.want)
			}
		})
	}
	repoURL := base + "/demo/up.git"
	// Wait until the first fetch made refs/heads/main servable.
	lsRemote := func(git string) (string, error) {
		cmd := exec.Command(git, "ls-remote", repoURL)
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	wrapper, err := gitmirrorGit(t.TempDir(), base, "", cfg)
	if err != nil || wrapper == "" {
		t.Fatalf("gitmirrorGit = %q, %v", wrapper, err)
	}
	if st, err := os.Stat(wrapper); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("wrapper mode: %v, %v", st, err)
	}
	if b, _ := os.ReadFile(wrapper); strings.Contains(string(b), token) {
		t.Errorf("the wrapper holds the token itself:\n%s", b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := lsRemote(wrapper)
		if err == nil && strings.Contains(out, "refs/heads/main") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("git ls-remote through the wrapper: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := lsRemote("git"); err == nil {
		t.Errorf("plain git ls-remote of a token-protected mirror succeeded:\n%s", out)
	}
	// The same with the token in an environment variable.
	t.Setenv("TRYD_TEST_GM_TOKEN", rotated)
	envCfg := &config.Config{Gitmirror: config.Gitmirror{Token: config.EnvSecret("TRYD_TEST_GM_TOKEN")}}
	envWrapper, err := gitmirrorGit(t.TempDir(), base, "", envCfg)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := lsRemote(envWrapper); err != nil || !strings.Contains(out, "refs/heads/main") {
		t.Errorf("git ls-remote through the env wrapper: %v\n%s", err, out)
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
	t.Run("no token, plain git", func(t *testing.T) {
		if git, err := gitmirrorGit(dir, "http://gm.internal:8083", "", &config.Config{}); err != nil || git != "" {
			t.Errorf("gitmirrorGit = %q, %v", git, err)
		}
	})
	t.Run("unreadable token", func(t *testing.T) {
		if _, err := gitmirrorGit(dir, "http://gm.internal:8083", filepath.Join(dir, "missing"), &config.Config{}); err == nil {
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
