package e2e

import (
	"bufio"
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
