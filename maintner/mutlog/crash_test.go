package mutlog

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv, when set, makes the test binary act as the appender process
// of TestKill9 instead of running tests.
const helperEnv = "TRYD_MUTLOG_CRASH_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(crashHelper(spec))
	}
	os.Exit(m.Run())
}

// crashHelper appends from 16 goroutines forever, printing the name of
// every payload whose Append returned, until it is killed.
func crashHelper(spec string) int {
	dir, round, _ := strings.Cut(spec, "|")
	st, err := NewDiskStore(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	l, err := Open(context.Background(), Options{Store: st, MaxSegmentSize: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	for w := range 16 {
		go func() {
			for i := 0; ; i++ {
				name := fmt.Sprintf("r%s-w%d-%d", round, w, i)
				if _, err := l.Append(context.Background(), []byte(name+strings.Repeat(".", 200+i%300))); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(out, name) // acknowledged: must survive
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestKill9 kills a process that appends heavily and checks that every
// acknowledged mutation is in the log after reopening, several times over.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	acked := map[string]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", helperEnv, dir, round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			if sc.Text() == "ready" {
				continue
			}
			acked[sc.Text()] = true
			n++
			if n == 1500+round*500 {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		deadline.Stop()
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: helper did not die of SIGKILL: %v (after %d acks)", round, err, n)
		}
		st, _ := NewDiskStore(dir)
		l, err := Open(context.Background(), Options{Store: st, MaxSegmentSize: 64 << 10})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		seen := map[string]bool{}
		if err := l.ForEach(context.Background(), Position{}, func(_ Position, p []byte) error {
			name, _, _ := strings.Cut(string(p), ".")
			if seen[name] {
				return fmt.Errorf("payload %s appears twice", name)
			}
			seen[name] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		segs := len(l.Segments())
		l.Close()
		missing := 0
		for name := range acked {
			if !seen[name] {
				missing++
				if missing < 5 {
					t.Errorf("round %d: acknowledged %s is missing", round, name)
				}
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged mutations lost", round, missing, len(acked))
		}
		t.Logf("round %d: %d acknowledged, %d in log, %d segments", round, len(acked), len(seen), segs)
	}
}
