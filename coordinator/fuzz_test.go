package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// FuzzAPIBodies sends arbitrary bodies to the endpoints that parse JSON
// from clients and workers: the answer must be a clear 4xx (or success),
// never a 5xx or a panic.
//
// Before each input, worker w1 registers again (a fresh session) and
// polls a new build's work: one attempt running, two prefetched and not
// started yet. An input's path and body may name them, so that a hostile
// poll gets past the worker check into the handling of starts, results
// and running lists of a live session: "$WORKER" is the session's worker
// ID, "$RUNNING" the running attempt, "$PREFETCHED" and "$PREFETCHED2"
// the prefetched ones, "$BUILD" and "$JOB" the running attempt's build
// (a number) and job.
func FuzzAPIBodies(f *testing.F) {
	// Polls with nothing to do answer within 50ms rather than wait.
	e := newEnv(f, sqliteBackend, envOpts{mod: func(o *Options) { o.PollTimeout = 50 * time.Millisecond }})
	h := e.c.Handler()
	w1, err := api.NewClient(e.url, tokenW1, nil)
	if err != nil {
		f.Fatal(err)
	}
	w2, err := api.NewClient(e.url, tokenW2, nil)
	if err != nil {
		f.Fatal(err)
	}
	var builds atomic.Int64
	seeds := []struct {
		which int
		body  string
	}{
		{0, `{"graph": {"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}, "priority": "periodic", "labels": {"k": "v"}}`},
		{1, `{"worker_id": "nope", "free_slots": 3, "results": [{"attempt_id": "0123456789abcdef", "state": "succeeded", "output_digest": "zz"}]}`},
		{2, `{"slots": 9999, "labels": {"a,b": "c"}}`},
		{3, `{"attempt_id": "x", "state": "bogus"}`},
		{4, `{"digests": ["../x"]}`},
		{1, `{"worker_id": "nope", "free_slots": 1, "prefetch": -3, "started": [{"attempt_id": "x", "ago_ms": -5}]}`},
		{1, `{"worker_id": "nope", "free_slots": 0, "prefetch": 4, "started": [{"attempt_id": "0123456789abcdef", "ago_ms": 99999999999}]}`},
		// A live session: starts of its prefetched attempts, at
		// hostile times (in the future, far in the past), twice in one
		// poll, with a result in the same poll.
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "running": ["$RUNNING"], "started": [{"attempt_id": "$PREFETCHED", "ago_ms": -5}]}`},
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "running": ["$RUNNING", "$PREFETCHED"], "started": [{"attempt_id": "$PREFETCHED", "ago_ms": 9223372036854775807}, {"attempt_id": "$PREFETCHED"}]}`},
		{1, `{"worker_id": "$WORKER", "free_slots": 2, "prefetch": 1, "early": true, "started": [{"attempt_id": "$PREFETCHED2"}], "results": [{"attempt_id": "$PREFETCHED2", "state": "failed", "exit_code": 1}, {"attempt_id": "$RUNNING", "state": "error", "error": "x"}]}`},
		// Starts of attempts the session never had: the running one,
		// an unknown one, and forgotten ones naming a build and job
		// (real, unknown, or with a hostile ID).
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "started": [{"attempt_id": "$RUNNING"}, {"attempt_id": "ffffffffffffffff", "ago_ms": 1}]}`},
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "started": [{"attempt_id": "00000000deadbeef", "build_id": $BUILD, "job_id": "$JOB"}]}`},
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "started": [{"attempt_id": "00000000deadbeef", "build_id": 999999, "job_id": "$JOB"}, {"attempt_id": "0000000000000001", "build_id": $BUILD, "job_id": "nope"}, {"attempt_id": "../../x", "build_id": $BUILD, "job_id": "$JOB"}, {"attempt_id": "$PREFETCHED", "build_id": -1, "job_id": ""}]}`},
		// More forgotten starts than the worker (two slots) could have
		// run: the excess is ignored.
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "started": [` + forgottenStarts(2*maxPrefetchPerSlot*2+1) + `]}`},
		// A prefetched attempt given back unstarted, its result
		// reported before its start, results of unknown attempts.
		{1, `{"worker_id": "$WORKER", "free_slots": 1, "running": ["$RUNNING"], "results": [{"attempt_id": "$PREFETCHED", "state": "error", "error": "worker shutting down"}, {"attempt_id": "$PREFETCHED2", "state": "succeeded", "exit_code": 0, "output_digest": "0000000000000000000000000000000000000000000000000000000000000000", "output_size": -1}, {"attempt_id": "nope", "state": "timed_out"}]}`},
		// Releases (PollRequest.Released) of prefetched attempts never
		// asked for, twice, of the running attempt, of unknown ones,
		// with a start of the same attempt in the same poll.
		{1, `{"worker_id": "$WORKER", "free_slots": 0, "answers_release": true, "released": ["$PREFETCHED", "$PREFETCHED", "$RUNNING", "nope", ""]}`},
		{1, `{"worker_id": "$WORKER", "free_slots": 1, "prefetch": 2, "answers_release": true, "started": [{"attempt_id": "$PREFETCHED2"}], "released": ["$PREFETCHED2", "$PREFETCHED"]}`},
		// The result endpoint, for the running attempt.
		{3, `{"attempt_id": "$RUNNING", "state": "succeeded", "exit_code": 0, "output_digest": "../x", "output_size": 1}`},
		{3, `{"attempt_id": "$PREFETCHED", "state": "failed", "exit_code": -1, "duration_ms": -7}`},
	}
	for _, s := range seeds {
		f.Add(s.which, s.body)
	}
	f.Fuzz(func(t *testing.T, which int, body string) {
		names, build := primeW1(t, e, w1, w2, &builds)
		paths := []struct{ path, token string }{
			{"/api/graphs", clientToken},
			{"/api/worker/poll", tokenW1},
			{"/api/worker/register", tokenW2},
			{"/api/worker/attempts/$RUNNING/result", tokenW1},
			{"/api/artifacts/missing", clientToken},
		}
		p := paths[(which%len(paths)+len(paths))%len(paths)]
		path := names.Replace(p.path)
		req := httptest.NewRequest("POST", path, strings.NewReader(names.Replace(body)))
		req.Header.Set("Authorization", "Bearer "+p.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusCreated && !strings.Contains(rec.Body.String(), `"code"`) {
			t.Fatalf("%s: error without a code: %s", path, rec.Body)
		}
		checkAttempts(t, e, build)
	})
}

