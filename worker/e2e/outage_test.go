package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// TestNoPrefetchedStartsDuringOutage: the coordinator is killed with
// SIGKILL while its one worker (one slot) holds a full queue of
// prefetched assignments, and stays down for some seconds, long enough
// for several of them to run. The worker starts none of them while its
// reports fail (a restarted coordinator never knew them and would
// refuse their runs: the work would be done twice), drops them when it
// registers again, and every job still succeeds by exactly one charged
// attempt.
func TestNoPrefetchedStartsDuringOutage(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "1")
	dir := t.TempDir()
	const jobs = 12
	id, _ := e.submit(touchJobs(dir, jobs))
	e.waitHolding(dir)
	b := e.outageWithoutStarts(dir, id, 3*time.Second) // about ten jobs' time
	runs, _ := filepath.Glob(filepath.Join(dir, "started-*"))
	t.Logf("%d runs of %d jobs", len(runs), len(b.Jobs))
	// Runs twice: at most the one job running at the kill and one
	// started as the kill came (one slot), whose starts the restarted
	// coordinator never heard of.
	if len(runs) > jobs+2 {
		t.Errorf("%d runs of %d jobs, want at most %d", len(runs), jobs, jobs+2)
	}
	checkOnce(t, b)
}

// TestNoPipelinedStartDuringOutage: the coordinator is killed with
// SIGKILL while its worker runs a job of a chain and holds the next one
// pipelined behind it. That one is pending on the coordinator (never
// committed), so the worker does not start it when the running job ends
// during the outage; after the restart every job of the chain succeeds
// by exactly one charged attempt.
func TestNoPipelinedStartDuringOutage(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "2")
	dir := t.TempDir()
	g := &graph.Graph{}
	const jobs = 4
	for i := range jobs {
		// Long enough that the job running at the kill ends, and the
		// next would start, well after the worker noticed the outage.
		j := sh("c"+strconv.Itoa(i), `touch "$0/started-$1-$$"; sleep 1.5`)
		j.Commands[0].Argv = append(j.Commands[0].Argv, dir, strconv.Itoa(i))
		if i > 0 {
			j.Deps = []string{"c" + strconv.Itoa(i-1)}
		}
		g.Jobs = append(g.Jobs, j)
	}
	id, _ := e.submit(g)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if started, _ := filepath.Glob(filepath.Join(dir, "started-1-*")); len(started) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain does not progress\n%s", e.logs)
		}
	}
	b := e.outageWithoutStarts(dir, id, 3*time.Second) // c1 ends meanwhile
	checkOnce(t, b)
}

// blipProxy is a proxy in front of the coordinator whose link can be cut
// (a network blip): while down it drops every connection, also those of
// requests in progress, and the coordinator stays up.
type blipProxy struct {
	upstream string
	mu       sync.Mutex
	down     bool
	keep     bool            // while down, let requests in progress finish
	refused  atomic.Int64    // requests refused while down
	cut      context.Context // done when the link goes down
	cutNow   context.CancelFunc
}

func newBlipProxy(t *testing.T, upstream string) (*blipProxy, string) {
	t.Helper()
	p := &blipProxy{upstream: upstream}
	p.cut, p.cutNow = context.WithCancel(context.Background())
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		// Before the worker stops: its requests end now.
		p.set(true)
		srv.CloseClientConnections()
		srv.Close()
	})
	return p, srv.URL
}

// set takes the link down or brings it back.
func (p *blipProxy) set(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down && !p.keep {
		p.cutNow()
	} else {
		p.cut, p.cutNow = context.WithCancel(context.Background())
	}
}

func (p *blipProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	down, cut := p.down, p.cut
	p.mu.Unlock()
	if down {
		p.refused.Add(1)
		panic(http.ErrAbortHandler) // the connection breaks
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(cut, cancel)
	defer stop()
	resp, body, err := forward(ctx, p.upstream, r)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	answer(w, resp, body)
}

// forward sends r to upstream under ctx and reads the whole answer.
func forward(ctx context.Context, upstream string, r *http.Request) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, upstream+r.URL.RequestURI(), r.Body)
	if err != nil {
		return nil, nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}

// answer writes an answer read by forward.
func answer(w http.ResponseWriter, resp *http.Response, body []byte) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

