// Package pgtest gives tests a PostgreSQL server and a fresh database per
// caller. In CI, .ci/run starts one server and exports its DSN in
// TRYD_TEST_POSTGRES (a database to connect to for CREATE DATABASE);
// without it, Start runs a throwaway server of its own from the
// PostgreSQL binaries (PATH, else /usr/lib/postgresql/*/bin): initdb into
// a temporary directory, postgres on a free 127.0.0.1 port, stopped and
// removed by the test's cleanup, and never left running by a killed test
// process (see Launch). As root, the server runs as the postgres user
// (initdb refuses root). Missing binaries skip the test
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
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// own is the server's process if this process launched it (nil for
	// the CI server).
	own *postmaster
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
	return startLaunched(t, bin, false)
}

// StartOwn starts a throwaway server of the test's own, even in CI, for
// a test that stops and starts it (Stop, Start): a database outage. It
// acknowledges a commit only once its WAL is written, so that nothing
// acknowledged is lost by a stop, even an immediate one.
func StartOwn(t testing.TB) *Server {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		fail(t, "%v", err)
	}
	return startLaunched(t, bin, true)
}

// startLaunched launches a server (see launchRetrying) that t's cleanup
// stops.
func startLaunched(t testing.TB, bin string, durable bool) *Server {
	t.Helper()
	srv, stop, err := launchRetrying(bin, durable)
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

// ShutdownMode is how Stop shuts a server down (PostgreSQL's shutdown
// modes, as pg_ctl stop -m names them).
type ShutdownMode int

const (
	// Fast shutdown (SIGINT): the server ends every session, writes a
	// checkpoint and exits, as an operator's restart does.
	Fast ShutdownMode = iota
	// Immediate shutdown (SIGQUIT): the server exits at once and
	// recovers from its WAL at the next start, as after a crash.
	Immediate
)

// Stop shuts the server down; Start starts it again on the same data
// directory and port. Only a server this process launched (StartOwn,
// Launch) can be stopped; stopping a stopped server does nothing.
func (s *Server) Stop(mode ShutdownMode) error {
	if s.own == nil {
		return errors.New("pgtest: Stop: the server was not launched by this process")
	}
	sig := syscall.SIGINT
	if mode == Immediate {
		sig = syscall.SIGQUIT
	}
	return s.own.stop(sig)
}

// Start starts a server that Stop stopped, on the same data directory
// and port, and waits until it accepts connections. It fails if another
// program took the port meanwhile.
func (s *Server) Start() error {
	if s.own == nil {
		return errors.New("pgtest: Start: the server was not launched by this process")
	}
	return s.own.start()
}

// TerminateBackends ends every session connected to database (with
// pg_terminate_backend, as an operator or a connection-killing proxy
// does) and returns how many there were. It returns once their
// processes have exited (up to 10s each; PostgreSQL 14 or later), so
// that their clients' sockets already show the end.
func (s *Server) TerminateBackends(ctx context.Context, database string) (int, error) {
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return 0, fmt.Errorf("pgtest: terminate backends: %w", err)
	}
	defer conn.Close(ctx)
	var n int
	// FILTER runs the function only on the rows WHERE keeps.
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, database).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgtest: terminate backends of %s: %w", database, err)
	}
	return n, nil
}

// Launch starts a throwaway server from the binaries in bin (see
// BinDir) in a new temporary directory, os.TempDir()/tryd-pg-*; stop
// stops it and removes the directory. For programs (benchmarks) that are
// not tests.
//
// A server never outlives its process for long, even one killed before
// stop runs (test timeout, Ctrl-C, kill -9): on Linux the postmaster is a
// child that the kernel shuts down when the process ends (Pdeathsig),
// and the directory records its owner (PID and start time), so the next
// Launch on the machine stops any server still running there
// (immediate shutdown) and removes the directories of owners that are
// gone (reapOrphans).
func Launch(bin string) (srv *Server, stop func() error, err error) {
	return launchRetrying(bin, false)
}

// launchRetrying is Launch, of a durable server if durable (see
// postmaster.durable).
func launchRetrying(bin string, durable bool) (srv *Server, stop func() error, err error) {
	tmp := os.TempDir()
	reapOrphans(tmp, time.Now())
	// A port picked free may be taken before the server binds it (other
	// tests run on the machine): try another.
	for try := 1; ; try++ {
		srv, _, stop, err = launch(bin, tmp, durable)
		if err == nil || !errors.Is(err, errPortTaken) || try == 3 {
			return srv, stop, err
		}
	}
}

