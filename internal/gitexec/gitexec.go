// Package gitexec runs git as a subprocess: the one place where tryd's
// packages that keep repositories (gitmirror, maintner/ingest, the
// simulators, worker/source) start git, so that every git command is
// bounded in time, killed with the helpers it starts, and fails with an
// error that names the subcommand and quotes what git printed.
//
// It owns no repository and no environment policy: callers say which git
// binary, which directory and which environment (what git may read from the
// host's configuration differs between a server's mirror and a simulator).
// It does give them one way to pass settings and secrets through that
// environment (ConfigEnv, BasicAuth, and Credential for the bearer tokens
// of a gitmirror with tokens), so that no secret is ever on a command
// line.
package gitexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// MaxStderr bounds how much of git's standard error an Error keeps: the
// first and the last MaxStderr/2 bytes, since git names what it was doing
// first and the reason it gave up ("fatal: ...") last.
const MaxStderr = 4096

// waitDelay is how long Run waits, after git itself exited or was killed,
// for helpers (git-remote-https, index-pack, ssh) that still hold its
// output open.
const waitDelay = 5 * time.Second

// Cmd is one git invocation. The zero value of each field but Args is
// usable.
type Cmd struct {
	// Git is the git binary; "" means "git" looked up in PATH.
	Git string
	// Dir is the working directory; "" means the current one.
	Dir string
	// Env is git's whole environment; nil means the process's own.
	Env []string
	// Args are git's arguments. There must be at least one, and none may
	// hold a NUL byte (no program can receive one).
	Args []string
	// Stdin is git's standard input; nil means none (/dev/null).
	Stdin io.Reader
	// Stdout receives git's standard output; nil discards it. Output
	// sets it.
	Stdout io.Writer
	// Timeout bounds the whole command; 0 means only ctx does.
	Timeout time.Duration
}

// Error is a failed git command. It says which subcommand failed and keeps
// what git printed on standard error; the arguments themselves are left
// out, as they may hold URLs with credentials.
type Error struct {
	// Verb is the git subcommand ("fetch", "rev-parse").
	Verb string
	// Err is exec's error (an *exec.ExitError for a non-zero exit),
	// wrapped together with the context's error when the context ended
	// the command.
	Err error
	// Stderr is git's standard error, trimmed and bounded by MaxStderr.
	Stderr string
	// TimedOut reports that Cmd.Timeout ran out (not the caller's
	// context): the command hung, which callers may treat as worth
	// another try.
	TimedOut bool
}

func (e *Error) Error() string {
	msg := "git " + e.Verb + ": "
	if e.TimedOut {
		msg += "timed out: "
	}
	msg += e.Err.Error()
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns git's exit status, or -1 if it did not exit by itself
// (it was killed, or never started).
func (e *Error) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// ExitCode returns the exit status of the git command that err comes
// from, or -1 if err is no *Error or git did not exit by itself. Commands
// that answer with their status (rev-parse --verify, merge-base
// --is-ancestor, merge-tree) are read with it.
func ExitCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.ExitCode()
	}
	return -1
}

// Run runs the command and waits for it. A failure is an *Error.
func (c Cmd) Run(ctx context.Context) error {
	verb, err := c.verb()
	if err != nil {
		return err
	}
	parent := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	git := c.Git
	if git == "" {
		git = "git"
	}
	cmd := exec.CommandContext(ctx, git, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	cmd.Stdin = c.Stdin
	cmd.Stdout = c.Stdout
	var stderr stderrBuffer
	cmd.Stderr = &stderr
	setProcessGroup(cmd)
	cmd.WaitDelay = waitDelay
	err = cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return &Error{
		Verb:     verb,
		Err:      err,
		Stderr:   strings.TrimSpace(stderr.String()),
		TimedOut: ctx.Err() == context.DeadlineExceeded && parent.Err() == nil,
	}
}

// Output runs the command and returns its standard output. On failure it
// returns what git wrote before it failed, with an *Error.
func (c Cmd) Output(ctx context.Context) ([]byte, error) {
	var out bytes.Buffer
	c.Stdout = &out
	err := c.Run(ctx)
	return out.Bytes(), err
}

// verb checks the arguments and returns the subcommand: the first argument
// after the global options that take a value (-C dir, -c name=value) and
// those that carry it (--git-dir=...).
func (c Cmd) verb() (string, error) {
	if len(c.Args) == 0 {
		return "", errors.New("gitexec: no git arguments")
	}
	for _, a := range c.Args {
		if strings.ContainsRune(a, 0) {
			return "", fmt.Errorf("gitexec: git %s: an argument holds a NUL byte", c.Args[0])
		}
	}
	for i := 0; i < len(c.Args); i++ {
		switch a := c.Args[i]; {
		case a == "-C" || a == "-c":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a, nil
		}
	}
	return c.Args[0], nil
}

// stderrBuffer keeps the first and the last MaxStderr/2 bytes written to
// it, so that a chatty git cannot grow an error without bound.
type stderrBuffer struct {
	head, tail []byte
	dropped    bool // bytes between head and tail were dropped
}

func (b *stderrBuffer) Write(p []byte) (int, error) {
	n := len(p)
	const half = MaxStderr / 2
	if room := half - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - half; over > 0 {
		b.tail = b.tail[:copy(b.tail, b.tail[over:])]
		b.dropped = true
	}
	return n, nil
}

func (b *stderrBuffer) String() string {
	if b.dropped {
		return string(b.head) + "\n…\n" + string(b.tail)
	}
	return string(b.head) + string(b.tail)
}
