package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// HealthTimeout is how long Proc.WaitHealthy waits at most for a process
// to answer /healthz: long enough for a coordinator to migrate its
// database on a loaded machine.
const HealthTimeout = 60 * time.Second

// ProcOptions say how StartProc runs one process. Binary and Name are
// required; the zero value of every other field is usable.
type ProcOptions struct {
	// Binary is the program to run: a tryd binary for every caller in
	// the tree.
	Binary string
	// Name names the process in the log and in errors: "coordinator",
	// a worker's name, "gitmirror".
	Name string
	// Args are the program's arguments (for tryd, the subcommand first).
	Args []string
	// Env is added to this process's environment (KEY=VALUE; an entry
	// here wins over the inherited one): e.g. TRYD_LOG_LEVEL=warn, or a
	// DSN that must not appear in the arguments.
	Env []string
	// Log receives the process's standard error line by line, each line
	// prefixed with "Name: " (so that the lines of several processes
	// sharing one log stay apart); nil discards it. Writes to Log come
	// from one goroutine per process: a Log shared by several processes
	// must be safe for concurrent use (testenv.Buffer, os.Stderr).
	Log io.Writer
	// Stdout receives the process's standard output line by line,
	// unprefixed, one line (with its newline) per Write, from one
	// goroutine per process; nil discards it. A test that waits for what
	// a program prints (tryd dev's "tryd dev is running") reads it here.
	Stdout io.Writer
	// Dir is the process's working directory; empty means this
	// process's.
	Dir string
	// URL is the base URL the process serves HTTP at ("http://" and its
	// --listen address), which WaitHealthy polls; empty for a process
	// that serves none (a worker).
	URL string
}

// Proc is one process StartProc started, in its own process group.
type Proc struct {
	// Name is the process's name in the log (ProcOptions.Name).
	Name string
	// URL is its base URL (ProcOptions.URL; empty if it serves none).
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// StartProc runs o.Binary with o.Args in its own process group, with
// o.Env added to the environment, copying its standard error to o.Log.
// Its standard output goes to o.Stdout. It returns once the process runs;
// WaitHealthy waits until it serves. The caller must end it (Stop or
// Kill), which also ends what it left in its group.
func StartProc(o ProcOptions) (*Proc, error) {
	if o.Binary == "" || o.Name == "" {
		return nil, errors.New("testcluster: ProcOptions.Binary and ProcOptions.Name are required")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	cmd := exec.Command(o.Binary, o.Args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Dir = o.Dir
	// Its own group, so that Kill also ends the processes it started
	// (a worker's git and jobs' processes left in its group).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("testcluster: start %s: %w", o.Name, err)
	}
	var stdout io.Reader
	if o.Stdout == nil {
		cmd.Stdout = io.Discard
	} else if stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, fmt.Errorf("testcluster: start %s: %w", o.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testcluster: start %s: %w", o.Name, err)
	}
	p := &Proc{Name: o.Name, URL: o.URL, cmd: cmd, done: make(chan struct{})}
	var copies sync.WaitGroup
	copies.Go(func() { copyLines(o.Log, o.Name+": ", stderr) })
	if stdout != nil {
		copies.Go(func() { copyLines(o.Stdout, "", stdout) })
	}
	go func() {
		// Wait closes the pipes, so it may run only once the copies
		// have read everything; done is closed after the last line is
		// written, so that a caller that saw the process exit has its
		// whole output.
		copies.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// copyLines writes each line read from r to w with prefix in front, one
// Write a line.
func copyLines(w io.Writer, prefix string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(w, "%s%s\n", prefix, sc.Text())
	}
	// A line over 1 MiB stops the scanner; the rest is drained so that
	// the process never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// WaitHealthy waits until the process's /healthz (at URL) answers 200
// OK, polling every 20 ms for at most HealthTimeout or until ctx ends. It
// fails at once if the process exits first, with its exit error.
func (p *Proc) WaitHealthy(ctx context.Context) error {
	if p.URL == "" {
		return fmt.Errorf("testcluster: %s serves no URL to check", p.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, HealthTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		err := healthy(ctx, hc, p.URL)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("testcluster: %s exited before it was healthy: %v", p.Name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("testcluster: %s at %s not healthy: %w (last: %v)", p.Name, p.URL, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// healthy asks url's /healthz once.
func healthy(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// Kill sends SIGKILL to the process's whole group and waits for it to
// exit. It does nothing once the process has exited (its ID may belong to
// another process by then).
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM to the process (which stops its own children in
// order) and waits up to timeout for it to exit, killing its group after
// that; a timeout of 0 or less kills it at once. It returns the exit
// error.
func (p *Proc) Stop(timeout time.Duration) error {
	if timeout <= 0 {
		p.Kill()
		return p.err
	}
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
	}
	return p.err
}

// Signal sends sig to the process alone (not its group), e.g.
// os.Interrupt to stop "tryd dev" as Ctrl-C does. It does nothing once
// the process has exited.
func (p *Proc) Signal(sig os.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed (nil for a
// clean exit).
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Pid returns the process ID (that of its group too), e.g. to read its
// CPU time from /proc.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }
