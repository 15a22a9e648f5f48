package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

const chainGraph = `{"jobs": [
	{"name": "gen", "source_mode": "none", "cacheable": true, "commands": [{"write_file": {"path": "gen.txt", "content": "generated"}}]},
	{"name": "build", "source_mode": "none", "cacheable": true, "deps": ["gen"], "commands": [{"argv": ["cat", "{{DEP:gen}}/gen.txt"]}, {"write_file": {"path": "bin", "content": "binary"}}]},
	{"name": "test", "source_mode": "none", "cacheable": true, "deps": ["build"], "commands": [{"argv": ["{{DEP:build}}/bin"]}]},
	{"name": "vet", "source_mode": "none", "cacheable": true, "deps": ["gen"], "commands": [{"argv": ["vet"]}]}
]}`

func TestRunGraphAndCacheHits(t *testing.T) { forEachBackend(t, testRunGraphAndCacheHits) }

func testRunGraphAndCacheHits(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(chainGraph, api.PriorityTry)
	order := w.drain(e, sub.BuildID, nil)
	if len(order) != 4 || order[0] != "gen" {
		t.Errorf("assignment order = %v, want gen first and 4 jobs", order)
	}
	b := e.build(sub.BuildID)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build state = %s", b.State)
	}
	for _, j := range b.Jobs {
		if j.State != api.JobSucceeded || len(j.Attempts) != 1 || j.Attempts[0].State != api.AttemptSucceeded || j.Worker != "w1" || j.OutputDigest == "" {
			t.Errorf("job %s: %+v", j.Name, j)
		}
	}
	// The dependency's output digest reached the dependent's assignment:
	// read build's output archive back through the client API.
	rc, err := e.client.JobOutput(context.Background(), sub.Jobs["build"])
	if err != nil {
		t.Fatal(err)
	}
	data, err := graph.ReadOutputFile(rc, "bin", 100)
	rc.Close()
	if err != nil || string(data) != "binary" {
		t.Errorf("build output bin = %q, %v", data, err)
	}

	// Resubmitting the same graph reuses every result: nothing runs.
	sub2 := e.submit(chainGraph, api.PriorityTry)
	b2 := e.build(sub2.BuildID)
	if b2.State != api.BuildSucceeded || b2.Counts[api.JobCached] != 4 {
		t.Fatalf("resubmit: state %s counts %v", b2.State, b2.Counts)
	}
	if cf := jobByName(b2, "test").CachedFrom; cf == nil || cf.BuildID != sub.BuildID {
		t.Errorf("cached_from = %+v, want build %d", cf, sub.BuildID)
	}
	resp := w.mustPoll(4, nil)
	if len(resp.Assignments) != 0 {
		t.Errorf("cached build assigned %d jobs", len(resp.Assignments))
	}
	// A changed job reruns; its unchanged dependency stays cached.
	changed := strings.Replace(chainGraph, `["vet"]`, `["vet", "-v"]`, 1)
	sub3 := e.submit(changed, api.PriorityTry)
	order = w.drain(e, sub3.BuildID, nil)
	if !reflect.DeepEqual(order, []string{"vet"}) {
		t.Errorf("after a change ran %v, want [vet]", order)
	}
	r, err := e.client.Job(context.Background(), sub.Jobs["gen"])
	if err != nil || r.BuildID != sub.BuildID {
		t.Errorf("Job(gen) = %+v, %v", r, err)
	}
}

func TestFailureSkipsDependentsWithoutRetry(t *testing.T) {
	forEachBackend(t, testFailureSkipsDependentsWithoutRetry)
}

func testFailureSkipsDependentsWithoutRetry(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(chainGraph, api.PriorityTry)
	w.drain(e, sub.BuildID, map[string]bool{"build": true})
	b := e.build(sub.BuildID)
	if b.State != api.BuildFailed {
		t.Errorf("build state = %s, want failed", b.State)
	}
	if got := names(b.Jobs, api.JobFailed); !reflect.DeepEqual(got, []string{"build"}) {
		t.Errorf("failed = %v", got)
	}
	if got := names(b.Jobs, api.JobSkipped); !reflect.DeepEqual(got, []string{"test"}) {
		t.Errorf("skipped = %v", got)
	}
	if got := names(b.Jobs, api.JobSucceeded); !reflect.DeepEqual(got, []string{"gen", "vet"}) {
		t.Errorf("succeeded = %v", got)
	}
	bj := jobByName(b, "build")
	if len(bj.Attempts) != 1 || bj.ExitCode == nil || *bj.ExitCode != 1 {
		t.Errorf("failed job attempts %d exit %v: a command failure must not be retried", len(bj.Attempts), bj.ExitCode)
	}
	if tj := jobByName(b, "test"); !strings.Contains(tj.Error, `"build"`) {
		t.Errorf("skipped job error %q does not name the failed dependency", tj.Error)
	}
	// Failed results are not cached: a resubmit runs build again.
	sub2 := e.submit(chainGraph, api.PriorityTry)
	if order := w.drain(e, sub2.BuildID, nil); !reflect.DeepEqual(order, []string{"build", "test"}) {
		t.Errorf("resubmit ran %v, want [build test]", order)
	}
}

