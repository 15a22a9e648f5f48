package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
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
