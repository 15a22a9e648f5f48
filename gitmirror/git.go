package gitmirror

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// maxStderr bounds how much of git's standard error is kept for an error
// message.
const maxStderr = 4096

// gitCmd describes one git invocation.
type gitCmd struct {
	dir     string        // working directory ("" for none)
	timeout time.Duration // bound on the whole command
	stdin   io.Reader
	stdout  io.Writer
	env     []string // added to the cleaned environment
	args    []string
}

// gitError is a failed git command. Its message holds git's (redacted)
// standard error for logs and /debug; HTTP handlers never show it.
type gitError struct {
	args   string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("git %s: %v", e.args, e.err)
	}
	return fmt.Sprintf("git %s: %v: %s", e.args, e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// run runs git with a cleaned environment: GIT_* variables of the parent
// (GIT_TRACE*, GIT_DIR, ...) are dropped so that nothing changes what git
// does or prints, and prompts are disabled so git fails instead of
// waiting for a terminal. The whole process group is killed on timeout,
// so helpers (git-remote-https, index-pack, ssh) do not linger.
func (m *Mirror) run(ctx context.Context, c gitCmd) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.opts.Git, c.args...)
	cmd.Dir = c.dir
	cmd.Stdin = c.stdin
	cmd.Stdout = c.stdout
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	cmd.Env = append(m.baseEnv, c.env...)
	setProcessGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	verb := c.args[0]
	if len(c.args) > 1 && c.args[0] == "-C" {
		verb = c.args[2]
	}
	return &gitError{args: verb, err: err, stderr: redactURL(strings.TrimSpace(stderr.String()))}
}

// output runs git and returns its standard output.
func (m *Mirror) output(ctx context.Context, c gitCmd) ([]byte, error) {
	var out bytes.Buffer
	c.stdout = &out
	err := m.run(ctx, c)
	return out.Bytes(), err
}

// cleanEnv returns the process environment without GIT_* variables, plus
// settings that make git non-interactive.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
		// The mirrors are the only repositories gitmirror touches, and
		// never through a working tree.
		"GIT_CONFIG_NOSYSTEM=1",
	)
}

// limitedBuffer keeps the first maxStderr bytes written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxStderr - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.b.String() }
