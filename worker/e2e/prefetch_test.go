package e2e

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testcluster"
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
	id, _ := e.submit(touchJobs(dir, 12))
	e.waitHolding(dir)
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
		if n := counted(j.Attempts); n < 1 || n > 2 || api.LatestAttempt(j.Attempts).State != api.AttemptSucceeded {
			t.Errorf("%s: attempts %+v", j.Name, j.Attempts)
		}
	}
	if lost > 1 {
		t.Errorf("%d attempts lost with a worker of one slot, want at most 1", lost)
	}
	if runs, _ := filepath.Glob(filepath.Join(dir, "started-11-*")); len(runs) == 0 {
		t.Errorf("last job never ran")
	}
	// The test is about prefetched attempts: there were some, and
	// some were taken back when w1 died.
	m := coordinatorMetrics(t, e.c.URL)
	if m[`tryd_coordinator_prefetched_total{event="handed_out"}`] == 0 || m[`tryd_coordinator_prefetched_total{event="taken_back"}`] == 0 {
		t.Errorf("prefetched assignments: %v", m)
	}
}

// coordinatorMetrics reads the coordinator's metrics, by series
// (testcluster.Metrics).
func coordinatorMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	m, err := testcluster.Metrics(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPrefetchYieldsToPriority: two workers prefetch jobs of a periodic
// build; a try build submitted meanwhile takes the slots first (the
// prefetched periodic jobs are asked back: the workers answer release
// requests) and finishes first, and every job of both runs exactly one
// attempt. (A worker left with periodic jobs to run may still take a
// try job the other holds at once, which can cross its start: that
// run is abandoned, not counted.)
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
			if counted(j.Attempts) != 1 {
				t.Errorf("build %d: %s ran %d counted attempts: %+v", b.ID, j.Name, counted(j.Attempts), j.Attempts)
			}
		}
	}
	if tb.Finished == nil || pb.Finished == nil || !tb.Finished.Before(*pb.Finished) {
		t.Errorf("try build finished at %v, not before the periodic build (%v)", tb.Finished, pb.Finished)
	}
	m := coordinatorMetrics(t, e.c.URL)
	if m[`tryd_coordinator_prefetched_total{event="release_requested"}`] == 0 {
		t.Errorf("no prefetched attempt was asked back: %v", m)
	}
}

// delayPrefetch is a proxy in front of the coordinator that holds back
// for delay the poll answers carrying prefetched assignments (a slow
// network), so that the worker decides on its next poll meanwhile.
func delayPrefetch(t *testing.T, upstream string, delay time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, body, err := forward(r.Context(), upstream, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if r.URL.Path == "/api/worker/poll" && bytes.Contains(body, []byte(`"prefetched":true`)) {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return // the worker dropped the poll: its answer is lost
			}
		}
		answer(w, resp, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPrefetchAnswerNotDropped: a worker whose waiting poll asked for
// prefetched work but no slot (its one slot busy) does not cancel that
// poll when the slot frees: the poll may carry prefetched assignments
// (here held back by a slow link), and one cancelled loses them, its
// jobs stuck on the coordinator as held by the worker until it takes
// them back, 5s and two polls later.
func TestPrefetchAnswerNotDropped(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "1", "--coordinator", delayPrefetch(t, e.c.URL, 2*time.Second))
	ctx := context.Background()
	first, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{sh("first", "sleep 1")}})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := e.cl.Build(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		if b.Counts[api.JobRunning] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first job does not start: %v", b.Counts)
		}
	}
	// Prefetched on w1 (its slot is busy), answered 2s later.
	second, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{sh("second", "true")}})
	fb, sb := e.wait(first), e.wait(second)
	if fb.State != api.BuildSucceeded || sb.State != api.BuildSucceeded {
		t.Fatalf("builds %s, %s", fb.State, sb.State)
	}
	if d := sb.Finished.Sub(*fb.Finished); d > 4*time.Second {
		t.Errorf("second build finished %v after the first, want within 4s (its prefetched answer was lost)", d)
	}
	m := coordinatorMetrics(t, e.c.URL)
	if m[`tryd_coordinator_prefetched_total{event="handed_out"}`] == 0 || m[`tryd_coordinator_prefetched_total{event="taken_back"}`] != 0 {
		t.Errorf("prefetched assignments: %v (want some handed out, none taken back)", m)
	}
}

