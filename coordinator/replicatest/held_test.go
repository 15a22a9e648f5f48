package replicatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// markedJobs is a graph of jobs name-0..name-<n-1> needing worker label
// pool (if not empty), each creating dir/<job name>.<pid> as it starts (a run) and
// then sleeping for sleep; with chain, each depends on the one before.
func markedJobs(dir, name, pool string, n int, sleep string, chain bool) graph.Graph {
	var g graph.Graph
	for i := range n {
		j := &graph.Job{Name: name + "-" + strconv.Itoa(i), SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `touch "$0/$1.$$"; sleep ` + sleep, dir}}}}
		if pool != "" {
			j.Labels = map[string]string{"pool": pool}
		}
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
	m, _ := testcluster.Metrics(context.Background(), "http://"+addr)
	for _, kind := range []string{"prefetched", "pipelined"} {
		out[kind] = m[`tryd_worker_held_assignments{kind="`+kind+`"}`]
	}
	return out
}

// TestKillReplicaHeldAssignments: two replicas, three workers that
// reach replica 0 first (so it runs every build; replica 1, without
// workers, claims none): w1 runs a wide build and holds prefetched
// assignments of it, w2 runs a chain and holds its next job pipelined
// behind the running one, w3 runs two long jobs (4s each, logging
// before and after). Replica 0 is killed with SIGKILL while all hold
// or run work; the workers fail over to replica 1 (through their
// proxies), which claims the builds once replica 0's leases expire.
// What users rely on holds: every acknowledged build (also one
// submitted to replica 1 after the kill) succeeds, every job has
// exactly one succeeded attempt, no attempt is left running; no held
// assignment starts between the kill and the claim (replica 1 hands
// those jobs out again once it holds them); every run of a job (by its
// marker files) is one of its recorded attempts (an abandoned one for
// a run the replicas could not count: a prefetched start replica 0
// never heard of, or an attempt it dispatched without committing it);
// and the long jobs, running at the kill, ran once: replica 1 adopted
// their attempts when it claimed their build (their workers listed
// them when they registered with it) instead of cancelling them and
// running the jobs again, and their logs end as they did.
func TestKillReplicaHeldAssignments(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTool(t, "sh")
	s := replicasOn(t, pgtest.Start(t).NewDatabase(t))
	c := s.c
	var metrics []string
	for i, pool := range []string{"wide", "chain", "long"} {
		addr := testenv.ReservePort(t)
		if _, err := c.StartWorker(WorkerNames[i], 0, 2, "--label", "pool="+pool, "--listen", addr); err != nil {
			t.Fatal(err)
		}
		metrics = append(metrics, addr)
	}
	waitWorkers(t, c, 3)

	dir := t.TempDir()
	var ids []int64
	jobs := 0
	for _, g := range []graph.Graph{
		// Logging before and after the sleep.
		markedJobs(dir, "long", "long", 2, "0; echo start; sleep 4; echo end", false),
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
		long, _ := filepath.Glob(filepath.Join(dir, "long-*"))
		if workerGauges(metrics[0])["prefetched"] > 0 && workerGauges(metrics[1])["pipelined"] > 0 && len(long) == 2 {
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
	forgotten := 0
	for _, id := range ids {
		b, err := c.Client(1).Build(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range b.Jobs {
			runs, _ := filepath.Glob(filepath.Join(dir, j.Name+".*"))
			for _, r := range runs {
				fi, err := os.Stat(r)
				if err != nil {
					t.Fatal(err)
				}
				// Replica 0's leases are renewed every second (TTL
				// 3s): none expires within 2s of the kill, so no
				// replica holds its builds' jobs then (a start
				// within 1s of the kill may have been on its way).
				at := fi.ModTime()
				if !strings.HasPrefix(j.Name, "after-") && at.After(killed.Add(time.Second)) && at.Before(killed.Add(2*time.Second)) {
					t.Errorf("%s started %v after the kill, before replica 1 could hold it", j.Name, at.Sub(killed).Round(time.Millisecond))
				}
			}
			for _, a := range j.Attempts {
				if a.State == api.AttemptAbandoned && strings.Contains(a.Error, "forgot") {
					forgotten++
				}
				// Every attempt replica 0 recorded running was
				// listed by its worker when it registered with
				// replica 1, which adopted it at the claim.
				if a.State == api.AttemptAbandoned && strings.Contains(a.Error, "never confirmed") {
					t.Errorf("%s: attempt %s of a worker that failed over was not adopted: %s", j.Name, a.ID, a.Error)
				}
			}
			// Attempts may outnumber runs (one whose assignment
			// died with replica 0), never the other way.
			if len(runs) > len(j.Attempts) {
				t.Errorf("%s: %d runs, %d attempts: %+v", j.Name, len(runs), len(j.Attempts), j.Attempts)
			}
			if len(runs) == 0 {
				t.Errorf("%s never ran", j.Name)
			}
			if strings.HasPrefix(j.Name, "long-") {
				// Running at the kill (4s from a start before it):
				// adopted by replica 1, never run again.
				if len(runs) == 1 {
					if fi, err := os.Stat(runs[0]); err == nil && fi.ModTime().Before(killed.Add(-4*time.Second)) {
						t.Errorf("%s started %v before the kill: it was not running then", j.Name, killed.Sub(fi.ModTime()))
					}
				}
				if len(runs) != 1 || len(j.Attempts) != 1 || j.Attempts[0].State != api.AttemptSucceeded {
					t.Errorf("%s, running at the kill: %d runs, attempts %+v; want one run, its attempt succeeded", j.Name, len(runs), j.Attempts)
				} else if rc, err := c.Client(1).AttemptLog(t.Context(), j.Attempts[0].ID, 0, false); err != nil {
					t.Errorf("%s's log: %v", j.Name, err)
				} else {
					// Its start may have gone to replica 0's disk: a
					// notice of its length stands for it. Its end is
					// there, also when the job ended before the claim
					// (replica 1 keeps the chunks of an attempt
					// waiting for its build's claim, and answers 503
					// to those that come before the worker registers).
					log, _ := io.ReadAll(rc)
					rc.Close()
					t.Logf("%s's log on replica 1: %q", j.Name, log)
					if len(log) != len("start\nend\n") || !strings.HasSuffix(string(log), "\nend\n") {
						t.Errorf("%s's log on replica 1 = %q; want start (or a notice of its length), end", j.Name, log)
					}
				}
			}
		}
	}
	t.Logf("%d runs the replicas forgot, recorded as abandoned", forgotten)
}

// tripProxy is an HTTP proxy for one worker in front of the replicas:
// it forwards each request to the first replica that accepts the
// connection (as the failover proxy does), and calls trip, once, for
// the first poll that reports starts of prefetched attempts: that poll
// then breaks without reaching any replica.
type tripProxy struct {
	backends []string // replica URLs, preferred first
	trip     func()
	tripped  atomic.Bool
}

func (p *tripProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if r.URL.Path == "/api/worker/poll" && !p.tripped.Load() {
		var req api.PollRequest
		if json.Unmarshal(body, &req) == nil && len(req.Started) > 0 && p.tripped.CompareAndSwap(false, true) {
			p.trip()
			panic(http.ErrAbortHandler)
		}
	}
	for _, b := range p.backends {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, b+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		out.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(out)
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			continue // that replica is down: the next one
		}
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		// Streamed: an early poll answer comes in two parts.
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}
	panic(http.ErrAbortHandler)
}

// TestKillReplicaForgottenStart: a worker of one slot, on replica 0,
// started a prefetched assignment, and replica 0 is killed (SIGKILL)
// before the poll reporting that start reaches it. The worker fails
// over to replica 1, registering again (which cancels the attempt);
// replica 1 does not hold the build yet, so it asks for the start again
// later (starts_later), and records it as an abandoned attempt once it
// claimed the build. The history is true: every run of every job is
// one of its attempts, every job succeeded by exactly one, nothing is
// left running.
func TestKillReplicaForgottenStart(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTool(t, "sh")
	s := replicasOn(t, pgtest.Start(t).NewDatabase(t))
	c := s.c
	killed := make(chan time.Time, 1)
	proxy := &tripProxy{backends: []string{c.Coordinator(0).URL, c.Coordinator(1).URL}, trip: func() {
		c.Kill(0)
		killed <- time.Now()
	}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	// Its own --coordinator (the last flag wins): the trip proxy.
	if _, err := c.StartWorker(WorkerNames[0], 0, 1, "--coordinator", srv.URL); err != nil {
		t.Fatal(err)
	}
	waitWorkers(t, c, 1)
	dir := t.TempDir()
	resp, err := c.Client(0).Submit(t.Context(), api.SubmitRequest{Graph: markedJobs(dir, "wide", "", 12, "0.3", false)})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{resp.BuildID}
	select {
	case at := <-killed:
		t.Logf("killed replica 0 as the worker reported a start, %v", at.Format(time.StampMilli))
	case <-time.After(2 * time.Minute):
		t.Fatal("the worker reported no start of a prefetched attempt")
	}
	s.waitAll(t, 1, ids, 3*time.Minute)
	s.checkExactlyOnce(t, ids, 12)
	s.checkSettled(t, ids)
	b, err := c.Client(1).Build(t.Context(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	forgotten := 0
	for _, j := range b.Jobs {
		runs, _ := filepath.Glob(filepath.Join(dir, j.Name+".*"))
		for _, a := range j.Attempts {
			if a.State == api.AttemptAbandoned && strings.Contains(a.Error, "forgot") {
				forgotten++
			}
		}
		if len(runs) != len(j.Attempts) {
			t.Errorf("%s: %d runs, attempts %+v; want one attempt a run", j.Name, len(runs), j.Attempts)
		}
	}
	if forgotten != 1 {
		t.Errorf("%d forgotten starts recorded, want 1", forgotten)
	}
}