func TestBadGraphsRejected(t *testing.T) { forEachBackend(t, testBadGraphsRejected) }

func testBadGraphsRejected(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	tests := []struct {
		name, body, want string
	}{
		{"cycle", `{"graph": {"jobs": [{"name": "a", "source_mode": "none", "deps": ["b"], "commands": [{"argv": ["x"]}]}, {"name": "b", "source_mode": "none", "deps": ["a"], "commands": [{"argv": ["x"]}]}]}}`, "dependency cycle"},
		{"unknown dep", `{"graph": {"jobs": [{"name": "a", "source_mode": "none", "deps": ["zz"], "commands": [{"argv": ["x"]}]}]}}`, `job "a": unknown dependency "zz"`},
		{"empty commands", `{"graph": {"jobs": [{"name": "lint", "source_mode": "none", "commands": []}]}}`, `job "lint": no commands`},
		{"escaping output", `{"graph": {"jobs": [{"name": "evil", "source_mode": "none", "commands": [{"write_file": {"path": "../../x", "content": ""}}]}]}}`, `job "evil": command 1: write_file path "../../x" escapes`},
		{"wrong id", `{"graph": {"jobs": [{"id": "` + strings.Repeat("0", 64) + `", "name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}}`, `job "a": id 0000`},
		{"unknown field", `{"graph": {"jobs": []}, "extra": 1}`, "unknown field"},
		{"bad priority", `{"graph": {"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}, "priority": "urgent"}`, "unknown priority"},
		{"not json", `{{{`, "decode body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.url+"/api/graphs", strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+clientToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body api.Error
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || body.Code != "bad_request" || !strings.Contains(body.Message, tt.want) {
				t.Errorf("status %d body %+v; want 400 containing %q", resp.StatusCode, body, tt.want)
			}
		})
	}
	// Through the client the error is ErrBadRequest.
	_, err := e.client.Submit(context.Background(), api.SubmitRequest{Graph: graph.Graph{}})
	if !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("client error %v is not ErrBadRequest", err)
	}
}

func TestTokens(t *testing.T) { forEachBackend(t, testTokens) }

func testTokens(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	tests := []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "GET", "/api/builds", "", 401},
		{"unknown token", "GET", "/api/builds", "not-a-token-at-all-123", 401},
		{"worker token on client API", "GET", "/api/builds", tokenW1, 401},
		{"client token on worker API", "POST", "/api/worker/register", clientToken, 401},
		{"unknown token on worker API", "POST", "/api/worker/poll", "not-a-token-at-all-123", 401},
		{"client token ok", "GET", "/api/builds", clientToken, 200},
		{"worker token on artifacts", "HEAD", "/api/artifacts/" + strings.Repeat("a", 64), tokenW1, 404},
		{"no token on artifacts", "HEAD", "/api/artifacts/" + strings.Repeat("a", 64), "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.url+tt.path, strings.NewReader(`{}`))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	bad, _ := api.NewClient(e.url, "wrong-token-0123456789", nil)
	if _, err := bad.Register(context.Background(), api.RegisterRequest{Slots: 1}); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("register with a bad token = %v, want ErrUnauthorized", err)
	}
}

func TestWorkerLossRequeuesElsewhere(t *testing.T) {
	forEachBackend(t, testWorkerLossRequeuesElsewhere)
}

