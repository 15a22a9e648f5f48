package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/worker"
)

// inProcessWorker runs the worker named name in this process (instead of
// a tryd worker process) and writes a CPU profile of this process to
// profile until stop is called, so that the worker's own costs can be
// read with go tool pprof (focus on the worker packages: the profile
// also holds this program's client).
func inProcessWorker(c *testcluster.Cluster, name string, slots int, dir, profile string) (stop func(), err error) {
	cl, err := api.NewClient(c.URL, c.WorkerTokens[name], nil)
	if err != nil {
		return nil, err
	}
	w, err := worker.New(worker.Options{Client: cl, Dir: filepath.Join(dir, "inproc-"+name), Slots: slots, DrainTimeout: -1})
	if err != nil {
		return nil, err
	}
	f, err := os.Create(profile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		w.Close()
	}, nil
}
