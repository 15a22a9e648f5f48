package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
)

const (
	clientToken = "client-token-0123456789"
	tokenW1     = "worker-one-token-0123456789"
	tokenW2     = "worker-two-token-0123456789"
)

// backend is a kind of state store. The package's tests run on every
// one (forEachBackend): the coordinator must behave the same whichever
// database holds its state.
type backend struct {
	name string
	// newDB returns the location of a new, empty database (a SQLite
	// file, a PostgreSQL DSN), removed by t's cleanup.
	newDB func(t testing.TB) string
	// open opens the database at a location newDB returned.
	open func(ctx context.Context, loc string) (state.Store, error)
}

// sharedPG is the PostgreSQL server of the package's tests, started on
// first use and stopped by TestMain: one server for the whole run, one
// schema per test (a server per test would cost seconds each).
var sharedPG pgtest.Shared

var (
	sqliteBackend = backend{
		name:  "sqlite",
		newDB: func(t testing.TB) string { return filepath.Join(t.TempDir(), "state.db") },
		open: func(ctx context.Context, loc string) (state.Store, error) {
			return sqlite.Open(ctx, sqlite.Options{Path: loc})
		},
	}
	postgresBackend = backend{
		name:  "postgres",
		newDB: func(t testing.TB) string { return sharedPG.Server(t).NewSchema(t) },
		open: func(ctx context.Context, loc string) (state.Store, error) {
			return pgstate.Open(ctx, pgstate.Options{DSN: loc, MaxConns: 4})
		},
	}
	backends = []backend{sqliteBackend, postgresBackend}
)

// backendNamed returns the backend of that name (for child processes).
func backendNamed(name string) (backend, bool) {
	for _, be := range backends {
		if be.name == name {
			return be, true
		}
	}
	return backend{}, false
}

// forEachBackend runs f as one subtest per backend, named after it.
// Without PostgreSQL the postgres subtest skips, or fails under CI=true.
func forEachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { f(t, be) })
	}
}

// openDB opens the database at loc, closed by t's cleanup (closing twice
// is harmless).
func (be backend) openDB(t testing.TB, loc string) state.Store {
	t.Helper()
	s, err := be.open(context.Background(), loc)
	if err != nil {
		t.Fatalf("open %s store: %v", be.name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeClock is a Clock whose time moves only when Advance is called.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{f.now.Add(d), ch})
	return ch
}

// Advance moves time and fires the timers that are due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	var fire []fakeWaiter
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			fire = append(fire, w)
		} else {
			kept = append(kept, w)
		}
	}
	f.waiters = kept
	now := f.now
	f.mu.Unlock()
	for _, w := range fire {
		w.ch <- now
	}
}

// env is a coordinator served over real HTTP on loopback, with a client.
type env struct {
	t      testing.TB
	c      *Coordinator
	url    string
	client *api.Client
	dir    string
	clock  Clock
	stop   func()
}

type envOpts struct {
	// dir holds the artifacts and logs (default: a new temporary one).
	dir string
	// db is the database, a location from the backend's newDB (default:
	// a new one). Reuse dir and db to restart a coordinator.
	db        string
	clock     Clock
	mod       func(*Options)
	artsBytes int64 // artifact store size limit (0: none)
}

// newEnv starts a coordinator whose state is in a database of be.
func newEnv(t testing.TB, be backend, o envOpts) *env {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.db == "" {
		o.db = be.newDB(t)
	}
	ctx := context.Background()
	store, err := be.open(ctx, o.db)
	if err != nil {
		t.Fatalf("open %s store: %v", be.name, err)
	}
	var c *Coordinator
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(o.dir, "artifacts"), MaxBytes: o.artsBytes, Pinned: func(d string) bool { return c != nil && c.Pinned(d) }})
	if err != nil {
		t.Fatal(err)
	}
	log := logging.Discard()
	if testing.Verbose() {
		l, _ := logging.New(logging.Options{Level: "debug", Output: os.Stderr})
		log = l.WithField("test", t.Name())
	}
	opts := Options{
		Store: store, Artifacts: arts, Dir: o.dir,
		WorkerTokens: map[string]string{"w1": tokenW1, "w2": tokenW2},
		ClientToken:  clientToken,
		Clock:        o.clock,
		Log:          log,
		PollTimeout:  2 * time.Second,
	}
	if o.mod != nil {
		o.mod(&opts)
	}
	c, err = New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpserver.New(httpserver.Options{Handler: c.Handler(), Component: "coordinator", ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	client, err := api.NewClient(srv.URL(), clientToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: c, url: srv.URL(), client: client, dir: o.dir, clock: opts.Clock}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		c.Close()
		cancel()
		<-done
		store.Close()
	}
	t.Cleanup(e.stop)
	return e
}