func testWorkerLossRequeuesElsewhere(t *testing.T, be backend) {
	clock := newFakeClock()
	// Polls wait for an hour of fake time, so that only the heartbeat
	// check (called explicitly) reacts to the clock.
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) { o.PollTimeout = time.Hour }})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "only", "source_mode": "none", "commands": [{"write_file": {"path": "o", "content": "x"}}]}]}`, api.PriorityTry)
	resp := w1.mustPoll(1, nil)
	if len(resp.Assignments) != 1 {
		t.Fatalf("w1 got %d assignments", len(resp.Assignments))
	}
	first := resp.Assignments[0].AttemptID
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	w2.waitMS = time.Hour.Milliseconds()
	// w1 goes silent; w2 keeps polling (in the background) and must get
	// the job once w1's heartbeat times out.
	got := make(chan *api.PollResponse, 1)
	go func() {
		r, _ := w2.poll(1, nil)
		got <- r
	}()
	waitFor(t, func() bool { return e.pollers("w2") > 0 })
	clock.Advance(10 * time.Second)
	e.c.checkTimeouts()
	if b := e.build(sub.BuildID); jobByName(b, "only").State != api.JobRunning {
		t.Fatalf("job requeued before the heartbeat timeout: %+v", jobByName(b, "only"))
	}
	clock.Advance(6 * time.Second) // 16s > 15s default
	e.c.checkTimeouts()
	var r *api.PollResponse
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("w2 did not get the requeued job")
	}
	if r == nil || len(r.Assignments) != 1 || r.Assignments[0].AttemptID == first {
		t.Fatalf("w2 poll = %+v", r)
	}
	w2.mustPoll(0, nil, w2.output(r.Assignments[0]))
	b := e.build(sub.BuildID)
	j := jobByName(b, "only")
	if b.State != api.BuildSucceeded || len(j.Attempts) != 2 || j.Attempts[0].State != api.AttemptLost ||
		j.Attempts[0].Worker != "w1" || j.Attempts[1].Worker != "w2" || !strings.Contains(j.Attempts[0].Error, "heartbeat") {
		t.Errorf("build %s, attempts %+v", b.State, j.Attempts)
	}
	// The lost worker's late result is refused, and its poll says
	// register again.
	if _, err := w1.poll(1, []string{first}, w1.output(resp.Assignments[0])); !errors.Is(err, api.ErrUnknownWorker) {
		t.Errorf("poll of the expired worker = %v, want ErrUnknownWorker", err)
	}
	if err := w1.c.Result(context.Background(), w1.output(resp.Assignments[0])); !errors.Is(err, api.ErrConflict) {
		t.Errorf("late result = %v, want ErrConflict", err)
	}
}

func (e *env) pollers(name string) int {
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	if s := e.c.byName[name]; s != nil {
		return s.polling
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAttemptLimit(t *testing.T) { forEachBackend(t, testAttemptLimit) }

func testAttemptLimit(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{mod: func(o *Options) { o.MaxAttempts = 2 }})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "flaky", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}`, api.PriorityTry)
	for i := range 2 {
		resp := w.mustPoll(1, nil)
		if len(resp.Assignments) != 1 {
			t.Fatalf("round %d: %d assignments", i, len(resp.Assignments))
		}
		// The worker could not run it (infrastructure): retried.
		w.mustPoll(0, nil, api.AttemptResult{AttemptID: resp.Assignments[0].AttemptID, State: api.AttemptError, Error: "cannot fetch source"})
	}
	b := e.build(sub.BuildID)
	j := jobByName(b, "flaky")
	if b.State != api.BuildFailed || len(j.Attempts) != 2 || !strings.Contains(j.Error, "gave up after 2 attempts") {
		t.Errorf("build %s job %+v", b.State, j)
	}
}

func TestReregisterKeepsListedAttempts(t *testing.T) {
	forEachBackend(t, testReregisterKeepsListedAttempts)
}

func testReregisterKeepsListedAttempts(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	e.submit(`{"jobs": [
		{"name": "a", "source_mode": "none", "commands": [{"argv": ["a"]}]},
		{"name": "b", "source_mode": "none", "commands": [{"argv": ["b"]}]}]}`, api.PriorityTry)
	resp := w.mustPoll(2, nil)
	if len(resp.Assignments) != 2 {
		t.Fatalf("%d assignments", len(resp.Assignments))
	}
	keep, lose := resp.Assignments[0], resp.Assignments[1]
	w.register([]string{keep.AttemptID, "0123456789abcdef"})
	resp = w.mustPoll(1, []string{keep.AttemptID})
	// The forgotten attempt was requeued (and comes back now); the
	// unknown one is cancelled.
	if len(resp.Assignments) != 1 || resp.Assignments[0].Job.Name != lose.Job.Name || !reflect.DeepEqual(resp.Cancel, []string{"0123456789abcdef"}) {
		t.Errorf("after re-register: %+v", resp)
	}
	w.mustPoll(0, nil, w.output(keep), w.output(resp.Assignments[0]))
}

func TestCancel(t *testing.T) { forEachBackend(t, testCancel) }