// dirPrefix names the directories Launch creates (and reapOrphans
// removes) in the temporary directory.
const dirPrefix = "tryd-pg-"

// ownerFile, in a server's directory, holds "PID START" of the process
// that launched it (see processStart).
const ownerFile = "owner"

// errPortTaken is a server failing to bind the port it was given.
var errPortTaken = errors.New("pgtest: port taken")

// launch is one try of Launch; dir is the server's directory.
func launch(bin, tmp string, durable bool) (srv *Server, dir string, stop func() error, err error) {
	dir, err = os.MkdirTemp(tmp, dirPrefix)
	if err != nil {
		return nil, "", nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// First of all, so that no other Launch mistakes the directory for
	// an orphan.
	self := os.Getpid()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %s\n", self, processStart(self)), 0o644); err != nil {
		return nil, "", nil, fmt.Errorf("pgtest: %w", err)
	}
	p := &postmaster{bin: bin, dir: dir, data: filepath.Join(dir, "data"), durable: durable}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: hand the directory to postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, "", nil, fmt.Errorf("pgtest: running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, "", nil, err
		}
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", p.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	// The server's user may not enter the caller's directory.
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, "", nil, fmt.Errorf("pgtest: initdb -D %s: %v\n%s", p.data, err, out)
	}
	if p.port, err = freePort(); err != nil {
		return nil, "", nil, err
	}
	if err := p.start(); err != nil {
		return nil, "", nil, err
	}
	stop = func() error {
		defer os.RemoveAll(dir)
		return p.stop(syscall.SIGQUIT)
	}
	return &Server{DSN: p.dsn(), own: p}, dir, stop, nil
}

// postmaster is a server this process launched: its data directory and
// port, and the running process, if any.
type postmaster struct {
	bin, dir, data string
	port           int
	cred           *syscall.Credential // the postgres user's, when run as root

	// durable servers acknowledge a commit once its WAL is written
	// (synchronous_commit on), so that they may be stopped and started
	// again without losing one.
	durable bool

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has exited
}

