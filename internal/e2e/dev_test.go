package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// devRun is a "tryd dev" process.
type devRun struct {
	p    *testcluster.Proc
	logs io.Writer

	mu    sync.Mutex
	lines []string
	seen  chan string // every stdout line
}

// startDev runs "tryd dev --data-dir dataDir extra..." in an empty
// working directory, its standard error and output in logs; its process
// group is killed when the test ends.
func startDev(t *testing.T, logs io.Writer, dataDir string, extra ...string) *devRun {
	t.Helper()
	d := &devRun{logs: logs, seen: make(chan string, 1000)}
	p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: trydBinary(t), Name: "dev", Log: logs, Stdout: d,
		Args: append([]string{"dev", "--data-dir", dataDir}, extra...),
		// No tryd.yaml in the working directory may turn the demo off.
		Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	d.p = p
	t.Cleanup(p.Kill)
	return d
}

// Write takes one line of tryd dev's standard output (testcluster
// writes one a call): it is logged, kept and offered to waitLine.
func (d *devRun) Write(b []byte) (int, error) {
	line := strings.TrimSuffix(string(b), "\n")
	fmt.Fprintf(d.logs, "dev stdout: %s\n", line)
	d.mu.Lock()
	d.lines = append(d.lines, line)
	d.mu.Unlock()
	select {
	case d.seen <- line:
	default:
	}
	return len(b), nil
}

// waitLine waits for a stdout line starting with prefix.
func (d *devRun) waitLine(t *testing.T, prefix string, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line := <-d.seen:
			if strings.HasPrefix(line, prefix) {
				return
			}
		case <-d.p.Done():
			t.Fatalf("tryd dev exited (%v) before printing %q", d.p.Err(), prefix)
		case <-timer.C:
			t.Fatalf("tryd dev did not print %q within %v", prefix, timeout)
		}
	}
}