// submit submits a graph given as JSON.
func (e *env) submit(graphJSON string, prio api.Priority) *api.SubmitResponse {
	e.t.Helper()
	g, err := graph.Decode(bytes.NewReader([]byte(graphJSON)))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.client.Submit(context.Background(), api.SubmitRequest{Graph: *g, Priority: prio})
	if err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	return resp
}

func (e *env) build(id int64) *api.Build {
	e.t.Helper()
	b, err := e.client.Build(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func jobByName(b *api.Build, name string) api.JobStatus {
	for _, j := range b.Jobs {
		if j.Name == name {
			return j
		}
	}
	return api.JobStatus{}
}

// testWorker drives the worker protocol with the api client. It executes
// nothing: for scheduler and protocol tests it builds each job's output
// from its write_file commands, which is enough to exercise artifacts,
// dependencies, caching and planners. End-to-end tests with real worker
// processes live with the worker.
type testWorker struct {
	t      testing.TB
	c      *api.Client
	name   string
	id     string
	labels map[string]string
	waitMS int64 // poll wait (default 1500)
}

func newTestWorker(t testing.TB, e *env, name, token string, labels map[string]string) *testWorker {
	t.Helper()
	c, err := api.NewClient(e.url, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &testWorker{t: t, c: c, name: name, labels: labels}
	w.register(nil)
	return w
}

func (w *testWorker) register(running []string) {
	w.t.Helper()
	resp, err := w.c.Register(context.Background(), api.RegisterRequest{Name: w.name, Labels: w.labels, Slots: 64, Version: "test", Running: running})
	if err != nil {
		w.t.Fatalf("register %s: %v", w.name, err)
	}
	w.id = resp.WorkerID
}

func (w *testWorker) poll(free int, running []string, results ...api.AttemptResult) (*api.PollResponse, error) {
	wait := w.waitMS
	if wait == 0 {
		wait = 1500
	}
	return w.c.Poll(context.Background(), api.PollRequest{WorkerID: w.id, FreeSlots: free, Running: running, Results: results, WaitMS: wait})
}

func (w *testWorker) mustPoll(free int, running []string, results ...api.AttemptResult) *api.PollResponse {
	w.t.Helper()
	resp, err := w.poll(free, running, results...)
	if err != nil {
		w.t.Fatalf("poll %s: %v", w.name, err)
	}
	return resp
}

// output builds the job's output archive from its write_file commands,
// uploads it and returns a succeeded result.
func (w *testWorker) output(as api.Assignment) api.AttemptResult {
	w.t.Helper()
	dir := w.t.TempDir()
	for _, cmd := range as.Job.Commands {
		if cmd.WriteFile != nil {
			p := filepath.Join(dir, filepath.FromSlash(cmd.WriteFile.Path))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(cmd.WriteFile.Content), 0o644); err != nil {
				w.t.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	if err := graph.WriteOutputs(&buf, dir); err != nil {
		w.t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	d := hex.EncodeToString(sum[:])
	if err := w.c.PutArtifact(context.Background(), d, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		w.t.Fatal(err)
	}
	zero := 0
	return api.AttemptResult{AttemptID: as.AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: d, OutputSize: int64(buf.Len())}
}

func failed(as api.Assignment, code int) api.AttemptResult {
	return api.AttemptResult{AttemptID: as.AttemptID, State: api.AttemptFailed, ExitCode: &code, Error: "exit status"}
}

// drain runs every assignment it receives (with output) until the build
// finishes, returning the job names in the order they were assigned.
func (w *testWorker) drain(e *env, buildID int64, fail map[string]bool) []string {
	w.t.Helper()
	var order []string
	var results []api.AttemptResult
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp := w.mustPoll(4, nil, results...)
		results = nil
		for _, as := range resp.Assignments {
			order = append(order, as.Job.Name)
			if fail[as.Job.Name] {
				results = append(results, failed(as, 1))
			} else {
				results = append(results, w.output(as))
			}
		}
		if len(resp.Assignments) == 0 && len(results) == 0 {
			if e.build(buildID).State.Finished() {
				return order
			}
		}
	}
	w.t.Fatalf("build %d did not finish", buildID)
	return nil
}

func names(js []api.JobStatus, st api.JobState) []string {
	var out []string
	for _, j := range js {
		if j.State == st {
			out = append(out, j.Name)
		}
	}
	sort.Strings(out)
	return out
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
