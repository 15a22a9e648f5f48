// Package cluster starts a real tryd coordinator and real tryd worker
// processes from a tryd binary, on loopback, for the worker's end-to-end
// tests and the scheduling benchmark. Everything talks over real HTTP;
// processes are started in their own process groups and can be killed
// (SIGKILL) or stopped (SIGTERM) one by one.
package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// Options says what to start.
type Options struct {
	// Tryd is the path of the tryd binary (required).
	Tryd string
	// Dir holds every process's data (required; e.g. t.TempDir()).
	Dir string
	// Log receives the processes' stderr, each line prefixed with the
	// process name; nil discards.
	Log io.Writer
	// CoordinatorYAML is extra YAML under the config's "coordinator:" key
	// (indented two spaces), e.g. "  heartbeat_timeout: 2s\n".
	CoordinatorYAML string
}

// Cluster is a running coordinator and its workers.
type Cluster struct {
	opts        Options
	URL         string
	ClientToken string
	config      string
	addr        string
	tokens      map[string]string // worker name → token
	releasePort func()            // gives back the coordinator's port

	mu    sync.Mutex
	coord *Proc
	procs []*Proc
}

// Proc is one tryd process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// WorkerNames are the worker identities the cluster has tokens for.
var WorkerNames = []string{"w1", "w2", "w3", "w4"}

// Start writes the configuration (worker tokens for WorkerNames, a client
// token), starts the coordinator and waits until it answers /healthz.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Tryd == "" || opts.Dir == "" {
		return nil, errors.New("cluster: Options.Tryd and Dir are required")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	c := &Cluster{opts: opts, ClientToken: randomToken(), tokens: map[string]string{}}
	var lines []string
	for _, n := range WorkerNames {
		c.tokens[n] = randomToken()
		lines = append(lines, n+" "+c.tokens[n])
		if err := os.WriteFile(filepath.Join(opts.Dir, n+".token"), []byte(c.tokens[n]+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"worker-tokens": strings.Join(lines, "\n") + "\n",
		"client-token":  c.ClientToken + "\n",
		"bad.token":     randomToken() + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(opts.Dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	// The coordinator's address is fixed before it starts (its URL is in
	// the config and the workers' flags) and it may be restarted there,
	// so the port is held until Close: nobody else's server or
	// connection takes it while the coordinator is down.
	addr, release, err := testenv.HoldPort()
	if err != nil {
		return nil, fmt.Errorf("cluster: coordinator address: %w", err)
	}
	c.releasePort = release
	c.addr, c.URL = addr, "http://"+addr
	c.config = filepath.Join(opts.Dir, "tryd.yaml")
	cfg := fmt.Sprintf("coordinator:\n  listen: %q\n  url: %q\n  worker_tokens: file:%s\n  client_token: file:%s\n%s",
		addr, c.URL, filepath.Join(opts.Dir, "worker-tokens"), filepath.Join(opts.Dir, "client-token"), opts.CoordinatorYAML)
	if err := os.WriteFile(c.config, []byte(cfg), 0o644); err != nil {
		release()
		return nil, err
	}
	if err := c.StartCoordinator(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// StartCoordinator starts (or restarts) the coordinator process on the
// cluster's address and data directory and waits for /healthz.
func (c *Cluster) StartCoordinator(ctx context.Context) error {
	p, err := c.start("coordinator", "coordinator", "--config", c.config, "--data-dir", filepath.Join(c.opts.Dir, "coord"), "--listen", c.addr)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.coord = p
	c.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(c.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("cluster: coordinator exited: %v", p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: coordinator not healthy after 60s: %v", err)
		}
	}
}

// Coordinator returns the coordinator process.
func (c *Cluster) Coordinator() *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.coord
}

// TokenFile returns the token file of a worker name ("bad" for a token
// the coordinator does not know).
func (c *Cluster) TokenFile(name string) string {
	return filepath.Join(c.opts.Dir, name+".token")
}

// StartWorker starts "tryd worker" with the token of name (one of
// WorkerNames) and extra flags (e.g. --slots 2, --label pool=x).
func (c *Cluster) StartWorker(name string, args ...string) (*Proc, error) {
	full := append([]string{"worker", "--coordinator", c.URL, "--token-file", c.TokenFile(name),
		"--dir", filepath.Join(c.opts.Dir, "worker-"+name), "--data-dir", filepath.Join(c.opts.Dir, "worker-"+name+"-data")}, args...)
	return c.start(name, full...)
}

// Client returns an API client with the client token.
func (c *Cluster) Client() *api.Client {
	cl, err := api.NewClient(c.URL, c.ClientToken, nil)
	if err != nil {
		panic(err) // the URL is ours
	}
	return cl
}

func (c *Cluster) start(name string, args ...string) (*Proc, error) {
	cmd := exec.Command(c.opts.Tryd, args...)
	cmd.Env = append(os.Environ(), "TRYD_LOG_LEVEL=info")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(c.opts.Log, "%s: %s\n", name, sc.Text())
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// Kill sends SIGKILL to the process's whole group and waits for it.
func (p *Proc) Kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for the process to exit,
// killing it after that. It returns the exit error.
func (p *Proc) Stop(timeout time.Duration) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
	}
	return p.err
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed.
func (p *Proc) Err() error { return p.err }

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Close kills every process still running and gives back the
// coordinator's port.
func (c *Cluster) Close() {
	if c.releasePort != nil {
		defer c.releasePort()
	}
	c.mu.Lock()
	procs := append([]*Proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			p.Kill()
		}
	}
}
