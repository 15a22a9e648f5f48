package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// BadWorker names a token no coordinator knows: TokenFile(BadWorker) and
// StartWorker(BadWorker, ...) test that the coordinator refuses it.
const BadWorker = "bad"

// Options say what to start. The zero value of every field but Tryd and
// Dir is usable.
type Options struct {
	// Tryd is the tryd binary (required by Launch; Start uses
	// testenv.TrydBinary).
	Tryd string
	// Dir holds every process's data and the token files (required by
	// Launch; Start uses a t.TempDir()). Its layout: tryd.yaml, the
	// token files (see Tokens), coord/ (the coordinator's data directory), worker-NAME/ (a
	// worker's job directory, --dir) and worker-NAME-data/.
	Dir string
	// Log receives the processes' standard error line by line, each line
	// prefixed with the process's name. Launch discards it when nil;
	// Start then keeps it to show in the test's log if the test fails.
	Log io.Writer
	// LogLevel is the processes' TRYD_LOG_LEVEL (default "info"; a
	// worker's "--log-level" in WorkerOptions.Args overrides it).
	LogLevel string
	// CoordinatorYAML is extra YAML under the configuration's
	// "coordinator:" key, indented two spaces: e.g.
	// "  heartbeat_timeout: 2s\n", or another state backend
	// ("  database: postgres\n  postgres_dsn: env:NAME\n").
	CoordinatorYAML string
	// Workers are started once the coordinator is up, the i-th named
	// WorkerNames[i].
	Workers []WorkerOptions
	// StopTimeout is how long Close waits for each process to exit after
	// SIGTERM before it kills it (default 10s); negative kills every
	// process at once.
	StopTimeout time.Duration
}

// WorkerOptions say how to run one "tryd worker".
type WorkerOptions struct {
	// Slots is the worker's job slots (0: tryd worker's default, the
	// number of CPUs).
	Slots int
	// Labels are the worker's labels.
	Labels map[string]string
	// Env is added to the base environment of every job of the worker
	// (KEY=VALUE), e.g. GOFLAGS=-mod=mod.
	Env []string
	// Drain is how long the worker lets running jobs finish when it is
	// stopped before giving them back (0: tryd worker's default, 10s).
	Drain time.Duration
	// Args are more flags, passed after the others so that they win:
	// e.g. "--log-level", "warn", or "--coordinator" naming a proxy.
	Args []string
}

// Cluster is a coordinator process and the worker processes started
// against it. Its methods are safe for concurrent use.
type Cluster struct {
	// URL is the coordinator's base URL; ClientToken its client token.
	URL, ClientToken string
	// WorkerTokens are the tokens of the worker names (WorkerNames for a
	// launched coordinator), by name.
	WorkerTokens map[string]string

	opts        Options
	config      string // tryd.yaml; "" when the coordinator is not ours (Join)
	addr        string
	releasePort func() // gives back the coordinator's held port

	mu     sync.Mutex
	coord  *Proc
	procs  []*Proc // in start order
	closed bool
}