func testCancel(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(chainGraph, api.PriorityTry)
	resp := w.mustPoll(4, nil)
	if len(resp.Assignments) != 1 {
		t.Fatalf("%d assignments", len(resp.Assignments))
	}
	running := resp.Assignments[0].AttemptID
	// The worker is waiting in a poll when the build is cancelled: it
	// learns at once.
	got := make(chan *api.PollResponse, 1)
	go func() {
		r, _ := w.poll(3, []string{running})
		got <- r
	}()
	waitFor(t, func() bool { return e.pollers("w1") > 0 })
	start := time.Now()
	if err := e.client.Cancel(context.Background(), sub.BuildID); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r == nil || !reflect.DeepEqual(r.Cancel, []string{running}) || time.Since(start) > time.Second {
		t.Fatalf("poll after cancel = %+v after %v", r, time.Since(start))
	}
	b := e.build(sub.BuildID)
	if b.State != api.BuildCancelled || b.Counts[api.JobCancelled] != 4 {
		t.Errorf("build %s counts %v", b.State, b.Counts)
	}
	// Its result comes too late.
	if err := w.c.Result(context.Background(), w.output(resp.Assignments[0])); !errors.Is(err, api.ErrConflict) {
		t.Errorf("result after cancel = %v", err)
	}
	if err := e.client.Cancel(context.Background(), 99999); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("cancel of a missing build = %v", err)
	}
}

func TestJobTimeoutBackstop(t *testing.T) { forEachBackend(t, testJobTimeoutBackstop) }

