package trybot_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot"
)

// TestMain lets the test binary run a trybot as a child process (for the
// kill -9 test) when TRYBOT_CHILD_CONFIG is set.
func TestMain(m *testing.M) {
	if os.Getenv("TRYBOT_CHILD_CONFIG") != "" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "trybot child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testenv.Main(m))
}

func runChild() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.Getenv("TRYBOT_CHILD_CONFIG"))
	if err != nil {
		return err
	}
	cc, err := api.NewClient(cfg.Coordinator.URL, os.Getenv("TRYBOT_CHILD_TOKEN"), nil)
	if err != nil {
		return err
	}
	gm, err := gmclient.New(cfg.Gitmirror.URL, nil)
	if err != nil {
		return err
	}
	log, err := logging.New(logging.Options{Level: "info", Output: os.Stderr})
	if err != nil {
		return err
	}
	tb, err := trybot.New(ctx, trybot.Options{Config: cfg, LogsURL: cfg.Maintnerd.URL + "/logs", Coordinator: cc, Gitmirror: gm,
		Dir: cfg.DataDir, Log: log, RetryMin: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	defer tb.Close()
	return tb.Run(ctx)
}

// child is a trybot subprocess.
type child struct {
	cmd *exec.Cmd
	out *testenv.Buffer
}

func startChild(t *testing.T, cfgPath, token string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TRYBOT_CHILD_CONFIG="+cfgPath, "TRYBOT_CHILD_TOKEN="+token)
	out := &testenv.Buffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: out}
	t.Cleanup(func() { c.kill() })
	return c
}

// kill sends SIGKILL and reaps the process.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// writeChildConfig writes the child trybot's configuration: the stack's
// (trystack.WriteTrybotConfig, which names every URL the child reads from
// it) with builders.
func writeChildConfig(t *testing.T, s *trystack.Stack, builders string) string {
	t.Helper()
	path, err := s.WriteTrybotConfig(t.TempDir(), builders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatalf("child config: %v", err)
	}
	return path
}

func TestRestartPostsExactlyOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() && !testenvInCI() {
		t.Skip("kill -9 end-to-end test skipped in -short mode")
	}
	builders := []config.Builder{{Name: "check", Steps: []config.Step{{Name: "test", Shell: "sleep 0.5; test ! -f bad.txt"}}}}
	s := startStack(t, trystack.Options{Builders: builders})
	cfg := writeChildConfig(t, s, "  - name: check\n    steps:\n      - name: test\n        shell: \"sleep 0.5; test ! -f bad.txt\"\n")
	ctx := context.Background()

	// Kill points: right after the vote (before or while the run is
	// created and submitted), after the beginning was posted (builds
	// running), and right after the result appeared.
	type killAt struct {
		name string
		wait func(n int) bool
	}
	points := []killAt{
		{"after vote", func(n int) bool { time.Sleep(30 * time.Millisecond); return true }},
		{"after beginning", func(n int) bool { return len(trybotMessages(s, n, 1)) >= 1 }},
		{"after result", func(n int) bool { return resultVote(s, n, 1) != 0 }},
	}
	c := startChild(t, cfg, s.ClientToken)
	for i, p := range points {
		files := map[string]string{"ok.txt": "yes\n"}
		want := int8(1)
		if i%2 == 1 {
			files, want = map[string]string{"bad.txt": "x\n"}, -1
		}
		n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "restart "+p.name, files)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "kill point "+p.name, 60*time.Second, func() bool { return p.wait(n) })
		c.kill()
		c = startChild(t, cfg, s.ClientToken)
		waitFor(t, fmt.Sprintf("TryBot-Result on change %d (%s)", n, p.name), 60*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
		if v := resultVote(s, n, 1); v != want {
			t.Errorf("%s: TryBot-Result %+d, want %+d", p.name, v, want)
		}
		// Give a duplicate every chance to appear.
		time.Sleep(400 * time.Millisecond)
		if err := s.SyncGerrit(ctx); err != nil {
			t.Fatal(err)
		}
		msgs := trybotMessages(s, n, 1)
		begins, results := 0, 0
		for _, m := range msgs {
			if strings.Contains(m, "TryBots beginning") {
				begins++
			} else {
				results++
			}
		}
		if begins != 1 || results != 1 {
			t.Errorf("%s: change %d got %d beginning and %d result messages, want exactly one each: %q", p.name, n, begins, results, msgs)
		}
		builds, err := s.Client().Builds(ctx, api.ListOptions{Labels: map[string]string{"change": fmt.Sprint(n)}})
		if err != nil {
			t.Fatal(err)
		}
		if len(builds) != 1 {
			t.Errorf("%s: change %d has %d builds, want 1 (no resubmission after restart)", p.name, n, len(builds))
		}
	}
	if t.Failed() {
		t.Logf("last child's log:\n%s", c.out.String())
	}
}
