package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
)

func runCoordinator(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("coordinator", "[flags]", `Coordinator accepts build graphs, schedules their jobs on workers, caches
results and stores outputs. Workers authenticate with per-worker tokens
(a file of "name token" lines), clients with the client token; the HTTP
API is described in coordinator/api/PROTOCOL.md. State (SQLite), job logs
and artifacts live under <data-dir>/coordinator. With coordinator.database
postgres, several replicas share the state (deploy/README.md); with
coordinator.artifacts gcs, artifacts live in a GCS bucket.`)
	listen := fs.String("listen", "", "address to serve HTTP on (default: coordinator.listen from the config, else 127.0.0.1:8084; set listen: \":8084\" to serve every interface)")
	workerTokens := fs.String("worker-tokens", "", "file of \"name token\" lines (default: coordinator.worker_tokens from the config)")
	clientToken := fs.String("client-token-file", "", "file holding the client token (default: coordinator.client_token from the config)")
	heartbeat := fs.Duration("heartbeat-timeout", 0, "silence after which a worker's jobs are requeued (default: coordinator.heartbeat_timeout, else 15s)")
	maxAttempts := fs.Int("max-attempts", 0, "attempts of a job whose worker was lost (default: coordinator.max_attempts, else 3)")
	artifactBytes := fs.Int64("artifacts-bytes", 0, "size limit of the artifact store in bytes; 0 means coordinator.artifacts_bytes, else 20 GiB")
	defTimeout := fs.Duration("default-timeout", time.Hour, "timeout of jobs whose graph gives none")
	locality := fs.Duration("locality-wait", 250*time.Millisecond, "how long a ready job waits for a worker holding its dependencies' outputs before any worker may take it")
	sync := fs.String("sqlite-synchronous", "NORMAL", "SQLite synchronous mode: NORMAL (survives a process crash) or FULL (also power loss)")
	so := a.scaleOutFlags(fs)
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of this process to this file until it exits, and its allocations to FILE.allocs (for benchmarks: bench/replicas -cpuprofile)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	cc := a.cfg.Coordinator
	if *listen == "" {
		*listen = cc.Listen
	}
	if *listen == "" {
		*listen = "127.0.0.1:8084"
	}
	tokens, err := loadWorkerTokens(*workerTokens, cc.WorkerTokens)
	if err != nil {
		return err
	}
	client, err := secretOrFile(*clientToken, cc.ClientToken)
	if err != nil {
		return fmt.Errorf("coordinator: client token: %w", err)
	}
	if client == "" {
		a.log.Warn("coordinator: no client token configured: every client call will be refused")
	}
	if *heartbeat == 0 {
		*heartbeat = cc.HeartbeatTimeout.Or(15 * time.Second)
	}
	if *maxAttempts == 0 {
		*maxAttempts = cc.MaxAttempts
	}
	if *artifactBytes == 0 {
		*artifactBytes = cc.ArtifactsBytes
	}
	if *artifactBytes == 0 {
		*artifactBytes = 20 << 30
	}
	dir, err := a.subdir("coordinator")
	if err != nil {
		return err
	}
	log := logging.For(a.log, "coordinator")
	var store state.Store
	var replica *coordinator.ReplicaOptions
	if cc.Database == "postgres" {
		store, replica, err = openPostgres(ctx, a, cc, so)
	} else {
		store, err = sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "state.db"), Synchronous: *sync})
	}
	if err != nil {
		return err
	}
	defer store.Close()
	var c *coordinator.Coordinator
	var arts artifacts.Store
	if cc.Artifacts == "gcs" {
		gcs, closeGCS, err := openGCSArtifacts(ctx, cc, so)
		if err != nil {
			return err
		}
		defer closeGCS()
		arts = gcs
	} else {
		arts, err = artifacts.OpenDisk(artifacts.DiskOptions{
			Dir: filepath.Join(dir, "artifacts"), MaxBytes: *artifactBytes, Log: log,
			Pinned: func(d string) bool { return c != nil && c.Pinned(d) },
		})
		if err != nil {
			return err
		}
	}
	reg := httpserver.NewRegistry()
	c, err = coordinator.New(ctx, coordinator.Options{
		Store: store, Artifacts: arts, Dir: dir,
		WorkerTokens: tokens, ClientToken: client,
		HeartbeatTimeout: *heartbeat, MaxAttempts: *maxAttempts,
		DefaultTimeout: *defTimeout, LocalityWait: *locality,
		Replica: replica,
		Log:     a.log, Registry: reg,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	srv, err := httpserver.New(httpserver.Options{
		Addr: *listen, Handler: c.Handler(), Component: "coordinator",
		Log: a.log, Registry: reg, Health: c.Health,
	})
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// startCPUProfile writes a CPU profile of this process to path until
// stop is called, which also writes the allocation profile to
// path+".allocs".
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		// Where a busy coordinator's GC work comes from.
		if a, err := os.Create(path + ".allocs"); err == nil {
			pprof.Lookup("allocs").WriteTo(a, 0)
			a.Close()
		}
	}, nil
}

// loadWorkerTokens reads the worker token file named by the flag, or the
// configured secret. Without either, no worker can connect (logged by the
// caller's first refused request).
func loadWorkerTokens(path string, s config.Secret) (map[string]string, error) {
	var text string
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("coordinator: worker tokens: %w", err)
		}
		text = string(b)
	case s.IsSet():
		v, err := s.Value()
		if err != nil {
			return nil, fmt.Errorf("coordinator: worker tokens: %w", err)
		}
		text = v
	default:
		return nil, nil
	}
	return coordinator.ParseWorkerTokens(strings.NewReader(text))
}

// secretOrFile returns the contents of the file named by the flag
// (trimmed), else the configured secret's value, else "".
func secretOrFile(path string, s config.Secret) (string, error) {
	if path != "" {
		return config.FileSecret(path).Value()
	}
	if s.IsSet() {
		return s.Value()
	}
	return "", nil
}
