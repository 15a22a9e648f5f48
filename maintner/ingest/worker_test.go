package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// TestPeriodicReconciliation runs a Gerrit worker on a fake clock: a
// change made without any nudge (its webhooks lost) reaches the corpus
// when the clock reaches the reconciliation period, and not before.
func TestPeriodicReconciliation(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	c, _ := newCorpus(t)
	clock := newFakeClock(time.Now())
	g, err := NewGerrit(GerritOptions{Corpus: c, URL: w.Sim.URL(), Projects: []string{w.Project}, CorpusServer: "review.example.com",
		Dir: t.TempDir(), Git: testenv.NeedTool(t, "git"), Clock: clock, Reconcile: 5 * time.Minute})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// The first pass runs at once; then the worker sleeps until the next.
	next := clock.waitFor(t, func(d time.Duration) bool { return d == 5*time.Minute })
	n, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Unannounced", map[string]string{"u.go": "package proj\n"})
	must(t, err)
	has := func() bool {
		c.RLock()
		defer c.RUnlock()
		p := c.GerritProject("review.example.com/" + w.Project)
		return p != nil && p.Change(int32(n)) != nil
	}
	time.Sleep(100 * time.Millisecond)
	if has() {
		t.Fatal("change synced before any nudge or reconciliation")
	}
	clock.Set(next)
	deadline := time.Now().Add(30 * time.Second)
	for !has() {
		if time.Now().After(deadline) {
			t.Fatal("reconciliation did not bring the change")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the worker schedules the pass after.
	clock.waitFor(t, func(d time.Duration) bool { return d == 5*time.Minute })
}

// TestWorkerBackoff runs a Gerrit worker against a server that is down:
// it retries after 1s, then 2s, 4s (on the clock), never in a loop.
func TestWorkerBackoff(t *testing.T) {
	c, _ := newCorpus(t)
	clock := newFakeClock(time.Now())
	g, err := NewGerrit(GerritOptions{Corpus: c, URL: "http://127.0.0.1:1/", Projects: []string{"proj"},
		Dir: t.TempDir(), Git: testenv.NeedTool(t, "git"), Clock: clock})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		at := clock.waitFor(t, func(d time.Duration) bool { return d == want })
		clock.Set(at)
	}
}
