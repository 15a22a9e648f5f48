package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// TestPrefetchingWorkerKilled: a worker with one slot holds prefetched
// assignments beyond it (the only worker, with more ready jobs than
// slots) and is killed with SIGKILL mid-build. Nothing is lost: another
// worker finishes the build, and the attempts the killed worker held
// but had not started (as far as the coordinator knew) use none of
// their jobs' attempts: at most its one running attempt is lost.
func TestPrefetchingWorkerKilled(t *testing.T) {
	t.Parallel()
	e := start(t, "  heartbeat_timeout: 2s\n")
	w1 := e.worker("w1", "--slots", "1")
	dir := t.TempDir()
	g := &graph.Graph{}
	for i := range 12 {
		j := sh("j"+strconv.Itoa(i), `touch "$0/started-$1"; sleep 0.3`)
		j.Commands[0].Argv = append(j.Commands[0].Argv, dir, strconv.Itoa(i))
		g.Jobs = append(g.Jobs, j)
	}
	id, _ := e.submit(g)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		started, _ := filepath.Glob(filepath.Join(dir, "started-*"))
		if len(started) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs did not start on w1\n%s", e.logs)
		}
	}
	w1.Kill()
	e.worker("w2", "--slots", "2")
	b := e.wait(id)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	lost := 0
	for _, j := range b.Jobs {
		for _, a := range j.Attempts {
			if a.State == api.AttemptLost {
				lost++
			}
		}
		if n := len(j.Attempts); n < 1 || n > 2 || j.Attempts[n-1].State != api.AttemptSucceeded {
			t.Errorf("%s: attempts %+v", j.Name, j.Attempts)
		}
	}
	if lost > 1 {
		t.Errorf("%d attempts lost with a worker of one slot, want at most 1", lost)
	}
	if _, err := os.Stat(filepath.Join(dir, "started-11")); err != nil {
		t.Errorf("last job never ran: %v", err)
	}
	// The test is about prefetched attempts: there were some, and
	// some were taken back when w1 died.
	m := coordinatorMetrics(t, e.c.URL)
	if m[`tryd_coordinator_prefetched_total{event="handed_out"}`] == 0 || m[`tryd_coordinator_prefetched_total{event="taken_back"}`] == 0 {
		t.Errorf("prefetched assignments: %v", m)
	}
}

// coordinatorMetrics reads the coordinator's tryd_coordinator_prefetched_total
// counters from /metrics, by series.
func coordinatorMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(series, "tryd_coordinator_prefetched_total") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[series] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPrefetchYieldsToPriority: two workers prefetch jobs of a periodic
// build; a try build submitted meanwhile takes the slots first (the
// prefetched periodic jobs are taken back) and finishes first, and
// every job of both runs exactly one attempt.
func TestPrefetchYieldsToPriority(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "2")
	e.worker("w2", "--slots", "2")
	wide := func(prefix string) graph.Graph {
		g := graph.Graph{}
		for i := range 400 {
			g.Jobs = append(g.Jobs, &graph.Job{Name: prefix + strconv.Itoa(i), SourceMode: graph.SourceNone,
				Commands: []graph.Command{{Argv: []string{"true", prefix + strconv.Itoa(i)}}}})
		}
		return g
	}
	ctx := context.Background()
	periodic, err := e.cl.Submit(ctx, api.SubmitRequest{Graph: wide("p"), Priority: api.PriorityPeriodic})
	if err != nil {
		t.Fatal(err)
	}
	// Let the periodic build run (and the workers prefetch its jobs).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := e.cl.Build(ctx, periodic.BuildID)
		if err != nil {
			t.Fatal(err)
		}
		if b.Counts[api.JobSucceeded] >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("periodic build does not progress: %v", b.Counts)
		}
	}
	try, err := e.cl.Submit(ctx, api.SubmitRequest{Graph: wide("t"), Priority: api.PriorityTry})
	if err != nil {
		t.Fatal(err)
	}
	tb, pb := e.wait(try.BuildID), e.wait(periodic.BuildID)
	for _, b := range []*api.Build{tb, pb} {
		if b.State != api.BuildSucceeded {
			t.Fatalf("build %d %s: %v", b.ID, b.State, b.Counts)
		}
		for _, j := range b.Jobs {
			if len(j.Attempts) != 1 {
				t.Errorf("build %d: %s ran %d attempts: %+v", b.ID, j.Name, len(j.Attempts), j.Attempts)
			}
		}
	}
	if tb.Finished == nil || pb.Finished == nil || !tb.Finished.Before(*pb.Finished) {
		t.Errorf("try build finished at %v, not before the periodic build (%v)", tb.Finished, pb.Finished)
	}
	m := coordinatorMetrics(t, e.c.URL)
	if m[`tryd_coordinator_prefetched_total{event="taken_back"}`] == 0 {
		t.Errorf("no prefetched attempt was taken back: %v", m)
	}
}
