package gitexec

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestRun(t *testing.T) {
	testenv.NeedTool(t, "git")
	dir := t.TempDir()
	if err := (Cmd{Args: []string{"init", "--quiet", "--bare", dir}}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cmd        Cmd
		wantOut    string
		wantVerb   string // "" means success
		wantExit   int
		wantStderr string
	}{
		{"output", Cmd{Dir: dir, Args: []string{"hash-object", "--stdin"}, Stdin: strings.NewReader("hi\n")},
			"45b983be36b73c0788dc9cbcb76cbb80fc7bb057\n", "", 0, ""},
		{"env reaches git", Cmd{Dir: dir, Env: []string{"GIT_DIR=" + dir, "GIT_CONFIG_NOSYSTEM=1"}, Args: []string{"rev-parse", "--git-dir"}},
			dir + "\n", "", 0, ""},
		{"exit status and stderr", Cmd{Dir: dir, Args: []string{"rev-parse", "--verify", "nope"}},
			"", "rev-parse", 128, "fatal: Needed a single revision"},
		{"verb after -C", Cmd{Args: []string{"-C", dir, "-c", "core.x=1", "--no-pager", "cat-file", "-e", "deadbeef"}},
			"", "cat-file", 128, "fatal: Not a valid object name deadbeef"},
		{"verb after --git-dir", Cmd{Args: []string{"--git-dir=" + dir, "merge-base", "--is-ancestor", "HEAD", "HEAD"}},
			"", "merge-base", 128, "fatal: Not a valid object name HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.cmd.Output(context.Background())
			if tc.wantVerb == "" {
				if err != nil || string(out) != tc.wantOut {
					t.Fatalf("Output = %q, %v; want %q", out, err, tc.wantOut)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Output = %q, %v; want an *Error", out, err)
			}
			if e.Verb != tc.wantVerb || e.ExitCode() != tc.wantExit || ExitCode(err) != tc.wantExit || e.Stderr != tc.wantStderr || e.TimedOut {
				t.Errorf("error %+v (exit %d); want verb %q, exit %d, stderr %q", e, e.ExitCode(), tc.wantVerb, tc.wantExit, tc.wantStderr)
			}
			if want := "git " + tc.wantVerb + ": exit status 128: " + tc.wantStderr; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
		})
	}
}

func TestBadArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"NUL byte", []string{"rev-parse", "a\x00b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Cmd{Git: "/nonexistent/git", Args: tc.args}.Run(context.Background())
			var e *Error
			if err == nil || errors.As(err, &e) || !strings.HasPrefix(err.Error(), "gitexec: ") {
				t.Errorf("Run = %v, want a gitexec: error before running anything", err)
			}
		})
	}
}

// TestTimeout checks that the timeout kills git together with what it
// started: the shell alias's sleep holds standard output open, so Run
// returns well before waitDelay only if the whole group was killed.
func TestTimeout(t *testing.T) {
	testenv.NeedTool(t, "git")
	sleeper := func(timeout time.Duration) Cmd {
		return Cmd{Args: []string{"-c", "alias.nap=!sleep 30", "nap"}, Stdout: new(bytes.Buffer), Timeout: timeout}
	}
	tests := []struct {
		name         string
		timeout      time.Duration
		cancel       bool
		wantTimedOut bool
		wantCause    error
	}{
		{"own timeout", 200 * time.Millisecond, false, true, context.DeadlineExceeded},
		{"caller cancels", 0, true, false, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			start := time.Now()
			err := sleeper(tc.timeout).Run(ctx)
			if d := time.Since(start); d > waitDelay-time.Second {
				t.Errorf("Run took %v: the sleeping child outlived git", d)
			}
			var e *Error
			if !errors.As(err, &e) || e.TimedOut != tc.wantTimedOut || !errors.Is(err, tc.wantCause) || e.ExitCode() != -1 || e.Verb != "nap" {
				t.Errorf("Run = %#v, want TimedOut %v wrapping %v, exit -1", err, tc.wantTimedOut, tc.wantCause)
			}
			if tc.wantTimedOut != strings.Contains(err.Error(), "timed out") {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestStderrBuffer(t *testing.T) {
	const half = MaxStderr / 2
	long := strings.Repeat("a", half) + strings.Repeat("b", 100) + strings.Repeat("c", half)
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"empty", nil, ""},
		{"short", []string{"fatal: ", "no\n"}, "fatal: no\n"},
		{"exactly the bound", []string{long[:MaxStderr]}, long[:MaxStderr]},
		{"middle dropped, one write", []string{long}, strings.Repeat("a", half) + "\n…\n" + strings.Repeat("c", half)},
		{"middle dropped, many writes", strings.SplitAfter(long, "b"), strings.Repeat("a", half) + "\n…\n" + strings.Repeat("c", half)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b stderrBuffer
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := b.String(); got != tc.want {
				t.Errorf("String = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzStderrBuffer checks the bound and that nothing is lost below it.
func FuzzStderrBuffer(f *testing.F) {
	f.Add([]byte("fatal: x"), 3)
	f.Add(bytes.Repeat([]byte("y"), 3*MaxStderr), 1000)
	f.Fuzz(func(t *testing.T, data []byte, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		var b stderrBuffer
		for p := data; len(p) > 0; {
			k := min(chunk, len(p))
			b.Write(p[:k])
			p = p[k:]
		}
		got := b.String()
		if len(data) <= MaxStderr && got != string(data) {
			t.Fatalf("lost bytes: %q from %q", got, data)
		}
		if len(got) > MaxStderr+len("\n…\n") {
			t.Fatalf("kept %d bytes", len(got))
		}
	})
}

// TestConfigEnv checks that git sees the settings ConfigEnv passes.
func TestConfigEnv(t *testing.T) {
	testenv.NeedTool(t, "git")
	tests := []struct {
		name string
		cs   []Config
		want string
	}{
		{"none", nil, ""},
		{"one", []Config{{Key: "tryd.a", Value: "1"}}, "tryd.a=1\n"},
		{"several, with a space and a colon", []Config{{Key: "tryd.a", Value: "x y"}, {Key: "http.https://h:1/.extraHeader", Value: "K: v"}},
			"tryd.a=x y\nhttp.https://h:1/.extraheader=K: v\n"},
		{"basic auth", []Config{BasicAuth("u", "p:w")}, "http.extraheader=Authorization: Basic dTpwOnc=\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME=" + t.TempDir()}, ConfigEnv(tc.cs...)...)
			out, err := Cmd{Dir: t.TempDir(), Env: env, Args: []string{"config", "--list", "--includes"}}.Output(context.Background())
			if err != nil && len(tc.cs) > 0 {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("git config --list = %q, want %q", out, tc.want)
			}
		})
	}
}
