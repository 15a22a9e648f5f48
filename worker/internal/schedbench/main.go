// Command schedbench measures tryd's scheduling overhead for
// bench/sched-overhead.sh: a real coordinator and real workers (from a
// tryd binary) run thousands of trivial jobs ("true <n>") in a wide graph
// and in a deep chain, compared with xargs running the same commands in
// the same run; then the finished graphs are resubmitted (all cached,
// three times, the median counts); then
// the dispatch latency from submit to a job's first instruction on an idle
// worker is sampled. It prints one "key=value" RESULT line for the script.
//
// For each cold run it also prints the CPU time per job of every process
// (from /proc: the coordinator, each worker, the jobs' processes the
// workers reaped, and this program, which watches the build's events and
// is reported but not counted) against xargs' (its own and its
// children's), and the coordinator's HTTP requests and state commits per
// job: on a shared machine the wall-clock ratio swings with the others'
// load, the CPU ratio much less. -worker-cpuprofile runs the last worker
// in this process and profiles it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testcluster"
)

var (
	verbose  = flag.Bool("v", false, "print each build's submit and finish times")
	procLogs = flag.Bool("logs", false, "show the processes' logs")
	logLevel = flag.String("worker-log-level", "warn", "log level of the workers")
	profile  = flag.String("worker-cpuprofile", "", "run the last worker in this process and write a CPU profile of the process to this file")
)

func main() {
	tryd := flag.String("tryd", "", "tryd binary")
	jobs := flag.Int("jobs", 10000, "jobs per graph")
	workers := flag.Int("workers", 2, "worker processes")
	slots := flag.Int("slots", runtime.NumCPU(), "slots per worker")
	samples := flag.Int("latency-samples", 40, "dispatch latency samples")
	budget := flag.Duration("budget", 200*time.Second, "time budget; the deep chain is scaled down to fit")
	flag.Parse()
	if err := run(*tryd, *jobs, *workers, *slots, *samples, *budget, *procLogs); err != nil {
		fmt.Fprintln(os.Stderr, "schedbench:", err)
		os.Exit(1)
	}
}

