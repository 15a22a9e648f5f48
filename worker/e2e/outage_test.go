package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	checkRunsRecorded(t, dir, b)
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
	checkRunsRecorded(t, dir, b)
}

// blipProxy is a proxy in front of the coordinator whose link can be cut
// (a network blip): while down it drops every connection, also those of
// requests in progress, and the coordinator stays up. It can also make
// the requests in progress hang silently (hangInFlight), and go down
// by itself when a request matches (trip).
type blipProxy struct {
	upstream string
	mu       sync.Mutex
	down     bool
	keep     bool            // while down, let requests in progress finish
	refused  atomic.Int64    // requests refused while down
	cut      context.Context // done when the link goes down
	cutNow   context.CancelFunc
	hangs    int // hangInFlight calls: requests in progress at one never answer
	// trip, if set, sees each request's path and body before it is
	// forwarded; when it returns true the link goes down (set(true))
	// and the request breaks, never reaching the coordinator.
	trip func(path string, body []byte) bool
	// registers counts registration requests; polls, poll requests.
	registers, polls atomic.Int64
	// pollsIn counts poll requests in progress; swallowed, answers
	// dropped by hangInFlight.
	pollsIn, swallowed atomic.Int64
}

// hangInFlight makes every request in progress hang without an answer
// (a link dropping packets silently) until its client gives up; new
// requests go through.
func (p *blipProxy) hangInFlight() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hangs++
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
	reqBody, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	switch r.URL.Path {
	case "/api/worker/register":
		p.registers.Add(1)
	case "/api/worker/poll":
		p.polls.Add(1)
		p.pollsIn.Add(1)
		defer p.pollsIn.Add(-1)
	}
	if p.trip != nil && p.trip(r.URL.Path, reqBody) {
		p.set(true)
	}
	p.mu.Lock()
	down, cut, hangs := p.down, p.cut, p.hangs
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
	p.mu.Lock()
	hung := p.hangs != hangs
	p.mu.Unlock()
	if hung {
		p.swallowed.Add(1)
		<-r.Context().Done() // the answer never comes
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

// checkRunsRecorded fails the test unless every run of every job of b
// (by the started-<i>-* files in dir of job <letter><i>) is one of the
// job's attempts: a run the coordinator forgot in a crash (a
// prefetched start it never heard of, an attempt it had not committed)
// is recorded as abandoned once the worker registers again.
func checkRunsRecorded(t *testing.T, dir string, b *api.Build) {
	t.Helper()
	for _, j := range b.Jobs {
		runs, _ := filepath.Glob(filepath.Join(dir, "started-"+j.Name[1:]+"-*"))
		if len(runs) > len(j.Attempts) {
			t.Errorf("%s: %d runs, attempts %+v; want each run recorded", j.Name, len(runs), j.Attempts)
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

// TestForgottenStartRecorded: a worker of one slot started a prefetched
// assignment, and the poll that was to report the start (with the
// result of the job before) never reached the coordinator: the link
// broke for longer than the heartbeat timeout, so the session ended.
// Registering again, the worker gives that run up (the coordinator,
// which took the assignment back, cancels it) and reports its start
// with the new session, with its build and job: the run is in the
// job's history as an abandoned attempt. The history is true: every
// run of every job (by the started-* files) is one of its attempts,
// and every job succeeded by exactly one.
func TestForgottenStartRecorded(t *testing.T) {
	t.Parallel()
	e := start(t, "  heartbeat_timeout: 2s\n")
	link, url := newBlipProxy(t, e.c.URL)
	var tripped atomic.Bool
	link.trip = func(path string, body []byte) bool {
		if path != "/api/worker/poll" || tripped.Load() {
			return false
		}
		var req api.PollRequest
		if json.Unmarshal(body, &req) != nil || len(req.Started) == 0 {
			return false
		}
		tripped.Store(true)
		return true
	}
	e.worker("w1", "--slots", "1", "--coordinator", url)
	dir := t.TempDir()
	const jobs = 8
	id, _ := e.submit(touchJobs(dir, jobs))
	for deadline := time.Now().Add(60 * time.Second); !tripped.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no prefetched assignment started\n%s", e.logs)
		}
	}
	// Well past the heartbeat timeout (checked every 400ms): the
	// coordinator ends the session and takes the prefetched assignments
	// back.
	time.Sleep(4 * time.Second)
	link.set(false)
	b := e.wait(id)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	if n := link.registers.Load(); n != 2 {
		t.Errorf("%d registrations, want 2 (the session ended once)", n)
	}
	forgotten := 0
	for _, j := range b.Jobs {
		succeeded := 0
		for _, a := range j.Attempts {
			switch {
			case a.State == api.AttemptSucceeded:
				succeeded++
			case a.State == api.AttemptAbandoned && strings.Contains(a.Error, "forgot"):
				forgotten++
			}
		}
		runs, _ := filepath.Glob(filepath.Join(dir, "started-"+strings.TrimPrefix(j.Name, "j")+"-*"))
		if succeeded != 1 || len(runs) != len(j.Attempts) {
			t.Errorf("%s: %d runs, attempts %+v; want one attempt a run, one succeeded", j.Name, len(runs), j.Attempts)
		}
	}
	if forgotten != 1 {
		t.Errorf("%d forgotten starts recorded, want 1", forgotten)
	}
}

// TestSilentlyHungPoll: the worker's waiting poll hangs on a link that
// drops its answer silently (new connections still go through). The
// worker gives it up once it is overdue by a few seconds past its
// wait and polls again, well within the heartbeat timeout: its session
// survives (one registration), and a build submitted then runs at
// once. Before, it waited 30s past the wait, the session expired
// meanwhile.
func TestSilentlyHungPoll(t *testing.T) {
	t.Parallel()
	e := start(t, "") // heartbeat timeout 15s: polls wait 5s
	link, url := newBlipProxy(t, e.c.URL)
	e.worker("w1", "--slots", "1", "--coordinator", url)
	// A waiting poll is in flight once the worker idles.
	for deadline := time.Now().Add(30 * time.Second); link.pollsIn.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no poll waits")
		}
	}
	before := link.polls.Load()
	link.hangInFlight()
	hung := time.Now()
	for link.polls.Load() == before {
		if time.Since(hung) > 20*time.Second {
			t.Fatalf("no poll within %v of the hang", time.Since(hung))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The poll's wait (5s) and waitSlack (5s), with room for a loaded
	// machine; before, 35s.
	took := time.Since(hung)
	t.Logf("next poll %v after the hang", took.Round(time.Millisecond))
	if took > 13*time.Second {
		t.Errorf("next poll %v after the hang, want within about 10s", took)
	}
	dir := t.TempDir()
	id, _ := e.submit(touchJobs(dir, 1))
	if b := e.wait(id); b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	if n := link.registers.Load(); n != 1 {
		t.Errorf("%d registrations, want 1 (the session survives)", n)
	}
	if link.swallowed.Load() == 0 {
		t.Error("no answer was swallowed: the test tested nothing")
	}
}
