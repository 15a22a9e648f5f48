package testcluster

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is one tryd process, started in its own process group.
type Proc struct {
	// Name is the process's name in the log ("coordinator", or the
	// worker's name).
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// startProc runs "tryd args..." in its own process group, with
// TRYD_LOG_LEVEL=logLevel, copying its standard error to log line by line,
// each line prefixed with name (so that the lines of several processes
// sharing one log stay apart).
func startProc(tryd, name, logLevel string, log io.Writer, args ...string) (*Proc, error) {
	cmd := exec.Command(tryd, args...)
	cmd.Env = append(os.Environ(), "TRYD_LOG_LEVEL="+logLevel)
	// Its own group, so that Kill also ends the processes it started
	// (a worker's git and jobs' processes left in its group).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("testcluster: start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testcluster: start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(log, "%s: %s\n", name, sc.Text())
		}
		// A line over 1 MiB stops the scanner; the rest is drained so
		// that the process never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		// Wait closes the pipe, so it may run only once the copy has
		// read everything.
		<-copied
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
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

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }
