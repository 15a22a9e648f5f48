package testcluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestStartProcRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testcluster.ProcOptions
		want string
	}{
		{"no binary", testcluster.ProcOptions{Name: "x"}, "Binary and ProcOptions.Name are required"},
		{"no name", testcluster.ProcOptions{Binary: "sh"}, "Binary and ProcOptions.Name are required"},
		{"missing binary", testcluster.ProcOptions{Binary: "/nonexistent/tryd", Name: "gone"}, "start gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := testcluster.StartProc(tc.opts)
			if err == nil {
				p.Kill()
				t.Fatal("StartProc succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StartProc: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestStartProc runs sh as the process: its standard error reaches the
// log prefixed with its name, its environment has ProcOptions.Env, its
// exit error is kept, and Stop, when SIGTERM does not end it all in time,
// kills what it left in its group.
func TestStartProc(t *testing.T) {
	sh := testenv.NeedTool(t, "sh")
	t.Run("log and environment", func(t *testing.T) {
		log := &testenv.Buffer{}
		p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "greeter", Log: log,
			Args: []string{"-c", `echo "hello $WHO" >&2; echo out; echo bye >&2`}, Env: []string{"WHO=world"}})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		if err := p.Err(); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if got, want := log.String(), "greeter: hello world\ngreeter: bye\n"; got != want {
			t.Errorf("log = %q, want %q", got, want)
		}
	})
	t.Run("standard output and working directory", func(t *testing.T) {
		dir, log, out := t.TempDir(), &testenv.Buffer{}, &testenv.Buffer{}
		p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "printer", Log: log, Stdout: out, Dir: dir,
			Args: []string{"-c", `pwd; echo err >&2; printf 'no newline'`}})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		if err := p.Err(); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if got, want := out.String(), dir+"\nno newline\n"; got != want {
			t.Errorf("standard output = %q, want %q", got, want)
		}
		if got, want := log.String(), "printer: err\n"; got != want {
			t.Errorf("log = %q, want %q", got, want)
		}
	})
	t.Run("signal", func(t *testing.T) {
		out := &testenv.Buffer{}
		p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "trapper", Stdout: out,
			Args: []string{"-c", `trap 'echo interrupted; exit 0' INT; echo ready; while :; do sleep 0.05; done`}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Kill)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "ready") {
			if time.Now().After(deadline) {
				t.Fatal("sh never printed ready")
			}
			time.Sleep(10 * time.Millisecond)
		}
		p.Signal(os.Interrupt)
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("sh did not exit after SIGINT")
		}
		if err := p.Err(); err != nil {
			t.Errorf("exit after SIGINT: %v, want a clean exit", err)
		}
		if got, want := out.String(), "ready\ninterrupted\n"; got != want {
			t.Errorf("standard output = %q, want %q", got, want)
		}
		p.Signal(os.Interrupt) // after the exit: nothing happens
	})
	t.Run("exit error", func(t *testing.T) {
		p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "failer", Args: []string{"-c", "exit 3"}})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		if err := p.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("Err: %v, want exit status 3", err)
		}
		if err := p.Stop(10 * time.Second); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("Stop after the exit: %v, want exit status 3", err)
		}
	})
	t.Run("kill ends the group", func(t *testing.T) {
		pidFile := t.TempDir() + "/child"
		p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "parent",
			Args: []string{"-c", `sleep 300 & echo $! > "$0"; wait`, pidFile}})
		if err != nil {
			t.Fatal(err)
		}
		child := waitPid(t, pidFile)
		// SIGTERM ends sh, not its child, which holds the standard
		// error open: Stop must kill the group after the timeout.
		if err := p.Stop(50 * time.Millisecond); err == nil {
			t.Error("Stop: nil exit error for a process ended by a signal")
		}
		// The child was in the group: it is gone, or dead and not yet
		// reaped by its new parent.
		deadline := time.Now().Add(10 * time.Second)
		for running(child) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d of the killed process still runs", child)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// running reports whether process pid runs (exists and is no zombie).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// Gone since kill(2) answered; another error: assume it runs.
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// waitPid reads the process ID the test's shell writes to file.
func waitPid(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", file)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWaitHealthy(t *testing.T) {
	sh := testenv.NeedTool(t, "sh")
	for _, tc := range []struct {
		name, url, script, want string
	}{
		{"no URL", "", "sleep 300", "serves no URL"},
		{"exits first", "http://" + testenv.ReservePort(t), "exit 2", "exited before it was healthy: exit status 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "server", URL: tc.url, Args: []string{"-c", tc.script}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Kill)
			err = p.WaitHealthy(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WaitHealthy: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("context ends", func(t *testing.T) {
		p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: sh, Name: "silent", URL: "http://" + testenv.ReservePort(t), Args: []string{"-c", "sleep 300"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Kill)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := p.WaitHealthy(ctx); err == nil || !strings.Contains(err.Error(), "not healthy") {
			t.Errorf("WaitHealthy: %v, want not healthy", err)
		}
	})
}