// checkAttempts checks what hostile starts and results must not break in
// build id: a job is running exactly when one of its attempts is, and
// each attempt is of its job and build and ends no earlier than it
// started, which is not in the future.
func checkAttempts(t *testing.T, e *env, id int64) {
	t.Helper()
	b, err := e.client.Build(context.Background(), id)
	if err != nil {
		t.Fatalf("build %d: %v", id, err)
	}
	now := time.Now()
	for _, j := range b.Jobs {
		running := 0
		for _, a := range j.Attempts {
			if a.State == api.AttemptRunning {
				running++
			}
			switch {
			case a.BuildID != id || a.JobID != j.ID:
				t.Errorf("job %s: attempt %s of build %d job %s", j.Name, a.ID, a.BuildID, a.JobID)
			case a.Started.After(now):
				t.Errorf("job %s: attempt %s started in the future (%v, now %v)", j.Name, a.ID, a.Started, now)
			case a.Finished != nil && a.Finished.Before(a.Started):
				t.Errorf("job %s: attempt %s finished at %v, before its start at %v", j.Name, a.ID, a.Finished, a.Started)
			}
		}
		want := 0
		if j.State == api.JobRunning {
			want = 1
		}
		if running != want {
			t.Errorf("job %s %s with %d running attempts", j.Name, j.State, running)
		}
	}
}

// primeW1 gives w1 a fresh session (two slots) with one attempt running
// and two prefetched, submitting builds of new jobs as needed, and
// returns the replacer of FuzzAPIBodies's names and the running
// attempt's build. w2 registers again too
// (one slot), so that a session an input registered with many free
// slots does not keep w1 from prefetching.
func primeW1(t *testing.T, e *env, w1, w2 *api.Client, builds *atomic.Int64) (*strings.Replacer, int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := w2.Register(ctx, api.RegisterRequest{Name: "w2", Slots: 1, Version: "fuzz"}); err != nil {
		t.Fatalf("register w2: %v", err)
	}
	reg, err := w1.Register(ctx, api.RegisterRequest{Name: "w1", Slots: 2, Version: "fuzz"})
	if err != nil {
		t.Fatalf("register w1: %v", err)
	}
	w := &testWorker{t: t, c: w1, name: "w1", id: reg.WorkerID}
	var pre, run []api.Assignment
	for try := 0; len(run) < 1 || len(pre) < 2; try++ {
		if try == 5 {
			t.Fatalf("w1 got %d running and %d prefetched assignments, want 1 and 2", len(run), len(pre))
		}
		if try > 0 {
			// Each input's build has jobs of its own: job IDs are
			// content hashes, and a job done before is not run again.
			g, err := graph.Decode(strings.NewReader(wideGraph(fmt.Sprintf("b%d-", builds.Add(1)), 4)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Submit(ctx, api.SubmitRequest{Graph: *g, Priority: api.PriorityTry}); err != nil {
				t.Fatalf("submit: %v", err)
			}
		}
		p, r := split(w.prefetchPoll(t, 1-len(run), 2-len(pre), append(ids(run), ids(pre)...), nil).Assignments)
		pre, run = append(pre, p...), append(run, r...)
	}
	return strings.NewReplacer("$WORKER", w.id, "$RUNNING", run[0].AttemptID,
		"$PREFETCHED2", pre[1].AttemptID, "$PREFETCHED", pre[0].AttemptID,
		"$BUILD", strconv.FormatInt(run[0].BuildID, 10), "$JOB", run[0].Job.ID), run[0].BuildID
}

// forgottenStarts is n starts of attempts no coordinator handed out,
// naming the running attempt's build and job.
func forgottenStarts(n int) string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(`{"attempt_id": "%016x", "build_id": $BUILD, "job_id": "$JOB", "ago_ms": %d}`, 0xf00d0000+i, i))
	}
	return strings.Join(out, ", ")
}