// TestCoordinatorRestartWithPrefetched: the coordinator is killed with
// SIGKILL while its one worker (one slot) holds prefetched attempts.
// They were never recorded: the worker starts none of them while the
// coordinator is away (TestNoPrefetchedStartsDuringOutage) and drops
// them when it registers again, and one it started just before the kill
// is cancelled by the restarted coordinator. The build completes with
// every job succeeding by exactly one attempt, its output and log those
// of that attempt.
func TestCoordinatorRestartWithPrefetched(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "1")
	dir := t.TempDir()
	g := &graph.Graph{}
	for i := range 8 {
		n := strconv.Itoa(i)
		j := sh("j"+n, `touch "$0/started-$1-$$"; sleep 0.4; echo "job $1 pid $$"; echo "$1 $$" > "$2/out"`)
		j.Commands[0].Argv = append(j.Commands[0].Argv, dir, n, "{{OUTPUT_DIR}}")
		g.Jobs = append(g.Jobs, j)
	}
	id, ids := e.submit(g)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		started, _ := filepath.Glob(filepath.Join(dir, "started-*"))
		m := coordinatorMetrics(t, e.c.URL)
		if len(started) >= 1 && m[`tryd_coordinator_prefetched_total{event="handed_out"}`] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs did not start on w1 with prefetched ones\n%s", e.logs)
		}
	}
	e.killCoordinator(1500 * time.Millisecond)
	b := e.wait(id)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s after coordinator restart: %v", b.State, b.Counts)
	}
	runs, _ := filepath.Glob(filepath.Join(dir, "started-*"))
	t.Logf("%d runs of %d jobs", len(runs), len(b.Jobs))
	for _, j := range b.Jobs {
		succeeded := 0
		for _, a := range j.Attempts {
			if a.State == api.AttemptSucceeded {
				succeeded++
			}
			if a.State == api.AttemptRunning {
				t.Errorf("%s: attempt %s still running in a finished build", j.Name, a.ID)
			}
		}
		if succeeded != 1 {
			t.Errorf("%s: %d succeeded attempts, want 1: %+v", j.Name, succeeded, j.Attempts)
			continue
		}
		n := strings.TrimPrefix(j.Name, "j")
		out := readFile(t, filepath.Join(e.output(ids[j.Name]), "out"))
		num, pid, _ := strings.Cut(strings.TrimSpace(out), " ")
		if num != n {
			t.Errorf("%s: output %q", j.Name, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "started-"+n+"-"+pid)); err != nil {
			t.Errorf("%s: output of a run that never started: %v", j.Name, err)
		}
		if log := e.log(ids[j.Name]); log != "job "+n+" pid "+pid+"\n" {
			t.Errorf("%s: log %q, want the run whose output counted (pid %s)", j.Name, log, pid)
		}
	}
}

// counted is the number of attempts that count against the job's
// attempt limit: not the abandoned ones, runs a worker started as the
// coordinator took them back (their results are refused).
func counted(atts []api.Attempt) int {
	n := 0
	for _, a := range atts {
		if a.State.Charged() {
			n++
		}
	}
	return n
}

// TestIdleWorkerGetsReleased: a worker of one slot holds all the jobs
// it does not run as prefetched assignments (5 jobs: one running, 4
// held); a second worker joins with nothing else to run and takes held
// ones through release requests (the holder drops one it has not
// started, or keeps one it has). Every job runs exactly once, on one
// worker: no run is abandoned and none crossed a take-back.
func TestIdleWorkerGetsReleased(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "1")
	dir := t.TempDir()
	id, _ := e.submit(touchJobs(dir, 5))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		started, _ := filepath.Glob(filepath.Join(dir, "started-*"))
		if len(started) >= 2 && coordinatorMetrics(t, e.c.URL)[`tryd_coordinator_prefetched_total{event="handed_out"}`] == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("w1 did not start a prefetched job\n%s", e.logs)
		}
	}
	e.worker("w2", "--slots", "1")
	b := e.wait(id)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	checkOnce(t, b)
	workers := map[string]bool{}
	for _, j := range b.Jobs {
		runs, _ := filepath.Glob(filepath.Join(dir, "started-"+j.Name[1:]+"-*"))
		if len(runs) != 1 || len(j.Attempts) != 1 {
			t.Errorf("%s: %d runs, attempts %+v; want one run, one attempt", j.Name, len(runs), j.Attempts)
		}
		for _, a := range j.Attempts {
			workers[a.Worker] = true
		}
	}
	m := coordinatorMetrics(t, e.c.URL)
	if m[`tryd_coordinator_prefetched_total{event="release_requested"}`] == 0 || !workers["w2"] {
		t.Errorf("the idle worker asked for no release (ran on %v): %v", workers, m)
	}
	for _, ev := range []string{"taken_back", "started_after_take_back"} {
		if n := m[`tryd_coordinator_prefetched_total{event="`+ev+`"}`]; n != 0 {
			t.Errorf("prefetched %s: %v, want 0", ev, n)
		}
	}
}
