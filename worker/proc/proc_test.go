package proc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestRun(t *testing.T) {
	sh := testenv.NeedTool(t, "sh")
	tests := []struct {
		name     string
		argv     []string
		env      []string
		wantOut  string
		wantCode int // -1: expect success
		wantErr  string
	}{
		{name: "success", argv: []string{sh, "-c", "echo hi; echo err >&2"}, wantOut: "hi\nerr\n", wantCode: -1},
		{name: "exit code", argv: []string{sh, "-c", "exit 7"}, wantCode: 7},
		{name: "env is exact", argv: []string{sh, "-c", "echo $FOO-$HOME"}, env: []string{"FOO=bar"}, wantOut: "bar-\n", wantCode: -1},
		{name: "path from env", argv: []string{"true"}, env: []string{"PATH=/usr/bin:/bin"}, wantCode: -1},
		{name: "not found", argv: []string{"no-such-program-xyz"}, env: []string{"PATH=/nonexistent"}, wantErr: "executable file not found"},
		{name: "empty argv", argv: nil, wantErr: "empty argv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(context.Background(), Spec{Argv: tt.argv, Env: tt.env, Dir: t.TempDir(), Output: &out})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if tt.wantCode == -1 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var ee *ExitError
				if !errors.As(err, &ee) || ee.Code != tt.wantCode {
					t.Fatalf("err = %v, want exit %d", err, tt.wantCode)
				}
			}
			if tt.wantOut != "" && out.String() != tt.wantOut {
				t.Errorf("output = %q, want %q", out.String(), tt.wantOut)
			}
		})
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func waitDead(t *testing.T, pidFile string) {
	t.Helper()
	var pid int
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(pidFile)
		if err == nil && len(strings.TrimSpace(string(b))) > 0 {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatalf("child never wrote its pid to %s", pidFile)
	}
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("grandchild %d still alive: process group was not killed", pid)
}

func TestKillsProcessTree(t *testing.T) {
	sh := testenv.NeedTool(t, "sh")
	testenv.NeedTool(t, "sleep")
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		script  string
		wantErr error
	}{
		{
			name: "timeout",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			script:  "sleep 60 & echo $! > pid; wait",
			wantErr: ErrTimeout,
		},
		{
			name: "cancel",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(300*time.Millisecond, cancel)
				return ctx, cancel
			},
			script:  "sleep 60 & echo $! > pid; wait",
			wantErr: ErrCanceled,
		},
		{
			name:   "background child after normal exit",
			ctx:    func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			script: "(sleep 60 > /dev/null 2>&1 &  echo $! > pid); exit 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			err := Run(ctx, Spec{Argv: []string{sh, "-c", tt.script}, Dir: dir, Output: &bytes.Buffer{}})
			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Run took %v", d)
			}
			waitDead(t, filepath.Join(dir, "pid"))
		})
	}
}

func TestHeldOutputDoesNotHang(t *testing.T) {
	sh := testenv.NeedTool(t, "sh")
	// The background child keeps stdout open; Run must not wait for it.
	var out bytes.Buffer
	start := time.Now()
	err := Run(context.Background(), Spec{Argv: []string{sh, "-c", "sleep 60 & echo started"}, Dir: t.TempDir(), Output: &out, WaitDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v", d)
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output = %q", out.String())
	}
}
