// Package testcluster starts a real build cluster for tests: a "tryd
// coordinator" process and "tryd worker" processes (from
// testenv.TrydBinary) talking over HTTP on loopback. It is for the tests
// of packages that may not import the coordinator and the worker (the
// trybot's, whose dependency rules allow only the coordinator's client
// API), so that they need no in-process copy of either. Callers make
// their client with the coordinator's client API from URL and
// ClientToken.
//
// A package using it calls testenv.Main from its TestMain (TrydBinary
// builds tryd once per test process; $TRYD_E2E_BIN names a prebuilt
// one). Processes run in their own process groups and are stopped when
// the test ends; their standard error is shown in the test's log when
// the test fails.
package testcluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// Options say what to start.
type Options struct {
	// Slots is the first worker's job slots (default 4).
	Slots int
	// Labels are the first worker's labels.
	Labels map[string]string
	// Env is added to the base environment of every job of the first
	// worker (KEY=VALUE), e.g. GOFLAGS=-mod=mod.
	Env []string
}

// Cluster is a running coordinator and its first worker.
type Cluster struct {
	// URL is the coordinator's base URL; ClientToken its client token.
	URL, ClientToken string
	// WorkerTokens are the coordinator's worker tokens by name (w1,
	// w2, w3, w4); w1 is the first worker's.
	WorkerTokens map[string]string
	dir          string
}

// WorkerNames are the worker identities the coordinator has tokens for.
var WorkerNames = []string{"w1", "w2", "w3", "w4"}

// Start starts the coordinator and worker w1 and returns once the
// coordinator answers /healthz; they stop when t ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Slots == 0 {
		opts.Slots = 4
	}
	dir := t.TempDir()
	c := &Cluster{ClientToken: randomToken(), WorkerTokens: map[string]string{}, dir: dir}
	var lines string
	for _, n := range WorkerNames {
		c.WorkerTokens[n] = randomToken()
		lines += n + " " + c.WorkerTokens[n] + "\n"
	}
	writeFile(t, filepath.Join(dir, "worker-tokens"), lines)
	writeFile(t, filepath.Join(dir, "client-token"), c.ClientToken+"\n")
	addr := testenv.ReservePort(t)
	c.URL = "http://" + addr
	startProc(t, "coordinator", "coordinator", "--listen", addr, "--data-dir", filepath.Join(dir, "coordinator"),
		"--worker-tokens", filepath.Join(dir, "worker-tokens"), "--client-token-file", filepath.Join(dir, "client-token"))
	waitHealthy(t, c.URL)
	StartWorker(t, c.URL, "w1", c.WorkerTokens["w1"], WorkerOptions{Slots: opts.Slots, Labels: opts.Labels, Env: opts.Env})
	return c
}

// WorkerOptions configure a worker.
type WorkerOptions struct {
	// Slots is the worker's job slots (default 2).
	Slots int
	// Labels are the worker's labels; Env is added to its jobs' base
	// environment (KEY=VALUE).
	Labels map[string]string
	Env    []string
}

// StartWorker starts "tryd worker" named name with token against the
// coordinator at coordinatorURL (any coordinator: this package's or one
// a test runs itself); it stops when t ends, giving its jobs back at
// once.
func StartWorker(t testing.TB, coordinatorURL, name, token string, opts WorkerOptions) {
	t.Helper()
	if opts.Slots == 0 {
		opts.Slots = 2
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, token+"\n")
	args := []string{"worker", "--coordinator", coordinatorURL, "--token-file", tokenFile, "--name", name,
		"--dir", filepath.Join(dir, "work"), "--data-dir", filepath.Join(dir, "data"), "--slots", fmt.Sprint(opts.Slots), "--drain", "1ms"}
	for _, k := range slices.Sorted(maps.Keys(opts.Labels)) {
		args = append(args, "--label", k+"="+opts.Labels[k])
	}
	for _, e := range opts.Env {
		args = append(args, "--env", e)
	}
	startProc(t, name, args...)
}

// startProc runs "tryd args..." in its own process group until t ends.
func startProc(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(testenv.TrydBinary(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "TRYD_LOG_LEVEL=warn")
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("testcluster: start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() && stderr.String() != "" {
			t.Logf("testcluster: %s's standard error:\n%s", name, stderr.String())
		}
	})
}

// waitHealthy waits until url answers /healthz (at most 60 s).
func waitHealthy(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testcluster: %s not healthy after 60s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("testcluster: %v", err)
	}
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
