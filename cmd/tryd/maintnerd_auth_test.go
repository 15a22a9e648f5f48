package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startMaintnerdCommand runs "tryd maintnerd" with args and returns its
// base URL once it answers /healthz; it stops at cleanup.
func startMaintnerdCommand(t *testing.T, args ...string) string {
	t.Helper()
	base, _ := startCommand(t, "maintnerd", append([]string{"--pubsubhelper", "off"}, args...)...)
	return base
}

// TestMaintnerdAPIToken checks that with maintnerd.api_token the query
// API refuses requests without the token while /logs stays open, and
// that "tryd corpus" sends the configured token.
func TestMaintnerdAPIToken(t *testing.T) {
	const token = "query-api-token-0123456789"
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfgPath, []byte("maintnerd:\n  api_token: file:"+tokFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := startMaintnerdCommand(t, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0")
	checkTokens(t, base, []tokenCase{
		{"api without token", "/api/stats", "", http.StatusUnauthorized},
		{"api with a wrong token", "/api/github/repos", "wrong-token-0123456789", http.StatusUnauthorized},
		{"api with the token", "/api/stats", token, http.StatusOK},
		{"logs without token", "/logs", "", http.StatusOK},
		{"healthz without token", "/healthz", "", http.StatusOK},
	})
	t.Run("corpus CLI", func(t *testing.T) {
		if code, out, errOut := runTryd(t, "corpus", "stats", "--config", cfgPath, "--server", base); code != 0 || !strings.Contains(out, "records") {
			t.Errorf("with maintnerd.api_token: exit %d\n%s\n%s", code, out, errOut)
		}
		if code, out, errOut := runTryd(t, "corpus", "ls", "--server", base, "--token-file", tokFile, "repos"); code != 0 {
			t.Errorf("with --token-file: exit %d\n%s\n%s", code, out, errOut)
		}
		code, _, errOut := runTryd(t, "corpus", "stats", "--server", base)
		if code != exitFailure || !strings.Contains(errOut, "unauthorized") {
			t.Errorf("without a token: exit %d\n%s", code, errOut)
		}
		if strings.Contains(errOut, token) {
			t.Errorf("the error shows the token:\n%s", errOut)
		}
	})
}

// TestMaintnerdRefusesOpenAPI checks that maintnerd will not serve the
// query API without a token off loopback unless told it is public.
func TestMaintnerdRefusesOpenAPI(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runTryd(t, "maintnerd", "--data-dir", filepath.Join(dir, "data"), "--pubsubhelper", "off", "--listen", "0.0.0.0:0")
	if code != exitFailure || !strings.Contains(errOut, "maintnerd.api_token") || !strings.Contains(errOut, "public_api") {
		t.Errorf("open API off loopback: exit %d\n%s", code, errOut)
	}
	base := startMaintnerdCommand(t, "--data-dir", filepath.Join(dir, "data2"), "--listen", "0.0.0.0:0", "--public-api")
	base = strings.Replace(base, "0.0.0.0", "127.0.0.1", 1)
	resp, err := http.Get(base + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("--public-api: GET /api/stats: %d", resp.StatusCode)
	}
}
