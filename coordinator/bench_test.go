package coordinator

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// benchGraph returns n trivial jobs, as a chain or wide.
func benchGraph(n int, chain bool, salt string) string {
	var jobs []string
	for i := range n {
		deps := ""
		if chain && i > 0 {
			deps = fmt.Sprintf(`, "deps": ["j%d"]`, i-1)
		}
		jobs = append(jobs, fmt.Sprintf(`{"name": "j%d", "source_mode": "none", "cacheable": true%s, "commands": [{"argv": ["true", "%s%d"]}]}`, i, deps, salt, i))
	}
	return `{"jobs": [` + strings.Join(jobs, ",") + `]}`
}

// runAll completes a build with one protocol-driving worker that reports
// every assignment at once with an empty output, returning the elapsed
// time. It measures the coordinator's own per-job cost over real HTTP.
func runAll(b testing.TB, e *env, w *testWorker, id int64, slots int) {
	var buf bytes.Buffer
	if err := graph.WriteOutputs(&buf, b.TempDir()); err != nil {
		b.Fatal(err)
	}
	digest := hexSHA(buf.Bytes())
	if err := w.c.PutArtifact(context.Background(), digest, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		b.Fatal(err)
	}
	var results []api.AttemptResult
	zero := 0
	for {
		resp, err := w.poll(slots, nil, results...)
		if err != nil {
			b.Fatal(err)
		}
		results = results[:0]
		for _, as := range resp.Assignments {
			results = append(results, api.AttemptResult{AttemptID: as.AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: digest})
		}
		if len(resp.Assignments) == 0 && len(results) == 0 {
			if st := e.build(id).State; st.Finished() {
				if st != api.BuildSucceeded {
					b.Fatalf("build %s", st)
				}
				return
			}
		}
	}
}

func benchmarkGraph(b *testing.B, n int, chain bool) {
	reg := prometheus.NewRegistry()
	e := newEnv(b, sqliteBackend, envOpts{mod: func(o *Options) { o.Registry = reg }})
	w := newTestWorker(b, e, "w1", tokenW1, nil)
	w.waitMS = 50
	b.ResetTimer()
	for i := range b.N {
		sub := e.submit(benchGraph(n, chain, fmt.Sprint(i, "-")), api.PriorityTry)
		start := time.Now()
		runAll(b, e, w, sub.BuildID, 4)
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(n), "us/job")
		if mfs, err := reg.Gather(); err == nil {
			for _, mf := range mfs {
				if mf.GetName() == "tryd_coordinator_commit_seconds" {
					h := mf.GetMetric()[0].GetHistogram()
					b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount())*1e6, "us/commit")
					b.ReportMetric(float64(h.GetSampleCount())/float64(n), "commits/job")
				}
			}
		}
		cs := time.Now()
		sub2 := e.submit(benchGraph(n, chain, fmt.Sprint(i, "-")), api.PriorityTry)
		if e.build(sub2.BuildID).State != api.BuildSucceeded {
			b.Fatal("resubmit not cached")
		}
		b.ReportMetric(float64(time.Since(cs).Milliseconds()), "ms/cached-resubmit")
	}
}

func BenchmarkChain2000(b *testing.B) { benchmarkGraph(b, 2000, true) }
func BenchmarkWide2000(b *testing.B)  { benchmarkGraph(b, 2000, false) }

// BenchmarkCachedResubmit10000 measures what bench/sched-overhead.sh
// calls a cached resubmit: a finished graph of 10,000 jobs (wide, and a
// chain) is submitted again (every job cached) and its state read from
// the build list, over real HTTP. The cold run it needs is done once, before the
// timer (and the CPU figure) starts; cloning the graph for each submit
// is outside the timer too. Besides ns/op it reports the process's CPU
// time per resubmit (user+sys), steadier than wall time on a shared
// machine, and the cold run's wall time per job for comparison.
//
// The postgres case measures the same on PostgreSQL; its CPU figure
// leaves out the server's.
func BenchmarkCachedResubmit10000(b *testing.B) {
	b.Run("wide", func(b *testing.B) { benchmarkCachedResubmit(b, sqliteBackend, false) })
	b.Run("chain", func(b *testing.B) { benchmarkCachedResubmit(b, sqliteBackend, true) })
	b.Run("postgres-wide", func(b *testing.B) { benchmarkCachedResubmit(b, postgresBackend, false) })
}

func benchmarkCachedResubmit(b *testing.B, be backend, chain bool) {
	const n = 10000
	e := newEnv(b, be, envOpts{})
	w := newTestWorker(b, e, "w1", tokenW1, nil)
	w.waitMS = 50
	g := benchGraph(n, chain, "")
	cold := time.Now()
	sub := e.submit(g, api.PriorityTry)
	runAll(b, e, w, sub.BuildID, 64)
	coldPerJob := float64(time.Since(cold).Microseconds()) / n
	parsed, err := graph.Decode(strings.NewReader(g))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var cpu time.Duration
	if *resubmitProfile != "" {
		f, err := os.Create(*resubmitProfile)
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		req := api.SubmitRequest{Graph: graph.Graph{Jobs: make([]*graph.Job, len(parsed.Jobs))}}
		for i, j := range parsed.Jobs {
			req.Graph.Jobs[i] = j.Clone()
		}
		cpu0 := processCPU(b)
		b.StartTimer()
		resp, err := e.client.Submit(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		bs, err := e.client.Builds(ctx, api.ListOptions{Limit: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += processCPU(b) - cpu0
		if len(bs) != 1 || bs[0].ID != resp.BuildID || bs[0].State != api.BuildSucceeded {
			b.Fatalf("resubmit %d not finished at once: %+v", resp.BuildID, bs)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/op")
	b.ReportMetric(coldPerJob, "cold-us/job")
}

// processCPU returns the CPU time (user+sys) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resubmitProfile, if set, is where BenchmarkCachedResubmit10000 writes a
// CPU profile of its resubmissions alone (-cpuprofile would include the
// cold run they need).
var resubmitProfile = flag.String("resubmit.cpuprofile", "", "write a CPU profile of the cached resubmissions to this file")
