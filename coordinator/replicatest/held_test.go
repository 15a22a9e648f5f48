package replicatest

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
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// markedJobs is a graph of jobs name-0..name-<n-1> needing worker label
// pool, each creating dir/<job name>.<pid> as it starts (a run) and
// then sleeping for sleep; with chain, each depends on the one before.
func markedJobs(dir, name, pool string, n int, sleep string, chain bool) graph.Graph {
	var g graph.Graph
	for i := range n {
		j := &graph.Job{Name: name + "-" + strconv.Itoa(i), SourceMode: graph.SourceNone, Labels: map[string]string{"pool": pool},
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `touch "$0/$1.$$"; sleep ` + sleep, dir}}}}
		j.Commands[0].Argv = append(j.Commands[0].Argv, j.Name)
		if chain && i > 0 {
			j.Deps = []string{name + "-" + strconv.Itoa(i-1)}
		}
		g.Jobs = append(g.Jobs, j)
	}
	return g
}

// workerGauges reads the tryd_worker_held_assignments gauges of the
// worker serving /metrics at addr, by kind.
func workerGauges(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		kind, found := strings.CutPrefix(series, `tryd_worker_held_assignments{kind="`)
		if !ok || !found {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[strings.TrimSuffix(kind, `"}`)] = v
		}
	}
	return out
}

// TestKillReplicaHeldAssignments: two replicas, two workers that reach
// replica 0 first (so it runs every build; replica 1, without workers,
// claims none): w1 runs a wide build and holds prefetched assignments
// of it, w2 runs a chain and holds its next job pipelined behind the
// running one. Replica 0 is killed with SIGKILL while both hold work;
// the workers fail over to replica 1 (through their proxies), which
// claims the builds once replica 0's leases expire. What users rely on
// holds: every acknowledged build (also one submitted to replica 1
// after the kill) succeeds, every job has exactly one succeeded
// attempt, no attempt is left running; no held assignment starts
// between the kill and the claim (replica 1 hands those jobs out again
// once it holds them); and every run of a job (by its marker files) is
// one of its recorded attempts (an abandoned one for a run the
// replicas could not count), except runs that started within a second
// of the kill, which replica 0 may have dispatched without committing.
func TestKillReplicaHeldAssignments(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTool(t, "sh")
	dsn := pgtest.Start(t).NewDatabase(t)
	opts := Options{Tryd: buildTryd(t), Dir: t.TempDir(), DSN: dsn, Replicas: 2}
	if testing.Verbose() {
		opts.Log = os.Stderr
	}
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &setup{c: c, dsn: dsn}
	var metrics []string
	for i, pool := range []string{"wide", "chain"} {
		addr := testenv.ReservePort(t)
		if _, err := c.StartWorker(WorkerNames[i], 0, 2, "--label", "pool="+pool, "--listen", addr); err != nil {
			t.Fatal(err)
		}
		metrics = append(metrics, addr)
	}
	waitWorkers(t, c, 2)

	dir := t.TempDir()
	var ids []int64
	jobs := 0
	for _, g := range []graph.Graph{
		markedJobs(dir, "wide", "wide", 40, "0.2", false),
		markedJobs(dir, "chain", "chain", 20, "0.3", true),
	} {
		resp, err := c.Client(0).Submit(t.Context(), api.SubmitRequest{Graph: g})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.BuildID)
		jobs += len(g.Jobs)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if workerGauges(metrics[0])["prefetched"] > 0 && workerGauges(metrics[1])["pipelined"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers never held prefetched and pipelined assignments at once: %v %v", workerGauges(metrics[0]), workerGauges(metrics[1]))
		}
	}
	c.Kill(0)
	killed := time.Now()
	t.Log("killed replica 0")
	resp, err := c.Client(1).Submit(t.Context(), api.SubmitRequest{Graph: markedJobs(dir, "after", "wide", 10, "0.1", false)})
	if err != nil {
		t.Fatalf("submit to replica 1 after the kill: %v", err)
	}
	ids = append(ids, resp.BuildID)
	jobs += 10
	s.waitAll(t, 1, ids, 3*time.Minute)
	s.checkExactlyOnce(t, ids, jobs)
	s.checkSettled(t, ids)

	// Runs against recorded attempts.
	const window = time.Second
	unrecorded, forgotten := 0, 0
	for _, id := range ids {
		b, err := c.Client(1).Build(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range b.Jobs {
			runs, _ := filepath.Glob(filepath.Join(dir, j.Name+".*"))
			near := false
			for _, r := range runs {
				fi, err := os.Stat(r)
				if err != nil {
					t.Fatal(err)
				}
				at := fi.ModTime()
				near = near || at.After(killed.Add(-window)) && at.Before(killed.Add(window))
				// Replica 0's leases are renewed every second (TTL
				// 3s): none expires within 2s of the kill, so no
				// replica holds its builds' jobs then.
				if !strings.HasPrefix(j.Name, "after-") && at.After(killed.Add(window)) && at.Before(killed.Add(2*time.Second)) {
					t.Errorf("%s started %v after the kill, before replica 1 could hold it", j.Name, at.Sub(killed).Round(time.Millisecond))
				}
			}
			for _, a := range j.Attempts {
				if a.State == api.AttemptAbandoned && strings.Contains(a.Error, "forgot") {
					forgotten++
				}
			}
			if len(runs) > len(j.Attempts) {
				unrecorded += len(runs) - len(j.Attempts)
				if !near {
					t.Errorf("%s: %d runs, %d attempts, none within %v of the kill: %+v", j.Name, len(runs), len(j.Attempts), window, j.Attempts)
				}
			}
			if len(runs) == 0 {
				t.Errorf("%s never ran", j.Name)
			}
		}
	}
	t.Logf("%d runs not recorded (started as replica 0 died), %d forgotten starts recorded as abandoned", unrecorded, forgotten)
}
