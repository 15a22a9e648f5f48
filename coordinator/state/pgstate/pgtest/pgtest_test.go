package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperEnv makes the test binary a program that launches a server,
// prints "DIR DSN" and waits to be killed (TestKilledOwnerLeavesNoServer).
const helperEnv = "PGTEST_HELPER_LAUNCH"

func TestMain(m *testing.M) {
	if bin := os.Getenv(helperEnv); bin != "" {
		srv, dir, _, err := launch(bin, os.TempDir(), false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(dir, srv.DSN)
		time.Sleep(10 * time.Minute)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func binDir(t *testing.T) string {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		fail(t, "%v", err)
	}
	return bin
}

// postmasterPID reads the server's PID from its data directory.
func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	return pid
}

func ping(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// awaitGone waits for process pid to exit.
func awaitGone(pid int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if processStart(pid) == "" {
			return true
		}
	}
	return false
}

// TestKilledOwnerLeavesNoServer: a process that launched a server and is
// killed with SIGKILL (no cleanup runs) takes its server with it, and
// the next reap removes its directory.
func TestKilledOwnerLeavesNoServer(t *testing.T) {
	bin := binDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+bin)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(2 * time.Minute):
		t.Fatal("helper launched no server in 2 minutes")
	}
	dir, dsn, ok := strings.Cut(strings.TrimSpace(l), " ")
	if !ok || !strings.HasPrefix(filepath.Base(dir), dirPrefix) {
		t.Fatalf("helper printed %q, want DIR DSN", l)
	}
	pid := postmasterPID(t, dir)
	t.Cleanup(func() {
		// Only if the test failed with the server alive.
		if processStart(pid) != "" && isPostmaster(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		os.RemoveAll(dir)
	})
	if err := ping(dsn); err != nil {
		t.Fatalf("helper's server: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !awaitGone(pid, 20*time.Second) {
		t.Fatalf("postmaster %d still runs 20s after its owner was killed", pid)
	}
	if err := ping(dsn); err == nil {
		t.Fatal("the killed owner's server still answers")
	}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		// Another process's Launch (a test package running beside
		// this one) reaped it already.
		t.Logf("server directory %s already reaped", dir)
		return
	} else if err != nil {
		t.Fatalf("server directory: %v (expected to be left for the reaper)", err)
	}
	reapOrphans(os.TempDir(), time.Now())
	// (Another process's Launch may have reaped it first.)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("orphaned %s not removed: %v", dir, err)
	}
}

// TestReapOrphans: a server whose directory names a live owner is left
// alone; once the owner is gone (here: a reused PID, the start time
// differs) the server is stopped and its directory removed; directories
// without an owner file are removed once old.
func TestReapOrphans(t *testing.T) {
	bin := binDir(t)
	srv, dir, stop, err := launch(bin, os.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	pid := postmasterPID(t, dir)

	reapOrphans(os.TempDir(), time.Now())
	if err := ping(srv.DSN); err != nil {
		t.Fatalf("server of a live owner after a reap: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("directory of a live owner after a reap: %v", err)
	}

	// The owner's PID now names another process.
	owner := filepath.Join(dir, ownerFile)
	if err := os.WriteFile(owner, fmt.Appendf(nil, "%d not-this-start\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
	reapOrphans(os.TempDir(), time.Now())
	if !awaitGone(pid, 20*time.Second) {
		t.Fatalf("orphaned server %d still runs after a reap", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("orphaned %s not removed: %v", dir, err)
	}

	tests := []struct {
		name string
		age  time.Duration
		reap bool
	}{
		{"fresh without owner", time.Minute, false},
		{"old without owner", ownerlessAge + time.Minute, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := os.MkdirTemp(os.TempDir(), dirPrefix)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			when := time.Now().Add(-tc.age)
			if err := os.Chtimes(d, when, when); err != nil {
				t.Fatal(err)
			}
			reapOrphans(os.TempDir(), time.Now())
			_, err = os.Stat(d)
			if gone := os.IsNotExist(err); gone != tc.reap {
				t.Errorf("removed = %v, want %v", gone, tc.reap)
			}
		})
	}
}

// TestStopStart: a server of the test's own stops (either mode) and
// starts again on the same port, keeping every acknowledged commit, and
// TerminateBackends ends the sessions of a database.
func TestStopStart(t *testing.T) {
	srv := StartOwn(t)
	dsn := srv.NewDatabase(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (n INT)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	tests := []struct {
		name string
		mode ShutdownMode
	}{
		{"fast", Fast},
		{"immediate", Immediate},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(ctx, `INSERT INTO t VALUES ($1)`, i); err != nil {
				t.Fatal(err)
			}
			if err := srv.Stop(tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := ping(dsn); err == nil {
				t.Fatal("a stopped server answers")
			}
			if err := conn.Ping(ctx); err == nil {
				t.Fatal("a session survived the stop")
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err == nil {
				t.Error("Start of a running server succeeded")
			}
			c2, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close(context.Background())
			var n int
			if err := c2.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != i+1 {
				t.Errorf("rows after restart: %d, %v; want %d", n, err, i+1)
			}
		})
	}

	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// At least conn's session; those of the connections closed above
	// may not have exited yet.
	n, err := srv.TerminateBackends(ctx, conn.Config().Database)
	if err != nil || n < 1 {
		t.Fatalf("TerminateBackends = %d, %v; want at least 1", n, err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a terminated session still answers")
	}

	if err := (&Server{DSN: dsn}).Stop(Fast); err == nil {
		t.Error("Stop of a server not launched here succeeded")
	}
}
