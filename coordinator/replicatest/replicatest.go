// Package replicatest starts coordinator replicas as real processes for
// the multi-replica tests and bench/coordinator-replicas.sh: several
// "tryd coordinator" processes on one PostgreSQL database (or one on
// SQLite, the baseline), artifacts in a GCS emulator (fake-gcs-server,
// served over HTTP on loopback from this process and reached through
// STORAGE_EMULATOR_HOST), and "tryd worker" processes.
//
// Each worker reaches the replicas through a failover proxy of its own
// (a TCP proxy on 127.0.0.1 that connects to the worker's preferred
// replica, else the next one that accepts): the behaviour of a load
// balancer with session affinity in front of the replicas. Killing a
// replica (SIGKILL) moves its workers' new connections to the others.
//
// The processes are internal/testcluster's (StartProc): each in its own
// process group, its standard error copied to Options.Log with its name
// in front.
package replicatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// Options say what to start.
type Options struct {
	// Tryd is the tryd binary (required).
	Tryd string
	// Dir holds every process's files (required).
	Dir string
	// DSN is the PostgreSQL database the replicas share; empty means one
	// coordinator on SQLite (Replicas must then be 1).
	DSN string
	// Replicas is the number of coordinator processes (default 1).
	Replicas int
	// LeaseTTL is the replicas' lease TTL (default 3s).
	LeaseTTL time.Duration
	// HeartbeatTimeout is the coordinators' (default 3s).
	HeartbeatTimeout time.Duration
	// Log receives the processes' stderr, each line prefixed with the
	// process name; nil discards it.
	Log io.Writer
	// CPUProfileDir, if set, receives a CPU profile of each coordinator
	// process over its life (coord0.pprof, ...), written when it exits.
	CPUProfileDir string
}

// Cluster is a running set of replicas and workers.
type Cluster struct {
	opts        Options
	ClientToken string
	tokens      *testcluster.Tokens
	config      string
	gcs         *fakestorage.Server

	mu      sync.Mutex
	coords  []*Proc
	workers []*Proc
	proxies []*failover
	release []func() // give back the coordinators' held ports
}

// Proc is one tryd process: a coordinator (named coordN, with its URL)
// or a worker (named by its worker name, no URL).
type Proc = testcluster.Proc

// stopTimeout is how long Close lets each process exit after SIGTERM
// before it kills its group.
const stopTimeout = 10 * time.Second

// Workers returns the worker processes started so far.
func (c *Cluster) Workers() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.workers...)
}

// Coordinators returns the coordinator processes.
func (c *Cluster) Coordinators() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.coords...)
}

// WorkerNames are the worker identities the cluster has tokens for
// (testcluster's, whose token files it writes).
var WorkerNames = testcluster.WorkerNames

// Start writes the configuration and starts the coordinators, waiting
// until each answers /healthz.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Tryd == "" || opts.Dir == "" {
		return nil, errors.New("replicatest: Options.Tryd and Dir are required")
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.DSN == "" && opts.Replicas != 1 {
		return nil, errors.New("replicatest: several replicas need a PostgreSQL DSN")
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 3 * time.Second
	}
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = 3 * time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{Host: "127.0.0.1", Port: 0, Scheme: "http", PublicHost: "127.0.0.1"})
	if err != nil {
		return nil, fmt.Errorf("replicatest: GCS emulator: %w", err)
	}
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "tryd-artifacts"})
	tokens, err := testcluster.WriteTokens(opts.Dir)
	if err != nil {
		gcs.Stop()
		return nil, fmt.Errorf("replicatest: %w", err)
	}
	c := &Cluster{opts: opts, ClientToken: tokens.Client, tokens: tokens, gcs: gcs}
	db := "  database: sqlite\n"
	if opts.DSN != "" {
		db = "  database: postgres\n  postgres_dsn: env:TRYD_REPLICATEST_DSN\n"
	}
	cfg := fmt.Sprintf("coordinator:\n  worker_tokens: file:%s\n  client_token: file:%s\n  heartbeat_timeout: %s\n  artifacts: gcs\n  gcs_bucket: tryd-artifacts\n%s",
		tokens.WorkerTokensFile(), tokens.ClientTokenFile(), opts.HeartbeatTimeout, db)
	c.config = filepath.Join(opts.Dir, "tryd.yaml")
	if err := os.WriteFile(c.config, []byte(cfg), 0o644); err != nil {
		gcs.Stop()
		return nil, fmt.Errorf("replicatest: %w", err)
	}
	for i := range opts.Replicas {
		if err := c.startCoordinator(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) startCoordinator(ctx context.Context, i int) error {
	// Held until Close, so that a killed replica's address refuses
	// connections rather than reaching whoever took the port meanwhile.
	addr, release, err := testenv.HoldPort()
	if err != nil {
		return fmt.Errorf("replicatest: %w", err)
	}
	c.mu.Lock()
	c.release = append(c.release, release)
	c.mu.Unlock()
	url := "http://" + addr
	name := fmt.Sprintf("coord%d", i)
	args := []string{
		"coordinator", "--config", c.config, "--data-dir", filepath.Join(c.opts.Dir, name), "--listen", addr,
		"--advertise-url", url, "--lease-ttl", c.opts.LeaseTTL.String(), "--log-level", "info",
	}
	if c.opts.CPUProfileDir != "" {
		args = append(args, "--cpu-profile", filepath.Join(c.opts.CPUProfileDir, name+".pprof"))
	}
	p, err := c.start(name, url, args)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.coords = append(c.coords, p)
	c.mu.Unlock()
	if err := p.WaitHealthy(ctx); err != nil {
		return fmt.Errorf("replicatest: %w", err)
	}
	return nil
}

// Coordinator returns coordinator process i.
func (c *Cluster) Coordinator(i int) *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.coords[i]
}

