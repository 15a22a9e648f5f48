package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker"
)

// laterProxy stands between a worker and a real coordinator and answers
// the first poll that carries a result itself, with that result in
// results_later (what a replica answers for an attempt whose build it
// has not claimed yet), without forwarding it.
type laterProxy struct {
	next http.Handler

	mu       sync.Mutex
	attempt  string // the result answered "later"
	sent     int    // polls carrying it
	listed   int    // polls after the "later" answer listing it as running
	resentAt time.Time
}

func (p *laterProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/worker/poll" {
		p.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req api.PollRequest
	if err := json.Unmarshal(body, &req); err != nil {
		p.next.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	if p.attempt != "" && slices.Contains(req.Running, p.attempt) {
		p.listed++
	}
	for _, res := range req.Results {
		if p.attempt == "" {
			p.attempt = res.AttemptID
		}
		if res.AttemptID == p.attempt {
			p.sent++
		}
	}
	later := p.sent == 1 && len(req.Results) > 0 && req.Results[0].AttemptID == p.attempt
	if p.sent == 2 && p.resentAt.IsZero() {
		p.resentAt = time.Now()
	}
	p.mu.Unlock()
	if !later {
		p.next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(api.PollResponse{Assignments: []api.Assignment{}, ResultsLater: []string{p.attempt}})
}

// TestResultsLater: a result the coordinator answers in results_later
// is not acknowledged: the worker keeps it, lists its attempt as
// running meanwhile (so that the coordinator does not take it as
// forgotten), and sends it again with a later poll, which records it.
// The job runs once.
func TestResultsLater(t *testing.T) {
	testenv.NeedTool(t, "sh")
	ctx := context.Background()
	// Polls every second: the worker sends a later result again once
	// per poll wait.
	curl := startCoordinatorWith(t, coordinator.Options{PollTimeout: time.Second})
	u, _ := url.Parse(curl)
	proxy := &laterProxy{next: httputil.NewSingleHostReverseProxy(u)}
	psrv := httptest.NewServer(proxy)
	t.Cleanup(psrv.Close)

	wc, _ := api.NewClient(psrv.URL, workerToken, nil)
	cc, _ := api.NewClient(curl, clientToken, nil)
	runWorker(t, worker.Options{Client: wc, Dir: t.TempDir(), Slots: 1, DrainTimeout: 5 * time.Second})

	g := graph.Graph{Jobs: []*graph.Job{{Name: "once", SourceMode: graph.SourceNone,
		Commands: []graph.Command{{Argv: []string{"sh", "-c", "echo ran"}}}}}}
	sub, err := cc.Submit(ctx, api.SubmitRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	b, err := cc.Wait(wctx, sub.BuildID, nil)
	if err != nil || b.State != api.BuildSucceeded {
		t.Fatalf("build = %+v, %v", b, err)
	}
	if at := b.Jobs[0].Attempts; len(at) != 1 || at[0].State != api.AttemptSucceeded {
		t.Errorf("attempts %+v, want one, succeeded", at)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if proxy.sent != 2 {
		t.Errorf("the result went out %d times, want twice (answered later, then sent again)", proxy.sent)
	}
	if proxy.listed == 0 {
		t.Error("no poll listed the attempt as running while its result waited")
	}
}
