package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trybotArgs are the flags "tryd trybot" needs besides the API's: the
// services it follows and submits to need not answer for its API to.
func trybotArgs(dir string) []string {
	return []string{"--data-dir", filepath.Join(dir, "data"), "--maintnerd", "http://127.0.0.1:1",
		"--coordinator", "http://127.0.0.1:1", "--gitmirror", "http://127.0.0.1:1"}
}

// TestTrybotAPIToken checks that with trybot.api_token the try run API
// refuses requests without the token, or with a wrong one, while
// /healthz and /metrics stay open.
func TestTrybotAPIToken(t *testing.T) {
	const token = "trybot-api-token-0123456789"
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfgPath, []byte("trybot:\n  api_token: file:"+tokFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, how := range []struct{ name, flag, value string }{
		{"config", "--config", cfgPath},
		{"flag", "--api-token-file", tokFile},
	} {
		t.Run(how.name, func(t *testing.T) {
			base, _ := startCommand(t, "trybot", append(trybotArgs(t.TempDir()), how.flag, how.value, "--listen", "127.0.0.1:0")...)
			checkTokens(t, base, []tokenCase{
				{"runs without token", "/api/runs", "", http.StatusUnauthorized},
				{"runs with a wrong token", "/api/runs", "wrong-token-0123456789", http.StatusUnauthorized},
				{"runs with the token", "/api/runs", token, http.StatusOK},
				{"a run without token", "/api/runs/1", "", http.StatusUnauthorized},
				{"a run with the token", "/api/runs/1", token, http.StatusNotFound},
				{"healthz without token", "/healthz", "", http.StatusOK},
				{"metrics without token", "/metrics", "", http.StatusOK},
			})
		})
	}
}

// TestTrybotRefusesOpenAPI checks that the trybot will not serve its
// API without a token off loopback unless told it is public.
func TestTrybotRefusesOpenAPI(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runTryd(t, append([]string{"trybot"}, append(trybotArgs(dir), "--listen", "0.0.0.0:0")...)...)
	if code != exitFailure || !strings.Contains(errOut, "trybot.api_token") || !strings.Contains(errOut, "public_api") {
		t.Errorf("open API off loopback: exit %d\n%s", code, errOut)
	}
	cfgPath := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfgPath, []byte("trybot:\n  public_api: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, flag, value string }{
		{"--public-api", "--public-api", "true"},
		{"trybot.public_api", "--config", cfgPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := startCommand(t, "trybot", append(trybotArgs(t.TempDir()), tc.flag+"="+tc.value, "--listen", "0.0.0.0:0")...)
			base = strings.Replace(base, "0.0.0.0", "127.0.0.1", 1)
			if got := getStatus(t, base+"/api/runs", ""); got != http.StatusOK {
				t.Errorf("public API: GET /api/runs: %d", got)
			}
		})
	}
}
