package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"strings"
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

func BenchmarkCachedResubmit10000(b *testing.B) {
	e := newEnv(b, sqliteBackend, envOpts{})
	w := newTestWorker(b, e, "w1", tokenW1, nil)
	w.waitMS = 50
	g := benchGraph(10000, false, "")
	sub := e.submit(g, api.PriorityTry)
	runAll(b, e, w, sub.BuildID, 64)
	parsed, err := graph.Decode(strings.NewReader(g))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		req := api.SubmitRequest{Graph: graph.Graph{Jobs: make([]*graph.Job, len(parsed.Jobs))}}
		for i, j := range parsed.Jobs {
			req.Graph.Jobs[i] = j.Clone()
		}
		resp, err := e.client.Submit(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if st := e.build(resp.BuildID).State; st != api.BuildSucceeded {
			b.Fatalf("resubmit: %s", st)
		}
	}
}