func (p *postmaster) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// start runs the postmaster on p's data directory and port, and waits
// until it accepts connections.
func (p *postmaster) start() error {
	p.mu.Lock()
	running := p.cmd != nil
	p.mu.Unlock()
	if running {
		return errors.New("pgtest: server already running")
	}
	logPath := filepath.Join(p.dir, "log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	// The postmaster runs in the foreground as this process's child (not
	// daemonized by pg_ctl), so that it can die with it. fsync off: a
	// test database need not survive power loss, and the machine is
	// shared. Sockets in the data directory, not /var/run.
	args := []string{"-D", p.data, "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-k", p.data,
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"}
	if !p.durable {
		// Commits acknowledged before their WAL is written: lost if
		// the server stops (immediate shutdown) within ~0.6s.
		args = append(args, "-c", "synchronous_commit=off")
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = serverAttr(p.cred)
	exited := make(chan struct{})
	// Pdeathsig fires when the thread that forked the server ends, not
	// the process: the Go runtime may end a thread, so the server is
	// started from a goroutine locked to its thread, which lives (and
	// waits for the server) until the server exits.
	started := make(chan error, 1)
	var waitErr error
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with the goroutine, after the
		// server is gone.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waitErr = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	if err := awaitReady(p.dsn(), exited, 60*time.Second); err != nil {
		p.stop(syscall.SIGQUIT)
		b, _ := os.ReadFile(logPath)
		log := string(b[min(int(logStart), len(b)):])
		if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
			err = fmt.Errorf("%w: %v", errPortTaken, err)
		}
		select {
		case <-exited:
			if waitErr != nil {
				err = fmt.Errorf("%w (%v)", err, waitErr)
			}
		default:
		}
		return fmt.Errorf("pgtest: postgres on port %d: %w\n%s", p.port, err, log)
	}
	return nil
}

// stop shuts the postmaster down with sig (SIGQUIT: immediate, SIGINT:
// fast, see ShutdownMode) and waits for it; stopping a stopped server
// does nothing.
func (p *postmaster) stop(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	return shutdown(cmd.Process, sig, exited)
}

// awaitReady waits until the server accepts connections, exits, or the
// timeout passes.
func awaitReady(dsn string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-exited:
			return errors.New("server exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shutdown stops a server with sig (SIGQUIT, immediate shutdown, for a
// throwaway database: nothing of it is worth a checkpoint) and waits for
// it, killing it if it lingers.
func shutdown(p *os.Process, sig syscall.Signal, exited <-chan struct{}) error {
	p.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	p.Kill()
	select {
	case <-exited:
		return errors.New("pgtest: postgres ignored SIGQUIT for 30s; killed")
	case <-time.After(10 * time.Second):
		return fmt.Errorf("pgtest: postgres (pid %d) does not exit", p.Pid)
	}
}

// ownerlessAge is how old a server directory without an owner file must
// be to be reaped: one from before owner files, or from a process killed
// between creating the directory and writing the file.
const ownerlessAge = 10 * time.Minute

// reapOrphans removes the server directories in tmp whose owner process
// is gone, after stopping a server still running in one (a server that
// outlived its owner: no Pdeathsig on this system, or started by an
// older pgtest through pg_ctl). Directories it may not remove (another
// user's) are left alone. Best effort: a test that cannot clean up after
// another still runs.
func reapOrphans(tmp string, now time.Time) (reaped []string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	for _, dir := range dirs {
		if !orphaned(dir, now) {
			continue
		}
		if !stopOrphan(filepath.Join(dir, "data")) {
			continue
		}
		if os.RemoveAll(dir) == nil {
			reaped = append(reaped, dir)
		}
	}
	return reaped
}

// orphaned reports whether dir's owner process is gone.
func orphaned(dir string, now time.Time) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if errors.Is(err, fs.ErrNotExist) {
		fi, err := os.Stat(dir)
		return err == nil && fi.IsDir() && now.Sub(fi.ModTime()) > ownerlessAge
	}
	if err != nil {
		return false
	}
	var pid int
	var start string
	if n, _ := fmt.Sscan(string(b), &pid, &start); n != 2 || pid <= 0 {
		// Not ours to judge (a half-written file is a few bytes
		// short for a moment at most).
		return false
	}
	return processStart(pid) != start
}

// stopOrphan stops the server recorded in data/postmaster.pid, if it
// still runs, and reports whether none runs there any more.
func stopOrphan(data string) bool {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return true // never started, or shut down cleanly
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || processStart(pid) == "" || !isPostmaster(pid) {
		return true
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	if p.Signal(syscall.SIGQUIT) != nil {
		return false // another user's server
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if processStart(pid) == "" {
			return true
		}
	}
	p.Kill()
	time.Sleep(100 * time.Millisecond)
	return processStart(pid) == ""
}

// NewDatabase creates an empty database on the server, dropped by the
// test's cleanup, and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := s.create(t, "CREATE DATABASE %s", "DROP DATABASE IF EXISTS %s WITH (FORCE)")
	u := s.url(t)
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
	name := s.create(t, "CREATE SCHEMA %s", "DROP SCHEMA IF EXISTS %s CASCADE")
	u := s.url(t)
	q := u.Query()
	// pgx sends parameters it does not know as run-time parameters.
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// create runs the statement create (with %s for a fresh random name) on
// the maintenance database, registers drop (likewise) for the test's
// cleanup, and returns the name.
func (s *Server) create(t testing.TB, create, drop string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "tryd_test_" + hex.EncodeToString(b[:])
	if err := s.exec(fmt.Sprintf(create, name)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.exec(fmt.Sprintf(drop, name)); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return name
}

// exec runs one statement on its own connection to the maintenance
// database.
func (s *Server) exec(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return fmt.Errorf("connect for %q: %w", stmt, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%q: %w", stmt, err)
	}
	return nil
}

// url parses the server's DSN, which must be a postgres:// URL.
func (s *Server) url(t testing.TB) *url.URL {
	t.Helper()
	u, err := url.Parse(s.DSN)
	if err != nil || u.Scheme == "" {
		t.Fatalf("pgtest: %s must be a postgres:// URL: %v", EnvDSN, err)
	}
	return u
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

// BinDir finds the directory of initdb and postgres: PATH, else the
// newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		_, err1 := os.Stat(filepath.Join(d, "initdb"))
		_, err2 := os.Stat(filepath.Join(d, "postgres"))
		if err1 == nil && err2 == nil {
			return d, nil
		}
	}
	return "", errors.New("pgtest: PostgreSQL (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin")
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