// TestPrefetchedHeldThroughBlip: the link between a worker holding
// prefetched assignments and the coordinator breaks for some seconds
// while the coordinator stays up (its session with the worker survives):
// every connection is cut, or only new requests fail while the worker's
// waiting poll, already through, goes on waiting. The worker starts none
// of its prefetched assignments while its polls fail, and its failing
// reports back off (before, with a waiting poll alive, each was sent
// again at once: thousands of requests a second). Once a poll is
// answered again it starts them: they are still its own, so none is
// taken back, and every job runs exactly once.
func TestPrefetchedHeldThroughBlip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		keep bool // requests in progress go on
	}{
		{"cut", false},
		{"half broken", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, "")
			link, url := newBlipProxy(t, e.c.URL)
			link.keep = tc.keep
			e.worker("w1", "--slots", "1", "--coordinator", url)
			dir := t.TempDir()
			const jobs = 12
			id, _ := e.submit(touchJobs(dir, jobs))
			e.waitHolding(dir)
			link.set(true)
			cut := time.Now()
			const blip = 2 * time.Second
			time.Sleep(blip)
			back := time.Now()
			link.set(false)
			checkNoStarts(t, dir, cut, back, "blip")
			// Backoff from 100ms, doubling: a handful of tries in 2s.
			t.Logf("%d requests refused during the blip", link.refused.Load())
			if n := link.refused.Load(); n > 30 {
				t.Errorf("%d requests refused during the %v blip, want a few (backoff)", n, blip)
			}
			b := e.wait(id)
			if b.State != api.BuildSucceeded {
				t.Fatalf("build %s after the blip: %v", b.State, b.Counts)
			}
			checkOnce(t, b)
			if runs, _ := filepath.Glob(filepath.Join(dir, "started-*")); len(runs) != jobs {
				t.Errorf("%d runs of %d jobs, want one each", len(runs), jobs)
			}
			m := coordinatorMetrics(t, e.c.URL)
			if m[`tryd_coordinator_prefetched_total{event="taken_back"}`] != 0 {
				t.Errorf("prefetched attempts taken back after a blip: %v", m)
			}
		})
	}
}

// outageWithoutStarts kills the coordinator with SIGKILL, checks that
// no job (by the started-* files in dir) starts while it stays down for
// outage, starts it again and returns build id once it succeeded.
func (e *env) outageWithoutStarts(dir string, id int64, outage time.Duration) *api.Build {
	e.t.Helper()
	e.c.Coordinator().Kill()
	killed := time.Now()
	time.Sleep(outage)
	checkNoStarts(e.t, dir, killed, time.Now(), "outage")
	e.restartCoordinator()
	b := e.wait(id)
	if b.State != api.BuildSucceeded {
		e.t.Fatalf("build %s after coordinator restart: %v", b.State, b.Counts)
	}
	return b
}

// checkNoStarts fails the test if a job of a one-slot worker (by the
// started-* files in dir) started while its coordinator was unreachable,
// from from to to. One start near from is allowed: the slot may have
// freed, and a prefetched job started, just before the worker's poll
// failed (its shell may touch the file some moments later on a loaded
// machine); a second start cannot be that.
func checkNoStarts(t *testing.T, dir string, from, to time.Time, what string) {
	t.Helper()
	const notice = time.Second
	var during []string
	late := false
	runs, _ := filepath.Glob(filepath.Join(dir, "started-*"))
	for _, r := range runs {
		fi, err := os.Stat(r)
		if err != nil {
			t.Fatal(err)
		}
		if at := fi.ModTime(); at.After(from) && at.Before(to) {
			during = append(during, filepath.Base(r)+" at +"+at.Sub(from).Round(time.Millisecond).String())
			late = late || at.After(from.Add(notice))
		}
	}
	if len(during) > 1 || late {
		t.Errorf("%d jobs started during the %s: %v", len(during), what, during)
	}
}

// touchJobs is a graph of n independent jobs j0..j<n-1>, each creating
// dir/started-<i>-<pid> and sleeping 0.3s. They have no output and no
// log: such a job ends without the coordinator (an upload would wait
// for it), so a slot frees while the coordinator is away.
func touchJobs(dir string, n int) *graph.Graph {
	g := &graph.Graph{}
	for i := range n {
		j := sh("j"+strconv.Itoa(i), `touch "$0/started-$1-$$"; sleep 0.3`)
		j.Commands[0].Argv = append(j.Commands[0].Argv, dir, strconv.Itoa(i))
		g.Jobs = append(g.Jobs, j)
	}
	return g
}

// waitHolding waits until a worker of one slot running touchJobs in dir
// has started a prefetched job by itself (the second to start) and
// holds more (the coordinator hands out 4 per slot).
func (e *env) waitHolding(dir string) {
	e.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		started, _ := filepath.Glob(filepath.Join(dir, "started-*"))
		m := coordinatorMetrics(e.t, e.c.URL)
		if len(started) >= 2 && m[`tryd_coordinator_prefetched_total{event="handed_out"}`] >= 5 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("jobs did not start on the worker with prefetched ones\n%s", e.logs)
		}
	}
}

// checkOnce fails the test unless every job of b succeeded by exactly one
// charged attempt (abandoned ones, the coordinator's own, do not count).
func checkOnce(t *testing.T, b *api.Build) {
	t.Helper()
	for _, j := range b.Jobs {
		if n := counted(j.Attempts); n != 1 || api.LatestAttempt(j.Attempts).State != api.AttemptSucceeded {
			t.Errorf("%s: %d charged attempts, want 1 succeeded: %+v", j.Name, n, j.Attempts)
		}
	}
}
