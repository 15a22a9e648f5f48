// Package pgtest gives tests a PostgreSQL server and a fresh database per
// caller. In CI, .ci/run starts one server and exports its DSN in
// TRYD_TEST_POSTGRES (a database to connect to for CREATE DATABASE);
// without it, Start runs a throwaway server of its own from the
// PostgreSQL binaries (PATH, else /usr/lib/postgresql/*/bin): initdb into
// a temporary directory, pg_ctl start on a free 127.0.0.1 port, stopped
// and removed by the test's cleanup. As root, the server runs as the
// postgres user (initdb refuses root). Missing binaries skip the test
// locally and fail it under CI=true. Programs that are not tests
// (benchmarks) use BinDir and Launch directly.
//
// A package whose many tests each need a database shares one server
// (Shared, stopped by its TestMain) and gives each test a schema of its
// own (NewSchema): a schema costs a few milliseconds where a server costs
// seconds and a database a few hundred milliseconds.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// EnvDSN names the environment variable holding the DSN of a running
// server (set by .ci/run).
const EnvDSN = "TRYD_TEST_POSTGRES"

// Server is a PostgreSQL server a test may create databases on.
type Server struct {
	// DSN connects to the server's maintenance database.
	DSN string
}

// Start returns the CI server named by TRYD_TEST_POSTGRES, or starts a
// throwaway one that the test's cleanup stops.
func Start(t testing.TB) *Server {
	t.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return &Server{DSN: dsn}
	}
	bin, err := BinDir()
	if err != nil {
		fail(t, "%v, and %s is not set", err, EnvDSN)
	}
	srv, stop, err := Launch(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// Launch starts a throwaway server from the binaries in bin (see
// BinDir) in a new temporary directory; stop stops it and removes the
// directory. For programs (benchmarks) that are not tests.
func Launch(bin string) (srv *Server, stop func() error, err error) {
	dir, err := os.MkdirTemp("", "tryd-pg-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	data := filepath.Join(dir, "data")
	asUser := os.Geteuid() == 0
	if asUser {
		// initdb refuses to run as root: hand the directory to postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, nil, fmt.Errorf("pgtest: running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, nil, err
		}
	}
	run := func(name string, args ...string) error {
		p := filepath.Join(bin, name)
		var cmd *exec.Cmd
		if asUser {
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", p}, args...)...)
		} else {
			cmd = exec.Command(p, args...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("pgtest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	// fsync off: a test database need not survive power loss, and the
	// machine is shared. Sockets in the data directory, not /var/run.
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, data)
	if err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		return nil, nil, err
	}
	stop = func() error {
		defer os.RemoveAll(dir)
		return run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
	}
	return &Server{DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}, stop, nil
}

// NewDatabase creates an empty database on the server, dropped by the
// test's cleanup, and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "tryd_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.DSN)
		if err != nil {
			t.Errorf("pgtest: connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.DSN)
	if err != nil || u.Scheme == "" {
		t.Fatalf("pgtest: %s must be a postgres:// URL: %v", EnvDSN, err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewSchema creates an empty schema in the server's maintenance
// database, dropped by the test's cleanup, and returns a DSN whose
// search_path is that schema: a store opened on it creates and finds its
// tables there. Schemas of one database share its LISTEN/NOTIFY channels
// and advisory locks, so tests of several replicas use NewDatabase.
func (s *Server) NewSchema(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "tryd_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.DSN)
		if err != nil {
			t.Errorf("pgtest: connect to drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.DSN)
	if err != nil || u.Scheme == "" {
		t.Fatalf("pgtest: %s must be a postgres:// URL: %v", EnvDSN, err)
	}
	q := u.Query()
	// pgx sends parameters it does not know as run-time parameters.
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// Shared is one server for all the tests of a package: the first call of
// Server names the CI server or starts a throwaway one, later calls return
// it, and the package's TestMain calls Stop after m.Run. The zero value is
// ready to use; it is safe for concurrent use.
type Shared struct {
	mu      sync.Mutex
	tried   bool
	srv     *Server
	stop    func() error
	err     error // of the launch, repeated to every caller
	missing error // no binaries: skip locally, fail in CI
}

// Server returns the shared server, starting it on first use. Like
// Start, missing PostgreSQL skips the test locally and fails it under
// CI=true.
func (s *Shared) Server(t testing.TB) *Server {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tried {
		s.tried = true
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			s.srv = &Server{DSN: dsn}
		} else if bin, err := BinDir(); err != nil {
			s.missing = fmt.Errorf("%v, and %s is not set", err, EnvDSN)
		} else {
			s.srv, s.stop, s.err = Launch(bin)
		}
	}
	switch {
	case s.missing != nil:
		fail(t, "%v", s.missing)
	case s.err != nil:
		t.Fatal(s.err)
	}
	return s.srv
}

// Stop stops the server if Server started one.
func (s *Shared) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil {
		return nil
	}
	stop := s.stop
	s.stop = nil
	return stop()
}

// BinDir finds the directory of initdb and pg_ctl: PATH, else the newest
// /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("pgtest: PostgreSQL (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// fail skips locally and fails under CI, where .ci/run must provide
// PostgreSQL.
func fail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "pgtest: " + fmt.Sprintf(format, args...)
	if testenv.InCI() {
		t.Fatal(msg + " (CI=true: .ci/run must install and start PostgreSQL)")
	}
	t.Skip(msg)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
