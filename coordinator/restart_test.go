package coordinator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// childEnv makes the test binary run a coordinator instead of the tests,
// so that a test can kill -9 a real coordinator process; childBackendEnv
// and childDBEnv name its backend and database.
const (
	childEnv        = "TRYD_COORDINATOR_TEST_CHILD"
	childBackendEnv = "TRYD_COORDINATOR_TEST_BACKEND"
	childDBEnv      = "TRYD_COORDINATOR_TEST_DB"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := runChild(dir, os.Getenv(childBackendEnv), os.Getenv(childDBEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "child coordinator:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if err := sharedPG.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// runChild serves a coordinator on loopback with its state in the
// database db of the named backend and its files in dir, and writes its
// URL to dir/url.
func runChild(dir, backendName, db string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	be, ok := backendNamed(backendName)
	if !ok {
		return fmt.Errorf("unknown backend %q", backendName)
	}
	store, err := be.open(ctx, db)
	if err != nil {
		return err
	}
	defer store.Close()
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(dir, "artifacts")})
	if err != nil {
		return err
	}
	c, err := New(ctx, Options{
		Store: store, Artifacts: arts, Dir: dir,
		WorkerTokens: map[string]string{"w1": tokenW1, "w2": tokenW2}, ClientToken: clientToken,
		PollTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	srv, err := httpserver.New(httpserver.Options{Handler: c.Handler(), Component: "coordinator"})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "url.tmp"), []byte(srv.URL()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "url.tmp"), filepath.Join(dir, "url")); err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// startChild starts a coordinator process on dir and db and returns its
// URL.
func startChild(t *testing.T, be backend, dir, db string) (*exec.Cmd, string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "url"))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childBackendEnv+"="+be.name, childDBEnv+"="+db)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "url")); err == nil {
			return cmd, string(b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("child coordinator did not start")
	return nil, ""
}

// waitAttempts waits until the child's database records n attempts of
// the build.
func waitAttempts(t *testing.T, be backend, db string, buildID int64, n int) {
	t.Helper()
	store := be.openDB(t, db)
	defer store.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		atts, err := store.Attempts(context.Background(), buildID)
		got := len(atts)
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempts in the database: %d, %v; want %d", got, err, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKill9MidBuildLosesNothing(t *testing.T) { forEachBackend(t, testKill9MidBuildLosesNothing) }

func testKill9MidBuildLosesNothing(t *testing.T, be backend) {
	testenv.Short(t)
	dir, db := t.TempDir(), be.newDB(t)
	cmd, url := startChild(t, be, dir, db)
	e := &env{t: t, url: url}
	e.client, _ = api.NewClient(url, clientToken, nil)
	sub := e.submit(chainGraph, api.PriorityTry)
	w := newTestWorker(t, e, "w1", tokenW1, nil)

	// gen runs and its result is acknowledged (hence durable).
	r := w.mustPoll(4, nil)
	if len(r.Assignments) != 1 || r.Assignments[0].Job.Name != "gen" {
		t.Fatalf("first poll: %+v", r.Assignments)
	}
	w.mustPoll(0, nil, w.output(r.Assignments[0]))
	// build and vet start; the coordinator dies while they run.
	r = w.mustPoll(4, nil)
	if len(r.Assignments) != 2 {
		t.Fatalf("second poll: %+v", r.Assignments)
	}
	running := map[string]api.Assignment{}
	for _, as := range r.Assignments {
		running[as.Job.Name] = as
	}
	// Assignments are committed right after they are answered: wait
	// until they are in the database, so that this test checks their
	// adoption (a crash inside that window reruns the job instead).
	waitAttempts(t, be, db, sub.BuildID, 3)
	// A second build submitted just before the crash must survive too.
	sub2 := e.submit(`{"jobs": [{"name": "late", "source_mode": "none", "commands": [{"argv": ["late"]}]}]}`, api.PriorityTry)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	_, url = startChild(t, be, dir, db)
	e.url = url
	e.client, _ = api.NewClient(url, clientToken, nil)
	w.c, _ = api.NewClient(url, tokenW1, nil)
	// The old session is gone: the worker registers again, still running
	// build; it lost vet (say its process died with the machine's load).
	if _, err := w.poll(4, []string{running["build"].AttemptID, running["vet"].AttemptID}); !errors.Is(err, api.ErrUnknownWorker) {
		t.Fatalf("poll with the old session = %v, want ErrUnknownWorker", err)
	}
	w.register([]string{running["build"].AttemptID})
	w.mustPoll(0, []string{running["build"].AttemptID}, w.output(running["build"]))
	order := w.drain(e, sub.BuildID, nil)
	b := e.build(sub.BuildID)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build after restart: %s %v (ran %v)", b.State, b.Counts, order)
	}
	got := "," + strings.Join(order, ",") + ","
	if strings.Contains(got, ",gen,") || strings.Contains(got, ",build,") || !strings.Contains(got, ",vet,") || !strings.Contains(got, ",test,") {
		t.Errorf("after restart ran %v; want vet and test, and no repeat of gen or build", order)
	}
	if j := jobByName(b, "gen"); len(j.Attempts) != 1 {
		t.Errorf("gen attempts: %+v", j.Attempts)
	}
	if j := jobByName(b, "build"); len(j.Attempts) != 1 || j.Attempts[0].State != api.AttemptSucceeded {
		t.Errorf("build attempts (adopted across the restart): %+v", j.Attempts)
	}
	if j := jobByName(b, "vet"); len(j.Attempts) != 2 || j.Attempts[0].State != api.AttemptLost {
		t.Errorf("vet attempts: %+v", j.Attempts)
	}
	if b2 := e.build(sub2.BuildID); b2.State != api.BuildSucceeded {
		w.drain(e, sub2.BuildID, nil)
		if b2 := e.build(sub2.BuildID); b2.State != api.BuildSucceeded {
			t.Errorf("build submitted before the crash: %s", b2.State)
		}
	}
}
