package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/dashboard"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker"
)

// TestBenchGrid is the measurement behind bench/dashboard-grid.sh; it
// runs only when TRYD_BENCH_DASHBOARD is set (the script sets it) and
// prints "name value" lines the script reads:
//
//   - a grid of 100 commits × 40 builders (post-submit builds in a real
//     coordinator, mostly reused cached results, about 4% real failures
//     run by a real worker, a few cells not built) rendered by the
//     dashboard over HTTP, against an empty grid as the baseline: the p50
//     of whole requests, including the dashboard's reads from the
//     coordinator, of a dashboard that has shown the grid before (as a
//     grid kept on a screen is), and of fresh dashboards (cold: every
//     build read from the coordinator);
//   - a job log of 50 MB (a real job writing it, streamed by the worker
//     to the coordinator), served as the HTML log page: the growth of
//     the process's heap while it streams.
func TestBenchGrid(t *testing.T) {
	if os.Getenv("TRYD_BENCH_DASHBOARD") == "" {
		t.Skip("benchmark: run bench/dashboard-grid.sh (sets TRYD_BENCH_DASHBOARD)")
	}
	testenv.NeedTool(t, "sh")
	commits, builders := envInt("TRYD_BENCH_COMMITS", 100), envInt("TRYD_BENCH_BUILDERS", 40)
	logMB := envInt("TRYD_BENCH_LOG_MB", 50)
	requests := envInt("TRYD_BENCH_REQUESTS", 40)
	dir := t.TempDir()
	ctx := context.Background()

	store, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var c *coordinator.Coordinator
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(dir, "artifacts"), Pinned: func(d string) bool { return c != nil && c.Pinned(d) }})
	if err != nil {
		t.Fatal(err)
	}
	c, err = coordinator.New(ctx, coordinator.Options{
		Store: store, Artifacts: arts, Dir: dir,
		WorkerTokens: map[string]string{"w1": "bench-worker-token-0123456789"}, ClientToken: "bench-client-token-0123456789",
		MaxLogBytes: int64(logMB+8) << 20, Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	curl := serve(t, c.Handler(), "coordinator")
	cl, _ := api.NewClient(curl, "bench-client-token-0123456789", nil)
	wcl, _ := api.NewClient(curl, "bench-worker-token-0123456789", nil)
	w, err := worker.New(worker.Options{Client: wcl, Dir: filepath.Join(dir, "worker"), Slots: 4, Log: testLogger(t), DrainTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.Run(wctx) }()
	defer func() { wcancel(); wg.Wait() }()

	d, err := dashboard.New(dashboard.Options{Coordinator: cl, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	durl := serve(t, d.Handler(), "dashboard")

	// Seed the grid. Equal cacheable jobs make most builds finish at
	// submission from the cached result; failures are not cached, so
	// every failing cell is a real run.
	start := time.Now()
	ok := &graph.Job{Name: "test", SourceMode: graph.SourceNone, Cacheable: true, Commands: []graph.Command{{Argv: []string{"sh", "-c", "echo PASS"}}}}
	var ids []int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := 0; i < commits; i++ {
		for b := 0; b < builders; b++ {
			if (i*7+b*3)%53 == 0 {
				continue // not built
			}
			job := ok
			if (i*11+b*5)%25 == 0 {
				job = &graph.Job{Name: "test", SourceMode: graph.SourceNone, Commands: []graph.Command{{Argv: []string{"sh", "-c", fmt.Sprintf("echo FAIL %d %d; exit 1", i, b)}}}}
			}
			labels := map[string]string{"repo": "bench", "branch": "main", "revision": rev(i), "builder": fmt.Sprintf("os%d-arch%d-v%d", b%5, b%3, b),
				"commit_time": time.Unix(1.7e9+int64(i)*60, 0).UTC().Format(time.RFC3339), "commit_author": "Author " + strconv.Itoa(i%17), "commit_subject": "commit subject number " + strconv.Itoa(i)}
			g.Go(func() error {
				sub, err := cl.Submit(gctx, api.SubmitRequest{Graph: graph.Graph{Jobs: []*graph.Job{job}}, Priority: api.PriorityPostSubmit, Labels: labels})
				if err != nil {
					return err
				}
				mu.Lock()
				ids = append(ids, sub.BuildID)
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := cl.Wait(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("seed_builds %d\nseed_seconds %.1f\n", len(ids), time.Since(start).Seconds())

	full := "/grid/bench?branch=main&n=" + strconv.Itoa(commits)
	empty := "/grid/nothing?branch=main&n=" + strconv.Itoa(commits)
	var gv dashboard.Grid
	if err := getJSONURL(durl+full+"&format=json", &gv); err != nil {
		t.Fatal(err)
	}
	cols := 0
	for _, p := range gv.Platforms {
		cols += len(p.Builders)
	}
	if len(gv.Commits) != commits || cols != builders {
		t.Fatalf("grid has %d commits × %d builders, want %d × %d", len(gv.Commits), cols, commits, builders)
	}
	fmt.Printf("grid_commits %d\ngrid_builders %d\n", len(gv.Commits), cols)
	// Alternate the two so that machine noise hits both alike.
	var tFull, tEmpty []time.Duration
	var size int64
	for i := 0; i < requests; i++ {
		dt, n, err := timeGet(durl + full)
		if err != nil {
			t.Fatal(err)
		}
		tFull, size = append(tFull, dt), n
		if dt, _, err = timeGet(durl + empty); err != nil {
			t.Fatal(err)
		}
		tEmpty = append(tEmpty, dt)
	}
	fmt.Printf("grid_html_bytes %d\ngrid_p50_ms %.2f\ngrid_p90_ms %.2f\nempty_p50_ms %.2f\n", size, ms(pct(tFull, 50)), ms(pct(tFull, 90)), ms(pct(tEmpty, 50)))
	// Cold: a fresh dashboard (nothing held) reads every build.
	var tCold []time.Duration
	for i := 0; i < 5; i++ {
		d2, err := dashboard.New(dashboard.Options{Coordinator: cl, Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		dt, _, err := timeGet(serve(t, d2.Handler(), "dashboard") + full)
		if err != nil {
			t.Fatal(err)
		}
		tCold = append(tCold, dt)
	}
	fmt.Printf("grid_cold_p50_ms %.2f\n", ms(pct(tCold, 50)))

	// The 50 MB log.
	sub, err := cl.Submit(ctx, api.SubmitRequest{Graph: graph.Graph{Jobs: []*graph.Job{{Name: "biglog", SourceMode: graph.SourceNone,
		Commands: []graph.Command{{Argv: []string{"sh", "-c", fmt.Sprintf(`yes 'a line of build output with \033[32mcolour\033[0m and <markup> & more text to be escaped' | head -c %d`, logMB<<20)}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Wait(ctx, sub.BuildID, nil)
	if err != nil || b.State != api.BuildSucceeded {
		t.Fatalf("log build: %v %+v", err, b)
	}
	att := b.Jobs[0].Attempts[0]
	if att.LogBytes < int64(logMB)<<20 {
		t.Fatalf("log is %d bytes, want %d MB", att.LogBytes, logMB)
	}
	// Live heap: sampled right after a collection, every 50 ms while the
	// page streams, so that garbage waiting for the collector does not
	// count as held. (The process also holds the coordinator, whose log
	// reads are streamed from disk too.)
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var peakLive, peakInuse uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.GC()
			runtime.ReadMemStats(&m)
			peakLive = max(peakLive, m.HeapAlloc)
			peakInuse = max(peakInuse, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	dt, n, err := timeGet(durl + "/logs/" + att.ID)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	mb := func(a, b uint64) float64 { return float64(a-min(a, b)) / (1 << 20) }
	fmt.Printf("log_bytes %d\nlog_html_bytes %d\nlog_seconds %.2f\nlog_heap_before_mb %.1f\nlog_live_heap_growth_mb %.1f\nlog_heap_inuse_growth_mb %.1f\n",
		att.LogBytes, n, dt.Seconds(), float64(ms0.HeapAlloc)/(1<<20), mb(peakLive, ms0.HeapAlloc), mb(peakInuse, ms0.HeapInuse))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func timeGet(u string) (time.Duration, int64, error) {
	start := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return time.Since(start), n, err
}

func getJSONURL(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return jsonDecode(resp.Body, v)
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
