package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/config"
)

// TestPubsubhelperCommand runs "tryd pubsubhelper" with secrets from the
// environment and a file, delivers a signed GitHub webhook and a Gerrit
// event, reads them back from /recent, and shuts down cleanly.
func TestPubsubhelperCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dataDir := t.TempDir()
	gerritFile := filepath.Join(t.TempDir(), "gerrit-secret")
	os.WriteFile(gerritFile, []byte("old-gerrit\nnew-gerrit\n"), 0o600)
	t.Setenv("TRYD_TEST_GH_SECRET", "gh-secret")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"pubsubhelper", "--listen", addr, "--data-dir", dataDir,
			"--github-secret", "env:TRYD_TEST_GH_SECRET", "--gerrit-secret", "file:" + gerritFile}, &bytes.Buffer{}, &stderr)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	body := []byte(`{"action":"opened","repository":{"full_name":"o/r"},"pull_request":{"number":9}}`)
	m := hmac.New(sha256.New, []byte("gh-secret"))
	m.Write(body)
	req, _ := http.NewRequest("POST", base+"/github-webhook", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", "cmd-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("github delivery: %v %v", resp, err)
	}
	req, _ = http.NewRequest("POST", base+"/gerrit-webhook", bytes.NewReader([]byte(`{"type":"patchset-created","project":"p","change":{"number":3}}`)))
	req.Header.Set("Authorization", "Bearer new-gerrit")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("gerrit delivery: %v %v", resp, err)
	}
	resp, err := http.Get(base + "/recent")
	if err != nil {
		t.Fatal(err)
	}
	var evs []struct {
		Type   string
		Server string
	}
	json.NewDecoder(resp.Body).Decode(&evs)
	resp.Body.Close()
	if len(evs) != 2 || evs[0].Type != "patchset-created" || evs[0].Server != "gerrit" || evs[1].Server != "github" {
		t.Errorf("/recent = %+v", evs)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pubsubhelper did not shut down")
	}
	if segs, _ := filepath.Glob(filepath.Join(dataDir, "pubsubhelper", "*.seg")); len(segs) == 0 {
		t.Errorf("no journal under %s/pubsubhelper", dataDir)
	}
}

func TestPubsubhelperRefusesLiteralSecret(t *testing.T) {
	code, _, errOut := runTryd(t, "pubsubhelper", "--github-secret", "hunter2")
	if code != exitUsage || !bytes.Contains([]byte(errOut), []byte("file:/path or env:NAME")) {
		t.Errorf("literal secret: exit %d, %q", code, errOut)
	}
	if bytes.Contains([]byte(errOut), []byte("hunter2")) {
		t.Error("the literal secret was echoed")
	}
}

// startPubsubhelperCommand runs "tryd pubsubhelper" with args on a
// loopback port and returns its base URL once it answers /healthz; it
// stops at cleanup.
func startPubsubhelperCommand(t *testing.T, args ...string) string {
	t.Helper()
	base, _ := startCommand(t, "pubsubhelper", append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	return base
}

// TestPubsubhelperSubscriberToken checks pubsubhelper.subscriber_token:
// /waitevent and /recent refuse a missing or wrong token and accept
// every line of the token file (rotation), and the token a client
// sends is the first line.
func TestPubsubhelperSubscriberToken(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "subscriber-token")
	if err := os.WriteFile(tokFile, []byte("new-subscriber-token\nold-subscriber-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfgPath, []byte("pubsubhelper:\n  subscriber_token: file:"+tokFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := startPubsubhelperCommand(t, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"))
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"recent without token", "/recent", "", http.StatusUnauthorized},
		{"waitevent without token", "/waitevent?timeout=1ms", "", http.StatusUnauthorized},
		{"wrong token", "/recent", "Bearer wrong-subscriber-token", http.StatusUnauthorized},
		{"prefix of the token", "/recent", "Bearer new-subscriber", http.StatusUnauthorized},
		{"empty bearer", "/recent", "Bearer ", http.StatusUnauthorized},
		{"token as basic auth", "/recent", "Basic " + base64.StdEncoding.EncodeToString([]byte("x:new-subscriber-token")), http.StatusUnauthorized},
		{"token", "/recent", "Bearer new-subscriber-token", http.StatusOK},
		{"rotated token", "/waitevent?timeout=1ms", "Bearer old-subscriber-token", http.StatusOK},
		{"raw with token", "/recent?raw=1", "Bearer new-subscriber-token", http.StatusOK},
		{"healthz stays open", "/healthz", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := getStatus(t, base+tc.path, tc.auth); got != tc.want {
				t.Errorf("GET %s: %d, want %d", tc.path, got, tc.want)
			}
		})
	}

	cfg := &config.Config{}
	cfg.Pubsubhelper.SubscriberToken = config.FileSecret(tokFile)
	if tok, err := pubsubhelperToken("", cfg); err != nil || tok != "new-subscriber-token" {
		t.Errorf("client token from the config: %q, %v; want the first line", tok, err)
	}
	t.Setenv("TRYD_TEST_SUB_TOKEN", "from-env")
	if tok, err := pubsubhelperToken("env:TRYD_TEST_SUB_TOKEN", cfg); err != nil || tok != "from-env" {
		t.Errorf("client token from the flag: %q, %v", tok, err)
	}
	if _, err := pubsubhelperToken("literal", cfg); err == nil {
		t.Error("a literal --pubsubhelper-token was accepted")
	}
}

// TestPubsubhelperRefusesOpenSubscribers checks that pubsubhelper will
// not serve subscribers without a token off loopback, and serves them
// (without raw payloads) on loopback.
func TestPubsubhelperRefusesOpenSubscribers(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TRYD_TEST_GH_SECRET", "gh-secret")
	code, _, errOut := runTryd(t, "pubsubhelper", "--data-dir", filepath.Join(dir, "data"), "--listen", "0.0.0.0:0", "--github-secret", "env:TRYD_TEST_GH_SECRET")
	if code != exitFailure || !strings.Contains(errOut, "pubsubhelper.subscriber_token") {
		t.Errorf("open subscribers off loopback: exit %d\n%s", code, errOut)
	}
	base := startPubsubhelperCommand(t, "--data-dir", filepath.Join(dir, "data2"))
	for path, want := range map[string]int{"/recent": http.StatusOK, "/recent?raw=1": http.StatusForbidden} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("loopback without a token: GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