func testJobTimeoutBackstop(t *testing.T, be backend) {
	clock := newFakeClock()
	e := newEnv(t, be, envOpts{clock: clock})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "slow", "source_mode": "none", "timeout": "1m", "commands": [{"argv": ["sleep", "1000"]}]}]}`, api.PriorityTry)
	resp := w.mustPoll(1, nil)
	if len(resp.Assignments) != 1 || resp.Assignments[0].TimeoutMS != 60000 {
		t.Fatalf("assignment %+v", resp.Assignments)
	}
	id := resp.Assignments[0].AttemptID
	// The worker keeps polling (alive) but never reports: past the
	// timeout and its grace the coordinator gives up and cancels it.
	polled := make(chan struct{})
	go func() {
		w.poll(0, []string{id})
		close(polled)
	}()
	waitFor(t, func() bool { return e.pollers("w1") > 0 })
	clock.Advance(100 * time.Second) // 1m timeout + 30s grace
	<-polled
	e.c.checkTimeouts()
	b := e.build(sub.BuildID)
	if j := jobByName(b, "slow"); b.State != api.BuildFailed || j.Attempts[0].State != api.AttemptTimedOut || !strings.Contains(j.Error, "timed out") {
		t.Errorf("build %s job %+v", b.State, j)
	}
	if r := w.mustPoll(0, []string{id}); !reflect.DeepEqual(r.Cancel, []string{id}) {
		t.Errorf("cancel not sent: %+v", r)
	}
}

func TestLabelsAndLocality(t *testing.T) { forEachBackend(t, testLabelsAndLocality) }

func testLabelsAndLocality(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{mod: func(o *Options) { o.LocalityWait = time.Hour }})
	w1 := newTestWorker(t, e, "w1", tokenW1, map[string]string{"os": "linux"})
	w2 := newTestWorker(t, e, "w2", tokenW2, map[string]string{"os": "darwin"})
	sub := e.submit(`{"jobs": [
		{"name": "gen", "source_mode": "none", "labels": {"os": "linux"}, "commands": [{"write_file": {"path": "g", "content": "g"}}]},
		{"name": "use", "source_mode": "none", "deps": ["gen"], "commands": [{"argv": ["cat", "{{DEP:gen}}/g"]}]},
		{"name": "mac", "source_mode": "none", "labels": {"os": "darwin"}, "commands": [{"argv": ["mac"]}]}]}`, api.PriorityTry)
	r2 := w2.mustPoll(4, nil)
	if len(r2.Assignments) != 1 || r2.Assignments[0].Job.Name != "mac" {
		t.Fatalf("darwin worker got %+v", r2.Assignments)
	}
	r1 := w1.mustPoll(4, nil)
	if len(r1.Assignments) != 1 || r1.Assignments[0].Job.Name != "gen" {
		t.Fatalf("linux worker got %+v", r1.Assignments)
	}
	gen := w1.output(r1.Assignments[0])
	w1.mustPoll(0, nil, gen)
	// "use" needs no label, but w1 holds gen's output: w2 must not get it
	// within the locality window, w1 must.
	r2 = w2.mustPoll(4, []string{r2.Assignments[0].AttemptID})
	if len(r2.Assignments) != 0 {
		t.Errorf("w2 took %s despite locality", r2.Assignments[0].Job.Name)
	}
	r1 = w1.mustPoll(4, nil)
	if len(r1.Assignments) != 1 || r1.Assignments[0].Job.Name != "use" {
		t.Fatalf("w1 got %+v", r1.Assignments)
	}
	if d := r1.Assignments[0].Deps; len(d) != 1 || d[0].Digest != gen.OutputDigest || d[0].JobID != sub.Jobs["gen"] {
		t.Errorf("deps = %+v", d)
	}
}

func TestLocalityFallsBackAfterWindow(t *testing.T) {
	forEachBackend(t, testLocalityFallsBackAfterWindow)
}

func testLocalityFallsBackAfterWindow(t *testing.T, be backend) {
	clock := newFakeClock()
	e := newEnv(t, be, envOpts{clock: clock})
	w1 := newTestWorker(t, e, "w1", tokenW1, nil)
	w2 := newTestWorker(t, e, "w2", tokenW2, nil)
	e.submit(`{"jobs": [
		{"name": "gen", "source_mode": "none", "commands": [{"write_file": {"path": "g", "content": "g"}}]},
		{"name": "use", "source_mode": "none", "deps": ["gen"], "commands": [{"argv": ["x"]}]}]}`, api.PriorityTry)
	r1 := w1.mustPoll(1, nil)
	w1.mustPoll(0, nil, w1.output(r1.Assignments[0]))
	got := make(chan *api.PollResponse, 1)
	go func() {
		r, _ := w2.poll(1, nil)
		got <- r
	}()
	waitFor(t, func() bool { return e.pollers("w2") > 0 })
	select {
	case r := <-got:
		t.Fatalf("w2 got work inside the locality window: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	clock.Advance(300 * time.Millisecond) // past the 250ms default
	select {
	case r := <-got:
		if r == nil || len(r.Assignments) != 1 || r.Assignments[0].Job.Name != "use" {
			t.Fatalf("w2 after the window: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("w2 never got the job after the locality window")
	}
}

func TestPriorityAndFairness(t *testing.T) { forEachBackend(t, testPriorityAndFairness) }

func testPriorityAndFairness(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	mk := func(prefix string, n int) string {
		var jobs []string
		for i := range n {
			jobs = append(jobs, fmt.Sprintf(`{"name": "%s%d", "source_mode": "none", "commands": [{"argv": ["%s", "%d"]}]}`, prefix, i, prefix, i))
		}
		return `{"jobs": [` + strings.Join(jobs, ",") + `]}`
	}
	e.submit(mk("periodic", 3), api.PriorityPeriodic)
	e.submit(mk("a", 4), api.PriorityTry)
	e.submit(mk("b", 4), api.PriorityTry)
	e.submit(mk("post", 3), api.PriorityPostSubmit)
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	resp := w.mustPoll(14, nil)
	var got []string
	for _, a := range resp.Assignments {
		got = append(got, a.Job.Name[:1])
	}
	// Try builds first, alternating between the two; then post-submit,
	// then periodic.
	want := strings.Split("ababababppppppp", "")
	if strings.Join(got, "") != strings.Join(want[:len(got)], "") || len(got) != 14 {
		t.Errorf("dispatch order %v", got)
	}
}

func TestPlannerFragmentSpliced(t *testing.T) { forEachBackend(t, testPlannerFragmentSpliced) }

func testPlannerFragmentSpliced(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	frag := `{"jobs": [{"name": "pkg1", "source_mode": "none", "cacheable": true, "deps": ["plan"], "commands": [{"write_file": {"path": "p1", "content": "1"}}]},` +
		`{"name": "pkg2", "source_mode": "none", "deps": ["pkg1"], "commands": [{"argv": ["t2"]}]}]}`
	plan := fmt.Sprintf(`{"jobs": [
		{"name": "plan", "planner": true, "source_mode": "none", "commands": [{"write_file": {"path": "graph.json", "content": %q}}]},
		{"name": "after", "source_mode": "none", "deps": ["plan"], "commands": [{"argv": ["after"]}]}]}`, frag)
	sub := e.submit(plan, api.PriorityTry)
	order := w.drain(e, sub.BuildID, nil)
	b := e.build(sub.BuildID)
	if b.State != api.BuildSucceeded || len(b.Jobs) != 4 {
		t.Fatalf("build %s with %d jobs (%v)", b.State, len(b.Jobs), order)
	}
	if order[0] != "plan" || order[len(order)-1] != "pkg2" {
		t.Errorf("order %v", order)
	}
	// Resubmitted, the planner runs again (its fragment must be spliced)
	// and the fragment's cacheable job is reused.
	sub = e.submit(plan, api.PriorityTry)
	order = w.drain(e, sub.BuildID, nil)
	b = e.build(sub.BuildID)
	if b.State != api.BuildSucceeded || jobByName(b, "pkg1").State != api.JobCached || strings.Contains(strings.Join(order, ","), "pkg1") || order[0] != "plan" {
		t.Errorf("resubmitted planner graph: %s, ran %v, pkg1 %s", b.State, order, jobByName(b, "pkg1").State)
	}
	// A bad fragment fails the planner and skips its dependents.
	bad := `{"jobs": [{"name": "plan2", "planner": true, "source_mode": "none", "commands": [{"write_file": {"path": "graph.json", "content": "{\"jobs\": [{\"name\": \"x\", \"source_mode\": \"none\", \"commands\": []}]}"}}]},
		{"name": "after2", "source_mode": "none", "deps": ["plan2"], "commands": [{"argv": ["x"]}]}]}`
	sub2 := e.submit(bad, api.PriorityTry)
	w.drain(e, sub2.BuildID, nil)
	b2 := e.build(sub2.BuildID)
	if p := jobByName(b2, "plan2"); p.State != api.JobFailed || !strings.Contains(p.Error, `job "x": no commands`) {
		t.Errorf("planner with bad fragment: %+v", p)
	}
	if a := jobByName(b2, "after2"); a.State != api.JobSkipped {
		t.Errorf("dependent of failed planner: %s", a.State)
	}
}

func TestUploadedSourceHandshake(t *testing.T) { forEachBackend(t, testUploadedSourceHandshake) }

func testUploadedSourceHandshake(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	files := map[string][]byte{"go.mod": []byte("module x\n"), "main.go": []byte("package main\n")}
	var fs []graph.File
	for p, data := range files {
		fs = append(fs, graph.File{Path: p, Digest: digestOf(data), Size: int64(len(data))})
	}
	g := graph.Graph{Source: graph.Source{Files: fs}, Jobs: []*graph.Job{{Name: "build", Commands: []graph.Command{{Argv: []string{"go", "build"}}}}}}
	_, err := e.client.Submit(context.Background(), api.SubmitRequest{Graph: g})
	var ae *api.Error
	if !errors.Is(err, api.ErrMissingArtifacts) || !errors.As(err, &ae) || len(ae.Missing) != 2 {
		t.Fatalf("submit without uploads = %v", err)
	}
	uploads := 0
	sub, err := e.client.SubmitWithFiles(context.Background(), api.SubmitRequest{Graph: g}, func(f graph.File) (io.ReadCloser, error) {
		uploads++
		return io.NopCloser(bytes.NewReader(files[f.Path])), nil
	})
	if err != nil || uploads != 2 {
		t.Fatalf("SubmitWithFiles: %v (%d uploads)", err, uploads)
	}
	// Second time nothing is uploaded.
	uploads = 0
	g.Jobs[0].ID = ""
	if _, err := e.client.SubmitWithFiles(context.Background(), api.SubmitRequest{Graph: g}, func(f graph.File) (io.ReadCloser, error) {
		uploads++
		return io.NopCloser(bytes.NewReader(files[f.Path])), nil
	}); err != nil || uploads != 0 {
		t.Errorf("second submit: %v, %d uploads", err, uploads)
	}
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	resp := w.mustPoll(1, nil)
	if len(resp.Assignments) != 1 || resp.Assignments[0].Source == nil || resp.Assignments[0].Source.Manifest == "" {
		t.Fatalf("assignment %+v", resp.Assignments)
	}
	rc, err := w.c.GetArtifact(context.Background(), resp.Assignments[0].Source.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(manifest), `"path":"main.go"`) {
		t.Errorf("manifest = %s", manifest)
	}
	_ = sub
	// A blob with the wrong content is refused.
	err = e.client.PutArtifact(context.Background(), digestOf([]byte("a")), strings.NewReader("b"), 1)
	if !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("mismatched upload = %v", err)
	}
}

func TestLogsAndEvents(t *testing.T) { forEachBackend(t, testLogsAndEvents) }

func testLogsAndEvents(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "talk", "source_mode": "none", "commands": [{"argv": ["echo"]}]}]}`, api.PriorityTry)
	var events []api.Event
	done := make(chan *api.Build, 1)
	go func() {
		b, err := e.client.Wait(context.Background(), sub.BuildID, func(ev api.Event) { events = append(events, ev) })
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	resp := w.mustPoll(1, nil)
	id := resp.Assignments[0].AttemptID
	ctx := context.Background()
	if n, err := w.c.AppendLog(ctx, id, 0, []byte("hello ")); err != nil || n != 6 {
		t.Fatalf("append: %d, %v", n, err)
	}
	// A retried chunk is not duplicated; a gap is refused.
	if n, err := w.c.AppendLog(ctx, id, 0, []byte("hello ")); err != nil || n != 6 {
		t.Errorf("retried append: %d, %v", n, err)
	}
	if _, err := w.c.AppendLog(ctx, id, 100, []byte("x")); !errors.Is(err, api.ErrConflict) {
		t.Errorf("append past the end = %v", err)
	}
	// A follower sees the rest live.
	follow := make(chan string, 1)
	go func() {
		rc, err := e.client.AttemptLog(ctx, id, 0, true)
		if err != nil {
			follow <- err.Error()
			return
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		follow <- string(b)
	}()
	if _, err := w.c.AppendLog(ctx, id, 6, []byte("world\n")); err != nil {
		t.Fatal(err)
	}
	w.mustPoll(0, nil, w.output(resp.Assignments[0]))
	if got := <-follow; got != "hello world\n" {
		t.Errorf("followed log = %q", got)
	}
	b := <-done
	if b == nil || b.State != api.BuildSucceeded {
		t.Fatalf("wait = %+v", b)
	}
	var types []string
	for _, ev := range events {
		types = append(types, string(ev.Type))
	}
	if got := strings.Join(types, " "); got != "hello job_queued job_started log log job_finished build_finished" {
		t.Errorf("events = %s", got)
	}
	rc, err := e.client.JobLog(ctx, sub.Jobs["talk"])
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "hello world\n" {
		t.Errorf("job log = %q", data)
	}
	if a := jobByName(e.build(sub.BuildID), "talk").Attempts[0]; a.LogBytes != 12 {
		t.Errorf("log bytes = %d", a.LogBytes)
	}
	// Listing and filtering.
	bs, err := e.client.Builds(ctx, api.ListOptions{State: api.BuildSucceeded})
	if err != nil || len(bs) != 1 || bs[0].ID != sub.BuildID {
		t.Errorf("Builds = %+v, %v", bs, err)
	}
	ws, err := e.client.Workers(ctx)
	if err != nil || len(ws) != 2 || !ws[0].Connected || ws[1].Connected {
		t.Errorf("Workers = %+v, %v", ws, err)
	}
}

func TestDispatchIsImmediate(t *testing.T) { forEachBackend(t, testDispatchIsImmediate) }

func testDispatchIsImmediate(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	var lat []time.Duration
	for i := range 20 {
		got := make(chan time.Time, 1)
		go func() {
			r, err := w.poll(1, nil)
			if err == nil && len(r.Assignments) == 1 {
				got <- time.Now()
				w.mustPoll(0, nil, w.output(r.Assignments[0]))
			}
			close(got)
		}()
		waitFor(t, func() bool { return e.pollers("w1") > 0 })
		start := time.Now()
		e.submit(fmt.Sprintf(`{"jobs": [{"name": "j", "source_mode": "none", "commands": [{"argv": ["true", "%d"]}]}]}`, i), api.PriorityTry)
		at, ok := <-got
		if !ok {
			t.Fatal("no assignment")
		}
		lat = append(lat, at.Sub(start))
		for range got {
		}
		waitFor(t, func() bool { return e.pollers("w1") == 0 })
	}
	sortDurations(lat)
	t.Logf("submit-to-assignment p50 %v max %v", lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)/2] > 500*time.Millisecond {
		t.Errorf("dispatch p50 %v: not immediate", lat[len(lat)/2])
	}
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for k := i; k > 0 && d[k] < d[k-1]; k-- {
			d[k], d[k-1] = d[k-1], d[k]
		}
	}
}

