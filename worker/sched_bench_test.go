package worker_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/worker"
)

// benchCluster runs a real coordinator (SQLite, disk artifacts, loopback
// HTTP) and two real workers of two slots in this process, so that one
// CPU profile (go test -cpuprofile) covers the scheduling path of
// bench/sched-overhead.sh end to end: submit, dispatch, the worker's
// job, the result and the commit.
func benchCluster(b *testing.B) *api.Client {
	dir := b.TempDir()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "state.db")})
	if err != nil {
		b.Fatal(err)
	}
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(dir, "artifacts")})
	if err != nil {
		b.Fatal(err)
	}
	c, err := coordinator.New(ctx, coordinator.Options{Store: st, Artifacts: arts, Dir: dir,
		WorkerTokens: map[string]string{"w1": workerToken, "w2": workerToken + "2"}, ClientToken: clientToken, CommitInterval: benchInterval()})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	wctx, cancel := context.WithCancel(ctx)
	var done []chan error
	for _, tok := range []string{workerToken, workerToken + "2"} {
		wc, _ := api.NewClient(srv.URL, tok, nil)
		w, err := worker.New(worker.Options{Client: wc, Dir: b.TempDir(), Slots: 2, DrainTimeout: -1})
		if err != nil {
			b.Fatal(err)
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- w.Run(wctx); w.Close() }()
	}
	b.Cleanup(func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
		srv.Close()
		c.Close()
		st.Close()
	})
	cc, _ := api.NewClient(srv.URL, clientToken, nil)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ws, err := cc.Workers(ctx)
		n := 0
		for _, w := range ws {
			if w.Connected {
				n++
			}
		}
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("workers did not connect")
		}
	}
	return cc
}

// benchTrivial runs b.N trivial jobs ("true <n>") as one wide graph or
// one chain and reports the wall time per job.
func benchTrivial(b *testing.B, chain bool) {
	cc := benchCluster(b)
	g := &graph.Graph{}
	salt := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := 0; i < b.N; i++ {
		j := &graph.Job{Name: "j" + strconv.Itoa(i), SourceMode: graph.SourceNone, Cacheable: true,
			Commands: []graph.Command{{Argv: []string{"true", salt + strconv.Itoa(i)}}}}
		if chain && i > 0 {
			j.Deps = []string{"j" + strconv.Itoa(i-1)}
		}
		g.Jobs = append(g.Jobs, j)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	sub, err := cc.Submit(ctx, api.SubmitRequest{Graph: *g})
	if err != nil {
		b.Fatal(err)
	}
	bs, err := cc.Wait(ctx, sub.BuildID, nil)
	if err != nil {
		b.Fatal(err)
	}
	if bs.State != api.BuildSucceeded {
		b.Fatalf("build %s: %v", bs.State, bs.Counts)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "us/job")
}

// BenchmarkSchedWide and BenchmarkSchedChain profile the scheduling
// overhead of trivial jobs in process; e.g.
//
//	go test ./worker -run X -bench SchedChain -benchtime 2000x -cpuprofile /tmp/cpu.out
func BenchmarkSchedWide(b *testing.B)  { benchTrivial(b, false) }
func BenchmarkSchedChain(b *testing.B) { benchTrivial(b, true) }

// benchInterval is the coordinator's commit interval for the in-process
// benchmarks: TRYD_COMMIT_INTERVAL (a Go duration), else the default.
func benchInterval() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("TRYD_COMMIT_INTERVAL"))
	return d
}