// interrupt sends SIGINT (Ctrl-C) and requires a clean exit.
func (d *devRun) interrupt(t *testing.T) {
	t.Helper()
	d.p.Signal(os.Interrupt)
	select {
	case <-d.p.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("tryd dev did not stop within 60s of SIGINT")
	}
	if err := d.p.Err(); err != nil {
		t.Fatalf("tryd dev exited with %v after SIGINT", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lines) == 0 || d.lines[len(d.lines)-1] != "tryd dev: stopped" {
		t.Fatalf("last lines of tryd dev are %q, want them to end with %q", d.lines[max(0, len(d.lines)-3):], "tryd dev: stopped")
	}
}

// TestDevDemo runs "tryd dev" on an empty data directory, as a newcomer
// would, and checks through the simulators' REST APIs that the demo's
// passing change and pull request got TryBot-Result +1 and a successful
// check run, the failing ones -1 naming the builder and a failed check
// run; that Ctrl-C stops it cleanly; and that a second run on the same
// data directory reloads the Gerrit simulator and posts nothing twice.
func TestDevDemo(t *testing.T) {
	t.Parallel()
	testenv.Short(t)
	testenv.NeedTool(t, "git")
	logs := &testenv.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("processes' output:\n%s", logs.String())
		}
	})
	data := t.TempDir()
	d := startDev(t, logs, data)
	d.waitLine(t, "demo: every result is in", 150*time.Second)

	var ports map[string]string
	readJSON(t, filepath.Join(data, "dev", "ports.json"), &ports)
	var st struct {
		Bot     int
		Changes map[string]int
	}
	readJSON(t, filepath.Join(data, "dev", "demo.json"), &st)
	gerritURL := "http://" + ports["gerritsim"] + "/"
	builder := runtime.GOOS + "-" + runtime.GOARCH
	checkGerrit := func() {
		t.Helper()
		pass := getGerritChange(t, gerritURL, st.Changes["passes"])
		if v := pass.result(st.Bot); v != 1 {
			t.Errorf("passing change: TryBot-Result %+d, want +1", v)
		}
		if msgs := pass.resultMessages(st.Bot, 1); len(msgs) != 1 {
			t.Errorf("passing change: %d result messages, want 1: %q", len(msgs), msgs)
		}
		fail := getGerritChange(t, gerritURL, st.Changes["fails"])
		if v := fail.result(st.Bot); v != -1 {
			t.Errorf("failing change: TryBot-Result %+d, want -1", v)
		}
		msgs := fail.resultMessages(st.Bot, 1)
		if len(msgs) != 1 || !strings.Contains(msgs[0], "Failed on "+builder) {
			t.Errorf("failing change: result messages %q, want one naming %s", msgs, builder)
		}
	}
	checkGerrit()

	api := "http://" + ports["githubsim"] + "/api/v3/"
	for n, want := range map[int]string{1: "success", 2: "failure"} {
		var pr struct {
			Head struct {
				SHA string `json:"sha"`
			} `json:"head"`
		}
		if err := getJSON(t.Context(), fmt.Sprintf("%srepos/gopher/hello/pulls/%d", api, n), &pr); err != nil {
			t.Fatal(err)
		}
		got := checkRuns(t, api, "", "gopher/hello", pr.Head.SHA)
		if w := "tryd/" + builder + "=" + want; len(got) != 1 || got[0] != w {
			t.Errorf("pull request %d: check runs %q, want [%s]", n, got, w)
		}
	}
	// The dashboard shows each Gerrit change's try run.
	for what, want := range map[string]string{"passes": "succeeded", "fails": "failed"} {
		var page struct {
			Run struct {
				Change int    `json:"change"`
				State  string `json:"state"`
			} `json:"run"`
		}
		u := fmt.Sprintf("http://%s/try?review=gerrit&repo=hello&change=%d&format=json", ports["dashboard"], st.Changes[what])
		if err := getJSON(t.Context(), u, &page); err != nil {
			t.Fatal(err)
		}
		if page.Run.Change != st.Changes[what] || page.Run.State != want {
			t.Errorf("dashboard %s: run of change %d in state %q, want change %d %s", u, page.Run.Change, page.Run.State, st.Changes[what], want)
		}
	}
	d.interrupt(t)

	// Second run: the Gerrit simulator reloads its changes, the trybot
	// its state; nothing is tried or posted again.
	runLogs := &testenv.Buffer{}
	d = startDev(t, io.MultiWriter(logs, runLogs), data, "--demo-no-github", "--log-level", "info")
	d.waitLine(t, "demo: Gerrit changes", 60*time.Second)
	d.waitLine(t, "demo: every result is in", 60*time.Second)
	time.Sleep(3 * time.Second) // give a wrong second report time to show
	checkGerrit()
	d.interrupt(t)

	// Ctrl-C stopped the components in dependency order, users first.
	var order []string
	for _, line := range strings.Split(runLogs.String(), "\n") {
		if !strings.Contains(line, "msg=stopped ") {
			continue
		}
		_, comp, ok := strings.Cut(line, "component=")
		if comp, _, _ = strings.Cut(comp, " "); ok && !slices.Contains(order, comp) {
			order = append(order, comp)
		}
	}
	want := []string{"dashboard", "postsubmit", "trybot", "worker", "coordinator", "gitmirror", "maintnerd", "pubsubhelper", "gerritsim"}
	if !slices.Equal(order, want) {
		t.Errorf("components stopped in the order %q, want %q", order, want)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestDevWithConfig runs "tryd dev" with a tryd.yaml that names review
// servers, as on a machine pointed at a real Gerrit and GitHub (the
// simulators stand in for them): no demo starts, webhooks reach the
// pubsubhelper at the configured listen address, and a change and a pull
// request get their results.
func TestDevWithConfig(t *testing.T) {
	t.Parallel()
	pubAddr := freeAddr(t)
	s := newWorld(t, "http://"+pubAddr, "", func(*stack) string {
		return fmt.Sprintf("pubsubhelper:\n  listen: %q\n", pubAddr)
	})
	d := startDev(t, s.logs, t.TempDir(), "--config", s.cfg)
	d.waitLine(t, "tryd dev is running", 60*time.Second)
	n := s.upload("Add ok", map[string]string{"ok.txt": "ok\n"})
	pr := s.openPR("topic", map[string]string{"bad.txt": "fails the check\n"})
	s.waitResult(n, 90*time.Second)
	s.exactlyOnce(n, 1, 1)
	s.waitCheckRuns(pr, "tryd/check=failure")
	d.interrupt(t)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.lines {
		if strings.HasPrefix(l, "demo:") {
			t.Errorf("tryd dev with review servers configured ran the demo: %q", l)
		}
	}
}