// Launch writes the configuration (tokens of WorkerNames, a client
// token), starts the coordinator on a port held for the cluster's
// lifetime, waits until it answers /healthz, and starts opts.Workers. The
// caller must Close the cluster.
func Launch(ctx context.Context, opts Options) (*Cluster, error) {
	if len(opts.Workers) > len(WorkerNames) {
		return nil, fmt.Errorf("testcluster: %d workers asked for, tokens for %d", len(opts.Workers), len(WorkerNames))
	}
	c, err := newCluster(opts, nil)
	if err != nil {
		return nil, err
	}
	// The coordinator's address is fixed before it starts (it is in the
	// configuration and the workers' flags) and the coordinator may be
	// restarted there, so the port is held until Close: nobody else's
	// server or connection takes it while the coordinator is down.
	addr, release, err := testenv.HoldPort()
	if err != nil {
		return nil, fmt.Errorf("testcluster: coordinator address: %w", err)
	}
	c.releasePort = release
	c.addr, c.URL = addr, "http://"+addr
	c.config = filepath.Join(opts.Dir, "tryd.yaml")
	cfg := fmt.Sprintf("coordinator:\n  listen: %q\n  url: %q\n  worker_tokens: file:%s\n  client_token: file:%s\n%s",
		addr, c.URL, (&Tokens{Dir: opts.Dir}).WorkerTokensFile(), c.ClientTokenFile(), opts.CoordinatorYAML)
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		release()
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	if err := c.StartCoordinator(ctx); err != nil {
		c.Close()
		return nil, err
	}
	for i, w := range opts.Workers {
		if _, err := c.StartWorker(WorkerNames[i], w); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Join returns a cluster for starting workers against a coordinator the
// caller runs at coordinatorURL, which knows tokens (worker name →
// token). It starts nothing; the caller must Close it to stop the
// workers.
func Join(opts Options, coordinatorURL string, tokens map[string]string) (*Cluster, error) {
	if len(tokens) == 0 {
		return nil, errors.New("testcluster: Join needs the tokens of the workers to start")
	}
	c, err := newCluster(opts, tokens)
	if err != nil {
		return nil, err
	}
	c.URL = coordinatorURL
	return c, nil
}

// newCluster validates opts, fills in defaults and writes the token
// files: those of tokens, or new ones for WorkerNames (WriteTokens) when
// tokens is nil; and a token of BadWorker's the coordinator does not
// know.
func newCluster(opts Options, tokens map[string]string) (*Cluster, error) {
	if opts.Tryd == "" || opts.Dir == "" {
		return nil, errors.New("testcluster: Options.Tryd and Options.Dir are required")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}
	c := &Cluster{opts: opts, WorkerTokens: map[string]string{}}
	if tokens == nil {
		ts, err := WriteTokens(opts.Dir)
		if err != nil {
			return nil, err
		}
		c.ClientToken, c.WorkerTokens = ts.Client, ts.Workers
	} else {
		if _, ok := tokens[BadWorker]; ok {
			return nil, fmt.Errorf("testcluster: worker name %q is reserved for an unknown token", BadWorker)
		}
		for _, n := range slices.Sorted(maps.Keys(tokens)) {
			if err := writeTokenFile(opts.Dir, n, tokens[n]); err != nil {
				return nil, err
			}
		}
		maps.Copy(c.WorkerTokens, tokens)
	}
	if err := writeTokenFile(opts.Dir, BadWorker, randomToken()); err != nil {
		return nil, err
	}
	return c, nil
}

// StartCoordinator starts (or, after its process was killed or
// stopped, restarts) the coordinator on the cluster's address and data
// directory and waits until it answers /healthz (see Proc.WaitHealthy).
func (c *Cluster) StartCoordinator(ctx context.Context) error {
	if c.config == "" {
		return errors.New("testcluster: the coordinator is not this cluster's to start")
	}
	p, err := c.start("coordinator", c.URL, "coordinator", "--config", c.config,
		"--data-dir", filepath.Join(c.opts.Dir, "coord"), "--listen", c.addr)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.coord = p
	c.mu.Unlock()
	return p.WaitHealthy(ctx)
}

// Coordinator returns the coordinator process last started (nil for a
// joined cluster).
func (c *Cluster) Coordinator() *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.coord
}

// TokenFile returns the file holding the token of a worker name
// (BadWorker: a token the coordinator does not know).
func (c *Cluster) TokenFile(name string) string {
	return tokenFile(c.opts.Dir, name)
}

// ClientTokenFile returns the file holding the client token, e.g. for
// "tryd try --token-file" (a launched coordinator's only).
func (c *Cluster) ClientTokenFile() string {
	return (&Tokens{Dir: c.opts.Dir}).ClientTokenFile()
}

// StartWorker starts "tryd worker" named name (a name the cluster has a
// token for, or BadWorker) against the cluster's coordinator. Its job
// directory is Dir/worker-NAME; starting a name again after its process
// exited reuses it. It returns once the process runs, not once it has
// connected.
func (c *Cluster) StartWorker(name string, o WorkerOptions) (*Proc, error) {
	if _, ok := c.WorkerTokens[name]; !ok && name != BadWorker {
		return nil, fmt.Errorf("testcluster: no token for worker %q", name)
	}
	args := []string{"worker", "--coordinator", c.URL, "--token-file", c.TokenFile(name), "--name", name,
		"--dir", filepath.Join(c.opts.Dir, "worker-"+name), "--data-dir", filepath.Join(c.opts.Dir, "worker-"+name+"-data")}
	if o.Slots != 0 {
		args = append(args, "--slots", strconv.Itoa(o.Slots))
	}
	if o.Drain != 0 {
		args = append(args, "--drain", o.Drain.String())
	}
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		args = append(args, "--label", k+"="+o.Labels[k])
	}
	for _, e := range o.Env {
		args = append(args, "--env", e)
	}
	return c.start(name, "", append(args, o.Args...)...)
}

// start runs "tryd args..." as the cluster's process name, serving at
// url ("" for none).
func (c *Cluster) start(name, url string, args ...string) (*Proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("testcluster: start %s: cluster closed", name)
	}
	p, err := StartProc(ProcOptions{Binary: c.opts.Tryd, Name: name, Args: args, URL: url,
		Env: []string{"TRYD_LOG_LEVEL=" + c.opts.LogLevel}, Log: c.opts.Log})
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// Close stops every process still running, the last started first (the
// workers before their coordinator, so that they can give their jobs
// back), each with SIGTERM and Options.StopTimeout, and gives back the
// coordinator's port. Calling it again does nothing.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	for _, p := range slices.Backward(procs) {
		_ = p.Stop(c.opts.StopTimeout)
	}
	if c.releasePort != nil {
		c.releasePort()
	}
}
