// Package proc runs one command of a job as a real subprocess in its own
// process group, so that the whole tree it starts (shells, test binaries,
// their children) is killed together: on timeout, on cancellation, and,
// because a job must leave nothing behind, always once the command has
// exited.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// ErrTimeout is returned (wrapped) when a command was killed because its
// deadline passed; callers report it as a timeout, not a command failure.
var ErrTimeout = errors.New("timed out")

// ErrCanceled is returned (wrapped) when a command was killed because its
// context was cancelled for a reason other than a deadline.
var ErrCanceled = errors.New("canceled")

// Spec describes one process.
type Spec struct {
	// Argv is the program and its arguments; Argv[0] is looked up in the
	// PATH of Env (or of the worker when Env has no PATH).
	Argv []string
	// Env is the complete environment, KEY=VALUE.
	Env []string
	// Dir is the working directory; it must exist.
	Dir string
	// Output receives stdout and stderr, interleaved as written (both
	// are one pipe), from a single goroutine. Nil discards.
	Output io.Writer
	// Stdin is the command's standard input, typically a /dev/null
	// the caller keeps open for all its commands (nil: os/exec opens
	// /dev/null for each command).
	Stdin *os.File
	// Paths, if set, remembers where Argv[0] was found (see
	// PathCache); nil searches the PATH every time.
	Paths *PathCache
	// WaitDelay bounds how long Run keeps reading output after the
	// process group has been killed, for processes that escaped the
	// group but hold the output open (default 2s).
	WaitDelay time.Duration
}

// ExitError reports a command that ran and exited unsuccessfully.
type ExitError struct {
	// Code is the exit status, or -1 when killed by a signal.
	Code int
	// Signal names the signal that killed it, if any.
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Run starts the process in a new process group and waits for it. When ctx
// is done the whole group is sent SIGKILL and Run returns an error wrapping
// ErrTimeout (deadline) or ErrCanceled. After a normal exit the group is
// killed too, so background children do not outlive the command. A
// non-zero exit is an *ExitError; failing to start is any other error.
func Run(ctx context.Context, s Spec) error {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return errors.New("proc: empty argv")
	}
	path, err := lookPath(s.Paths, s.Argv[0], s.Env)
	if err != nil {
		return fmt.Errorf("proc: %w", err)
	}
	// One pipe for both streams keeps their interleaving, and because
	// the child gets an *os.File, cmd.Wait returns as soon as the leader
	// exits instead of waiting for every holder of the pipe; the group
	// is then killed and the copy drains.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("proc: pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        s.Argv,
		Env:         s.Env,
		Dir:         s.Dir,
		Stdout:      pw,
		Stderr:      pw,
		SysProcAttr: sysProcAttr(),
	}
	if s.Stdin != nil {
		// Handed to the child as is. (Left nil, as an interface, it
		// makes os/exec open /dev/null.)
		cmd.Stdin = s.Stdin
	}
	out := s.Output
	if out == nil {
		out = io.Discard
	}
	waitDelay := s.WaitDelay
	if waitDelay == 0 {
		waitDelay = 2 * time.Second
	}
	// Pdeathsig follows the OS thread that forked, not the process: keep
	// this goroutine on its thread until the command is done, so that
	// the Go runtime cannot retire the thread and kill the command early.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("proc: start %s: %w", s.Argv[0], err)
	}
	pw.Close()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, pr)
	}()
	pgid := cmd.Process.Pid
	// Wait here rather than in another goroutine: one goroutine and
	// one hand-off fewer per command. Cancellation kills the group,
	// which ends the wait.
	stop := context.AfterFunc(ctx, func() { killGroup(pgid) })
	werr := cmd.Wait()
	// Stopping fails once ctx is done: the group was (being) killed.
	killedByCtx := !stop()
	// Reap whatever the command left running in its group.
	killGroup(pgid)
	// A process that left the group (setsid) may still hold the pipe;
	// stop reading after waitDelay rather than hang.
	select {
	case <-copied:
	case <-time.After(waitDelay):
		pr.SetReadDeadline(time.Now())
		<-copied
	}
	pr.Close()
	if killedByCtx {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("proc: %s: %w", s.Argv[0], ErrTimeout)
		}
		return fmt.Errorf("proc: %s: %w", s.Argv[0], ErrCanceled)
	}
	if werr == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: -1, Signal: ws.Signal().String()}
		}
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("proc: wait %s: %w", s.Argv[0], werr)
}

// killGroup sends SIGKILL to every process in the group. ESRCH (the group
// is already empty) is expected and ignored.
func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
