package gitmirror

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/gitexec"
)

// gitCmd describes one git invocation.
type gitCmd struct {
	dir     string        // working directory ("" for none)
	timeout time.Duration // bound on the whole command
	stdin   io.Reader
	stdout  io.Writer
	env     []string // added to the cleaned environment
	args    []string
}

// run runs git with a cleaned environment: GIT_* variables of the parent
// (GIT_TRACE*, GIT_DIR, ...) are dropped so that nothing changes what git
// does or prints, and prompts are disabled so git fails instead of
// waiting for a terminal. gitexec kills the whole process group on
// timeout, so helpers (git-remote-https, index-pack, ssh) do not linger.
// The error's copy of git's standard error is redacted: it goes to logs
// and /debug (HTTP handlers never show it).
func (m *Mirror) run(ctx context.Context, c gitCmd) error {
	err := gitexec.Cmd{
		Git:     m.opts.Git,
		Dir:     c.dir,
		Env:     slices.Concat(m.baseEnv, c.env),
		Args:    c.args,
		Stdin:   c.stdin,
		Stdout:  c.stdout,
		Timeout: c.timeout,
	}.Run(ctx)
	var ge *gitexec.Error
	if errors.As(err, &ge) {
		ge.Stderr = redactURL(ge.Stderr)
	}
	return err
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