// Client returns an API client of coordinator i with the client token.
func (c *Cluster) Client(i int) *api.Client {
	cl, err := api.NewClient(c.Coordinator(i).URL, c.ClientToken, nil)
	if err != nil {
		panic(err) // our own URL
	}
	return cl
}

// Kill sends SIGKILL to coordinator i's process group and waits for it
// to end.
func (c *Cluster) Kill(i int) {
	c.Coordinator(i).Kill()
}

// StartWorker starts worker name (one of WorkerNames) with slots, which
// reaches coordinator prefer first through its failover proxy; args are
// more flags of "tryd worker" (e.g. "--label", "pool=x").
func (c *Cluster) StartWorker(name string, prefer, slots int, args ...string) (*Proc, error) {
	var backends []string
	c.mu.Lock()
	n := len(c.coords)
	for k := range n {
		backends = append(backends, strings.TrimPrefix(c.coords[(prefer+k)%n].URL, "http://"))
	}
	c.mu.Unlock()
	fo, err := newFailover(backends)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.proxies = append(c.proxies, fo)
	c.mu.Unlock()
	p, err := c.start(name, "", append([]string{
		"worker", "--coordinator", "http://" + fo.addr(), "--token-file", c.tokens.TokenFile(name),
		"--dir", filepath.Join(c.opts.Dir, "worker-"+name), "--data-dir", filepath.Join(c.opts.Dir, "worker-"+name+"-data"),
		"--slots", strconv.Itoa(slots), "--log-level", "warn",
	}, args...))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.workers = append(c.workers, p)
	c.mu.Unlock()
	return p, nil
}

// start runs "tryd args..." as process name, serving at url ("" for
// none), with the GCS emulator's and the database's environment.
func (c *Cluster) start(name, url string, args []string) (*Proc, error) {
	env := []string{"STORAGE_EMULATOR_HOST=" + strings.TrimPrefix(c.gcs.URL(), "http://")}
	if c.opts.DSN != "" {
		env = append(env, "TRYD_REPLICATEST_DSN="+c.opts.DSN)
	}
	p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: c.opts.Tryd, Name: name, Args: args, Env: env, Log: c.opts.Log, URL: url})
	if err != nil {
		return nil, fmt.Errorf("replicatest: %w", err)
	}
	return p, nil
}

// Close stops every process, all at once (SIGTERM, then SIGKILL to its
// group after 10s), then the proxies, the coordinators' ports and the GCS
// emulator.
func (c *Cluster) Close() {
	c.mu.Lock()
	procs := append(append([]*Proc{}, c.workers...), c.coords...)
	proxies, release := c.proxies, c.release
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _ = p.Stop(stopTimeout) })
	}
	wg.Wait()
	for _, f := range proxies {
		f.close()
	}
	for _, r := range release {
		r()
	}
	c.gcs.Stop()
}

// failover is a TCP proxy that connects each accepted connection to the
// first backend that accepts it, in order.
type failover struct {
	ln       net.Listener
	backends []string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func newFailover(backends []string) (*failover, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &failover{ln: ln, backends: backends, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

func (f *failover) addr() string { return f.ln.Addr().String() }

func (f *failover) serve() {
	defer f.wg.Done()
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.pipe(in)
		}()
	}
}

func (f *failover) track(c net.Conn, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.conns[c] = true
	} else {
		delete(f.conns, c)
	}
}

func (f *failover) pipe(in net.Conn) {
	defer in.Close()
	var out net.Conn
	for _, b := range f.backends {
		c, err := net.DialTimeout("tcp", b, time.Second)
		if err == nil {
			out = c
			break
		}
	}
	if out == nil {
		return
	}
	defer out.Close()
	f.track(in, true)
	f.track(out, true)
	defer f.track(in, false)
	defer f.track(out, false)
	done := make(chan struct{}, 2)
	go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(in, out); in.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

func (f *failover) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