func digestOf(b []byte) string {
	var buf bytes.Buffer
	buf.Write(b)
	return hexSHA(buf.Bytes())
}

func TestNewerPollSupersedesWaitingOne(t *testing.T) {
	forEachBackend(t, testNewerPollSupersedesWaitingOne)
}

func testNewerPollSupersedesWaitingOne(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	w.waitMS = 10_000
	first := make(chan *api.PollResponse, 1)
	go func() {
		r, _ := w.poll(0, nil)
		first <- r
	}()
	waitFor(t, func() bool { return e.pollers("w1") == 1 })
	second := make(chan *api.PollResponse, 1)
	go func() {
		r, _ := w.poll(2, nil)
		second <- r
	}()
	select {
	case r := <-first:
		if r == nil || len(r.Assignments) != 0 {
			t.Errorf("superseded poll = %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the older poll was not answered when a newer one arrived")
	}
	e.submit(`{"jobs": [{"name": "x", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}`, api.PriorityTry)
	select {
	case r := <-second:
		if r == nil || len(r.Assignments) != 1 {
			t.Errorf("newer poll = %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the newer poll did not get the work")
	}
}

func TestEventsResumeFromAnyIndex(t *testing.T) { forEachBackend(t, testEventsResumeFromAnyIndex) }

func testEventsResumeFromAnyIndex(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	sub := e.submit(`{"jobs": [{"name": "c", "source_mode": "none", "cacheable": true, "commands": [{"write_file": {"path": "x", "content": "x"}}]}]}`, api.PriorityTry)
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	w.drain(e, sub.BuildID, nil)
	epoch := e.c.Epoch()
	for _, from := range []int{0, 2, 4, 5, 100} {
		var last api.Event
		n := 0
		err := e.client.Events(context.Background(), sub.BuildID, from, epoch, func(ev api.Event) error {
			last = ev
			n++
			return nil
		})
		if err != nil || last.Type != api.EventBuildFinished || last.BuildState != api.BuildSucceeded {
			t.Errorf("from %d: %d events, last %+v, err %v", from, n, last, err)
		}
	}
}

func TestNoMoreAttemptsThanSlots(t *testing.T) { forEachBackend(t, testNoMoreAttemptsThanSlots) }

func testNoMoreAttemptsThanSlots(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	c, _ := api.NewClient(e.url, tokenW1, nil)
	reg, err := c.Register(context.Background(), api.RegisterRequest{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.submit(benchGraph(5, false, "slots"), api.PriorityTry)
	r1, err := c.Poll(context.Background(), api.PollRequest{WorkerID: reg.WorkerID, FreeSlots: 2})
	if err != nil || len(r1.Assignments) != 2 {
		t.Fatalf("first poll: %+v, %v", r1, err)
	}
	// A second poll offering the same slots again gets nothing.
	running := []string{r1.Assignments[0].AttemptID, r1.Assignments[1].AttemptID}
	r2, err := c.Poll(context.Background(), api.PollRequest{WorkerID: reg.WorkerID, FreeSlots: 2, Running: running, WaitMS: 100})
	if err != nil || len(r2.Assignments) != 0 {
		t.Errorf("second poll: %+v, %v", r2, err)
	}
}

func TestEvictionSparesRunningBuilds(t *testing.T) {
	forEachBackend(t, testEvictionSparesRunningBuilds)
}

func testEvictionSparesRunningBuilds(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{artsBytes: 40 << 10})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	big := strings.Repeat("x", 12<<10)
	sub := e.submit(`{"jobs": [
		{"name": "gen", "source_mode": "none", "cacheable": true, "commands": [{"write_file": {"path": "big", "content": "`+big+`"}}]},
		{"name": "use", "source_mode": "none", "deps": ["gen"], "commands": [{"argv": ["use"]}]}]}`, api.PriorityTry)
	r := w.mustPoll(1, nil)
	gen := w.output(r.Assignments[0])
	w.mustPoll(0, nil, gen)
	// Other uploads push the store over its limit while "use" waits:
	// gen's output is pinned by the running build and must survive.
	for i := range 6 {
		data := []byte(strings.Repeat(fmt.Sprint(i), 12<<10))
		if err := e.client.PutArtifact(context.Background(), digestOf(data), bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := e.client.HasArtifact(context.Background(), gen.OutputDigest); err != nil || !ok {
		t.Fatalf("gen's output was evicted while its build runs: %v %v", ok, err)
	}
	w.drain(e, sub.BuildID, nil)
	// Finished: no longer pinned, so more uploads may evict it, and then
	// a resubmit runs gen again instead of trusting a missing output.
	for i := range 6 {
		data := []byte(strings.Repeat(fmt.Sprint("y", i), 6<<10))
		if err := e.client.PutArtifact(context.Background(), digestOf(data), bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := e.client.HasArtifact(context.Background(), gen.OutputDigest); ok {
		t.Fatal("the finished build's output, least recently used, was not evicted")
	}
	sub2 := e.submit(`{"jobs": [{"name": "gen", "source_mode": "none", "cacheable": true, "commands": [{"write_file": {"path": "big", "content": "`+big+`"}}]}]}`, api.PriorityTry)
	if order := w.drain(e, sub2.BuildID, nil); strings.Join(order, ",") != "gen" {
		t.Errorf("after eviction ran %v, want [gen]", order)
	}
}