func run(tryd string, n, workers, slots, samples int, budget time.Duration, verbose bool) error {
	start := time.Now()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "schedbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := testcluster.Options{Tryd: tryd, Dir: dir, StopTimeout: -1}
	if verbose {
		opts.Log = os.Stderr
	}
	c, err := testcluster.Launch(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	names, pids := []string{"coordinator"}, []int{c.Coordinator().Pid()}
	clientAt := len(pids) // this program, the client watching the builds: reported, not counted
	names, pids = append(names, "bench client"), append(pids, os.Getpid())
	for i := 0; i < workers; i++ {
		if *profile != "" && i == workers-1 {
			stop, err := inProcessWorker(c, testcluster.WorkerNames[i], slots, dir, *profile)
			if err != nil {
				return err
			}
			defer stop()
			continue
		}
		p, err := c.StartWorker(testcluster.WorkerNames[i], testcluster.WorkerOptions{Slots: slots, Args: []string{"--log-level", *logLevel}})
		if err != nil {
			return err
		}
		names, pids = append(names, "worker "+testcluster.WorkerNames[i]), append(pids, p.Pid())
	}
	cpu := newCPUMeter(c.URL, names, pids, clientAt)
	cl, err := api.NewClient(c.URL, c.ClientToken, nil)
	if err != nil {
		return err
	}
	if err := waitWorkers(ctx, cl, workers); err != nil {
		return err
	}
	total := workers * slots
	fmt.Printf("setup: %d workers x %d slots (%d CPUs); coordinator %s\n", workers, slots, runtime.NumCPU(), c.URL)

	// Warm up connections and the database.
	if _, err := timeBuild(ctx, cl, wide(20, "warm")); err != nil {
		return err
	}

	// Each baseline runs just before and just after tryd's run and the
	// mean is used, so that load from elsewhere on the machine, which
	// drifts, weighs on both sides alike.
	wideG := wide(n, "w")
	xargsWide1, xargsWide1CPU, err := xargs(n, total, "w")
	if err != nil {
		return err
	}
	cpu.reset()
	wideCold, err := timeBuild(ctx, cl, wideG)
	if err != nil {
		return err
	}
	wideCPU, wideCPUTotal := cpu.report(n)
	xargsWide2, xargsWide2CPU, err := xargs(n, total, "w")
	if err != nil {
		return err
	}
	wideCached, wideCachedAll, err := cached(ctx, cl, wideG)
	if err != nil {
		return err
	}
	xargsWide := (xargsWide1 + xargsWide2) / 2
	xargsWideCPU := (xargsWide1CPU + xargsWide2CPU) / 2
	fmt.Printf("wide: %d jobs: tryd %.2fs, xargs -P %d %.2fs (mean of %.2fs before, %.2fs after): ratio %.2f; cached resubmit %.3fs (median of %s; %.2f%% of cold)\n",
		n, wideCold.Seconds(), total, xargsWide.Seconds(), xargsWide1.Seconds(), xargsWide2.Seconds(), ratio(wideCold, xargsWide), wideCached.Seconds(), wideCachedAll, 100*ratio(wideCached, wideCold))

	fmt.Printf("wide: CPU per job: tryd %.0fµs (%s); xargs %.0fµs: ratio %.2f\n",
		perJobUS(wideCPUTotal, n), wideCPU, perJobUS(xargsWideCPU, n), ratio(wideCPUTotal, xargsWideCPU))

	// Scale the chain to what is left of the budget, from the wide
	// run's pace (a chain runs one job at a time, and its baseline runs
	// twice, one command at a time).
	deepN := n
	left := budget - time.Since(start) - 20*time.Second
	perJob := (wideCold + 2*xargsWide) / time.Duration(n) * time.Duration(min(total, runtime.NumCPU()))
	if perJob > 0 && time.Duration(deepN)*perJob > left {
		deepN = max(100, int(left/perJob)/100*100)
	}
	deepG := chain(deepN, "d")
	xargsDeep1, xargsDeep1CPU, err := xargs(deepN, 1, "d")
	if err != nil {
		return err
	}
	cpu.reset()
	deepCold, err := timeBuild(ctx, cl, deepG)
	if err != nil {
		return err
	}
	deepCPU, deepCPUTotal := cpu.report(deepN)
	xargsDeep2, xargsDeep2CPU, err := xargs(deepN, 1, "d")
	if err != nil {
		return err
	}
	xargsDeep := (xargsDeep1 + xargsDeep2) / 2
	xargsDeepCPU := (xargsDeep1CPU + xargsDeep2CPU) / 2
	deepCached, deepCachedAll, err := cached(ctx, cl, deepG)
	if err != nil {
		return err
	}
	fmt.Printf("deep: chain of %d jobs: tryd %.2fs, xargs -P 1 (a chain runs one at a time) %.2fs (mean of %.2fs before, %.2fs after): ratio %.2f; cached resubmit %.3fs (median of %s; %.2f%% of cold)\n",
		deepN, deepCold.Seconds(), xargsDeep.Seconds(), xargsDeep1.Seconds(), xargsDeep2.Seconds(), ratio(deepCold, xargsDeep), deepCached.Seconds(), deepCachedAll, 100*ratio(deepCached, deepCold))
	fmt.Printf("deep: CPU per job: tryd %.0fµs (%s); xargs %.0fµs: ratio %.2f\n",
		perJobUS(deepCPUTotal, deepN), deepCPU, perJobUS(xargsDeepCPU, deepN), ratio(deepCPUTotal, xargsDeepCPU))
	// For the record, against the parallel xargs of the wide run (which
	// no chain can match: its jobs must run one after another).
	fmt.Printf("deep vs xargs -P %d of the same number of commands: %.2fx\n",
		total, ratio(deepCold, xargsWide*time.Duration(deepN)/time.Duration(n)))

	lat, err := latencies(ctx, cl, samples)
	if err != nil {
		return err
	}
	p50, p90 := lat[len(lat)/2], lat[len(lat)*9/10]
	fmt.Printf("dispatch latency (submit to job start, idle workers, %d samples): p50 %.2fms p90 %.2fms max %.2fms\n",
		len(lat), ms(p50), ms(p90), ms(lat[len(lat)-1]))
	fmt.Printf("RESULT wide_jobs=%d deep_jobs=%d wide_ratio=%.2f deep_ratio=%.2f cached_pct=%.2f p50_ms=%.2f\n",
		n, deepN, ratio(wideCold, xargsWide), ratio(deepCold, xargsDeep),
		100*max(ratio(wideCached, wideCold), ratio(deepCached, deepCold)), ms(p50))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func waitWorkers(ctx context.Context, cl *api.Client, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ws, err := cl.Workers(ctx)
		if err == nil {
			connected := 0
			for _, w := range ws {
				if w.Connected {
					connected++
				}
			}
			if connected >= n {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%d workers did not connect within 60s", n)
}

// job returns a trivial cacheable job; the argument makes IDs differ.
func job(name string) *graph.Job {
	return &graph.Job{Name: name, SourceMode: graph.SourceNone, Cacheable: true,
		Commands: []graph.Command{{Argv: []string{"true", name}}}}
}

func wide(n int, prefix string) *graph.Graph {
	g := &graph.Graph{}
	for i := 0; i < n; i++ {
		g.Jobs = append(g.Jobs, job(prefix+strconv.Itoa(i)))
	}
	return g
}

func chain(n int, prefix string) *graph.Graph {
	g := &graph.Graph{}
	for i := 0; i < n; i++ {
		j := job(prefix + strconv.Itoa(i))
		if i > 0 {
			j.Deps = []string{prefix + strconv.Itoa(i-1)}
		}
		g.Jobs = append(g.Jobs, j)
	}
	return g
}

// timeBuild submits g and waits until it finishes (from the build list
// when it finished at once, else from its events), returning the time
// from submit to finish (the answer to the submit, alone, is also
// reported when verbose).
func timeBuild(ctx context.Context, cl *api.Client, g *graph.Graph) (time.Duration, error) {
	t0 := time.Now()
	sub, err := cl.Submit(ctx, api.SubmitRequest{Graph: *g})
	if err != nil {
		return 0, err
	}
	submitted := time.Since(t0)
	// A build that finished during its submission (all cached) is seen
	// in the build list at once; reading its thousands of events would
	// measure the client, not the coordinator.
	var state api.BuildState
	if bs, err := cl.Builds(ctx, api.ListOptions{Limit: 1}); err == nil && len(bs) == 1 && bs[0].ID == sub.BuildID && bs[0].State.Finished() {
		state = bs[0].State
	} else {
		err = cl.Events(ctx, sub.BuildID, 0, "", func(ev api.Event) error {
			if ev.Type == api.EventBuildFinished {
				state = ev.BuildState
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	d := time.Since(t0)
	if state != api.BuildSucceeded {
		b, _ := cl.Build(ctx, sub.BuildID)
		if b != nil {
			var why []string
			for _, j := range b.Jobs {
				if j.State == api.JobFailed && len(why) < 5 {
					why = append(why, fmt.Sprintf("%s: %s (attempts %+v)", j.Name, j.Error, j.Attempts))
				}
			}
			return 0, fmt.Errorf("build %d %s: %v\n%s", b.ID, b.State, b.Counts, strings.Join(why, "\n"))
		}
		return 0, fmt.Errorf("build %d %s", sub.BuildID, state)
	}
	if *verbose {
		fmt.Printf("  build %d: %d jobs, submit answered in %v, finished in %v\n", sub.BuildID, len(g.Jobs), submitted.Round(time.Millisecond), d.Round(time.Millisecond))
	}
	return d, nil
}

// cachedRuns is how many times a finished graph is resubmitted; the
// median is reported. A resubmission takes a fraction of a second, so one
// burst of load from elsewhere on a shared machine can double it; the
// median of three discards one such burst but not a slow coordinator.
const cachedRuns = 3

// cached resubmits the finished graph g cachedRuns times and returns the
// median time, and all the times for the record.
func cached(ctx context.Context, cl *api.Client, g *graph.Graph) (time.Duration, string, error) {
	var ds []time.Duration
	for range cachedRuns {
		d, err := timeBuild(ctx, cl, g)
		if err != nil {
			return 0, "", err
		}
		ds = append(ds, d)
	}
	all := make([]string, len(ds))
	for i, d := range ds {
		all[i] = fmt.Sprintf("%.3fs", d.Seconds())
	}
	slices.Sort(ds)
	return ds[len(ds)/2], strings.Join(all, ", "), nil
}

// xargs runs "true <prefix><i>" for every i with xargs -P p and returns
// the wall time and the CPU time of xargs and the commands it ran.
func xargs(n, p int, prefix string) (time.Duration, time.Duration, error) {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	cmd := exec.Command("xargs", "-P", strconv.Itoa(p), "-n", "1", "true")
	cmd.Stdin = strings.NewReader(b.String())
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("xargs: %v: %s", err, out)
	}
	d := time.Since(t0)
	// wait4's usage of xargs includes the children it reaped.
	return d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// latencies samples submit-to-start: each build is one job whose first
// instruction prints the wall clock (date +%s%N); the time is read back
// from the job's log.
func latencies(ctx context.Context, cl *api.Client, n int) ([]time.Duration, error) {
	date, err := exec.LookPath("date")
	if err != nil {
		return nil, err
	}
	date, _ = filepath.EvalSymlinks(date)
	var out []time.Duration
	for i := 0; i < n; i++ {
		time.Sleep(30 * time.Millisecond) // let the workers go idle in their long-poll
		g := &graph.Graph{Jobs: []*graph.Job{{Name: "lat", SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{date, "+%s%N"}, Env: []string{"SAMPLE=" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)}}}}}}
		t0 := time.Now()
		sub, err := cl.Submit(ctx, api.SubmitRequest{Graph: *g})
		if err != nil {
			return nil, err
		}
		b, err := cl.Wait(ctx, sub.BuildID, nil)
		if err != nil {
			return nil, err
		}
		if b.State != api.BuildSucceeded {
			return nil, fmt.Errorf("latency build %d %s", b.ID, b.State)
		}
		if len(b.Jobs) != 1 || len(b.Jobs[0].Attempts) == 0 {
			return nil, fmt.Errorf("latency build %d: no attempt in %+v", b.ID, b.Jobs)
		}
		atts := b.Jobs[0].Attempts
		rc, err := cl.AttemptLog(ctx, atts[len(atts)-1].ID, 0, false)
		if err != nil {
			return nil, err
		}
		buf, err := io.ReadAll(io.LimitReader(rc, 256))
		rc.Close()
		if err != nil {
			return nil, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(buf)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("latency job log %q: %v", buf, err)
		}
		out = append(out, time.Unix(0, ns).Sub(t0))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
