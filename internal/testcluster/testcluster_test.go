package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestLaunchRejectsBadOptions(t *testing.T) {
	tryd := testenv.TrydBinary(t)
	for _, tc := range []struct {
		name string
		opts testcluster.Options
		want string
	}{
		{"no binary", testcluster.Options{Dir: t.TempDir()}, "Tryd and Options.Dir are required"},
		{"no directory", testcluster.Options{Tryd: tryd}, "Tryd and Options.Dir are required"},
		{"too many workers", testcluster.Options{Tryd: tryd, Dir: t.TempDir(), Workers: make([]testcluster.WorkerOptions, 5)}, "5 workers asked for"},
		{"missing binary", testcluster.Options{Tryd: filepath.Join(t.TempDir(), "nosuch"), Dir: t.TempDir()}, "start coordinator"},
		{"coordinator refuses its configuration", testcluster.Options{Tryd: tryd, Dir: t.TempDir(), CoordinatorYAML: "  database: nosuch\n"}, "coordinator exited before it was healthy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := testcluster.Launch(ctx, tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("Launch succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Launch: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLaunchGivesUpWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := testcluster.Launch(ctx, testcluster.Options{Tryd: testenv.TrydBinary(t), Dir: t.TempDir(), Workers: make([]testcluster.WorkerOptions, 1)})
	if err == nil {
		c.Close()
		t.Fatal("Launch succeeded with a cancelled context")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Launch: %v; want context.Canceled", err)
	}
}

func TestJoinRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "../w", "a/b", ".hidden", testcluster.BadWorker} {
		_, err := testcluster.Join(testcluster.Options{Tryd: "tryd", Dir: t.TempDir()}, "http://127.0.0.1:1", map[string]string{name: "tok"})
		if err == nil {
			t.Errorf("Join with worker name %q succeeded", name)
		}
	}
}

// TestCluster runs a job, restarts the coordinator on the same data
// directory, and starts, stops and kills workers: every operation the
// process-level tests use.
func TestCluster(t *testing.T) {
	testenv.Short(t)
	logs := &testenv.Buffer{}
	c := testcluster.Start(t, testcluster.Options{Log: logs, Workers: []testcluster.WorkerOptions{{Slots: 1, Labels: map[string]string{"pool": "a"}, Env: []string{"GREETING=hello"}}}})
	cl, err := api.NewClient(c.URL, c.ClientToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w1 := waitWorker(ctx, t, cl, "w1")
	if w1.Slots != 1 || w1.Labels["pool"] != "a" {
		t.Errorf("w1 registered as %+v; want 1 slot, pool=a", w1)
	}

	job := &graph.Job{Name: "greet", SourceMode: graph.SourceNone, Labels: map[string]string{"pool": "a"},
		Commands: []graph.Command{{Argv: []string{"sh", "-c", `echo "$GREETING from the cluster"`}}}}
	sub, err := cl.Submit(ctx, api.SubmitRequest{Graph: graph.Graph{Jobs: []*graph.Job{job}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Wait(ctx, sub.BuildID, nil)
	if err != nil || b.State != api.BuildSucceeded {
		t.Fatalf("build: %+v, %v", b, err)
	}
	if log := jobLog(ctx, t, cl, sub.Jobs["greet"]); !strings.Contains(log, "hello from the cluster") {
		t.Errorf("job log %q lacks the worker's environment", log)
	}

	// The coordinator comes back on the same address and data.
	old := c.Coordinator()
	old.Kill()
	if old.Err() == nil {
		t.Error("killed coordinator reports a clean exit")
	}
	if err := c.StartCoordinator(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Coordinator() == old {
		t.Error("Coordinator still returns the killed process")
	}
	if b, err := cl.Build(ctx, sub.BuildID); err != nil || b.State != api.BuildSucceeded {
		t.Fatalf("build %d after the restart: %+v, %v", sub.BuildID, b, err)
	}

	// A second worker, by the package's function for any coordinator,
	// and one by the cluster's method, stopped gracefully.
	testcluster.StartWorker(t, c.URL, "w2", c.WorkerTokens["w2"], testcluster.WorkerOptions{Slots: 2})
	if w := waitWorker(ctx, t, cl, "w2"); w.Slots != 2 {
		t.Errorf("w2 registered with %d slots; want 2", w.Slots)
	}
	w3, err := c.StartWorker("w3", testcluster.WorkerOptions{Args: []string{"--slots", "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if w := waitWorker(ctx, t, cl, "w3"); w.Slots != 3 {
		t.Errorf("w3 registered with %d slots; want 3 (from Args)", w.Slots)
	}
	if err := w3.Stop(30 * time.Second); err != nil {
		t.Errorf("stopping w3: %v", err)
	}

	// An unknown token is refused.
	bad, err := c.StartWorker(testcluster.BadWorker, testcluster.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-bad.Done():
		if bad.Err() == nil {
			t.Error("worker with an unknown token exited 0")
		}
	case <-ctx.Done():
		t.Fatal("worker with an unknown token kept running")
	}
	if _, err := c.StartWorker("nobody", testcluster.WorkerOptions{}); err == nil {
		t.Error("StartWorker of a name without a token succeeded")
	}
	if !strings.Contains(logs.String(), "bad: ") {
		t.Errorf("the log lacks the refused worker's lines:\n%s", logs)
	}

	// Close stops everything; the cluster starts nothing after that.
	c.Close()
	for _, p := range []*testcluster.Proc{c.Coordinator(), w3, bad} {
		select {
		case <-p.Done():
		default:
			t.Errorf("%s still runs after Close", p.Name)
		}
	}
	if _, err := c.StartWorker("w4", testcluster.WorkerOptions{}); err == nil {
		t.Error("StartWorker after Close succeeded")
	}
	c.Close() // again: nothing
}

func waitWorker(ctx context.Context, t *testing.T, cl *api.Client, name string) api.Worker {
	t.Helper()
	for {
		ws, err := cl.Workers(ctx)
		if err == nil {
			for _, w := range ws {
				if w.Name == name && w.Connected {
					return w
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("worker %s never connected (last error %v)", name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func jobLog(ctx context.Context, t *testing.T, cl *api.Client, jobID string) string {
	t.Helper()
	rc, err := cl.JobLog(ctx, jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, rc); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// failingTB is a test that has failed, recording what Start logs and
// registers for cleanup (Start's cleanup must run at its end, not the
// real test's).
type failingTB struct {
	testing.TB
	cleanups []func()
	logs     []string
}

func (f *failingTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *failingTB) Failed() bool      { return true }
func (f *failingTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func TestStartShowsStandardErrorOnFailure(t *testing.T) {
	testenv.Short(t)
	f := &failingTB{TB: t}
	c := testcluster.Start(f, testcluster.Options{})
	bad, err := c.StartWorker(testcluster.BadWorker, testcluster.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-bad.Done():
	case <-time.After(time.Minute):
		t.Fatal("worker with an unknown token kept running")
	}
	for _, fn := range slices.Backward(f.cleanups) {
		fn()
	}
	if got := strings.Join(f.logs, "\n"); !strings.Contains(got, "standard error") || !strings.Contains(got, "\nbad: ") {
		t.Errorf("a failed test's log lacks the processes' standard error:\n%s", got)
	}
	select {
	case <-c.Coordinator().Done():
	default:
		t.Error("the coordinator still runs after the test's cleanup")
	}
}
