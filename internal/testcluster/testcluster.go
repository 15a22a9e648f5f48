// Package testcluster runs a real build cluster from a tryd binary: a
// "tryd coordinator" process and "tryd worker" processes talking over
// HTTP on loopback, each in its own process group. It is the one such
// harness of the tree, serving the process-level tests (the worker's end
// to end, the trybot's, whose dependency rules forbid importing the
// coordinator or the worker themselves) and the scheduling benchmark.
//
// Its process layer is the tree's one way to run a tryd process for a
// test or a benchmark: StartProc starts one in its own process group and
// copies its standard error, line by line with its name in front, to a
// log; Proc.WaitHealthy waits for its /healthz; Proc stops it (SIGTERM,
// then SIGKILL to its group), kills it, or says when it exited and its
// process ID. The clusters below use it, and so do the coordinator
// replica harness (coordinator/replicatest) and the benchmark stack
// (bench/trystack), which start other processes than this package's.
// WriteTokens writes the token files of a coordinator and its workers
// (Tokens names them); Launch writes its own with it, and so does
// coordinator/replicatest for its replicas.
//
// It has two layers above that. The core, for any program, takes a
// context and returns errors: Launch writes the configuration and token files under
// Options.Dir, holds a loopback port for the coordinator (so that a test
// may kill it and StartCoordinator restarts it on the same address and
// data directory), and waits for /healthz; Cluster.StartWorker starts
// workers; Proc kills, stops or watches one process; Join starts workers
// against a coordinator someone else runs; Close stops them all. The
// testing layer, Start and StartWorker, takes a testing.TB: it fails the
// test on an error, stops the processes when the test ends, and shows
// their standard error in the test's log when the test fails.
//
// Callers make their client with the coordinator's client API from URL
// and ClientToken (this package, under internal/, may not import it). A
// test package using the testing layer calls testenv.Main from its
// TestMain (testenv.TrydBinary builds tryd once per test process;
// $TRYD_E2E_BIN names a prebuilt one).
package testcluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// testDrain is the drain of the workers the testing layer starts when
// WorkerOptions.Drain is unset: at a test's end they give their jobs back
// at once instead of letting them finish.
const testDrain = time.Millisecond

// Start launches a cluster for the test (see Launch) and returns once the
// coordinator answers /healthz and opts.Workers are started; it fails the
// test if it cannot. Unset Tryd and Dir default to testenv.TrydBinary and
// a t.TempDir(), and unset worker drains to 1ms. The processes stop when
// the test ends; if the test failed, their standard error is logged:
// what Options.Log holds when it has a String method (as testenv.Buffer
// has), or else what Start kept itself when Log is nil.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	opts = testOptions(t, opts)
	opts.Workers = append([]WorkerOptions(nil), opts.Workers...) // the caller's stay as they were
	for i := range opts.Workers {
		opts.Workers[i] = testWorker(opts.Workers[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Launch(ctx, opts)
	if err != nil {
		t.Fatalf("%v%s", err, logsOf(opts))
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("testcluster: the processes' standard error:%s", logsOf(opts))
		}
	})
	return c
}

// StartWorker starts "tryd worker" named name with token against the
// coordinator at coordinatorURL (any coordinator: one of Start's or one
// the test runs itself, see Join), in a t.TempDir(), and returns its
// process; it fails the test if it cannot. The worker stops when the test
// ends (with an unset Drain, giving its jobs back at once); if the test
// failed, its standard error is logged.
func StartWorker(t testing.TB, coordinatorURL, name, token string, o WorkerOptions) *Proc {
	t.Helper()
	opts := testOptions(t, Options{})
	c, err := Join(opts, coordinatorURL, map[string]string{name: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("testcluster: worker %s's standard error:%s", name, logsOf(opts))
		}
	})
	p, err := c.StartWorker(name, testWorker(o))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testOptions fills in the testing layer's defaults.
func testOptions(t testing.TB, opts Options) Options {
	t.Helper()
	if opts.Tryd == "" {
		opts.Tryd = testenv.TrydBinary(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Log == nil {
		opts.Log = &testenv.Buffer{}
	}
	return opts
}

func testWorker(o WorkerOptions) WorkerOptions {
	if o.Drain == 0 {
		o.Drain = testDrain
	}
	return o
}

// logsOf returns what opts.Log holds, on a line of its own, if it can be
// read back.
func logsOf(opts Options) string {
	if s, ok := opts.Log.(fmt.Stringer); ok && s.String() != "" {
		return "\n" + s.String()
	}
	return ""
}
