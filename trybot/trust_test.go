package trybot_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/trybot"
)

func TestWithLabels(t *testing.T) {
	bs := []config.Builder{
		{Name: "steps", Labels: map[string]string{"os": "linux"}, Steps: []config.Step{{Name: "a", Shell: "true"}, {Name: "b", Shell: "true"}}},
		{Name: "go", Planner: "go"},
	}
	trust := map[string]string{"trust": "try"}
	got := trybot.WithLabels(bs, trust)
	if len(bs[0].Labels) != 1 || bs[1].Labels != nil {
		t.Fatalf("WithLabels modified its input: %+v", bs)
	}
	b, err := trybot.NewBuilders(got, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := graph.Source{Repo: "http://gm/r.git", Revision: strings.Repeat("a", 40)}
	for _, name := range []string{"steps", "go"} {
		g, err := b.Plan(name, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range g.Jobs {
			if j.Labels["trust"] != "try" || (name == "steps" && j.Labels["os"] != "linux") {
				t.Errorf("%s: job %s labels %v", name, j.Name, j.Labels)
			}
			// A Go planner job passes the labels on to the jobs it plans
			// (the coordinator requires its fragment to carry them).
			if name == "go" && !slices.Contains(j.Commands[0].Argv, "trust=try") {
				t.Errorf("planner job argv %q does not pass trust=try on", j.Commands[0].Argv)
			}
		}
	}
	// The same builder in the two domains has different job IDs: no
	// cached result crosses from try runs to post-submit builds.
	ps, _ := trybot.NewBuilders(trybot.WithLabels(bs, map[string]string{"trust": "postsubmit"}), nil)
	g1, _ := b.Plan("steps", src)
	g2, _ := ps.Plan("steps", src)
	if err := g1.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := g2.Normalize(); err != nil {
		t.Fatal(err)
	}
	if g1.Jobs[0].ID == g2.Jobs[0].ID {
		t.Error("a try job and a post-submit job of the same step share an ID")
	}
	if same := trybot.WithLabels(bs, nil); !maps.Equal(same[0].Labels, bs[0].Labels) {
		t.Errorf("no extra labels: %v", same[0].Labels)
	}
}

// TestTrustDomains runs a try run with trybot.try_labels on a pool of
// workers labelled trust=try, then builds the same revision with
// post-submit labels: it waits for a trust=postsubmit worker (the try
// pool may not run it) and reuses none of the try run's results.
func TestTrustDomains(t *testing.T) {
	t.Parallel()
	s := startStack(t, trystack.Options{WorkerLabels: map[string]string{"trust": "try"}})
	opts := s.TrybotOptions(t.TempDir())
	cfg := *opts.Config
	cfg.Trybot.TryLabels = map[string]string{"trust": "try"}
	cfg.Trybot.PostSubmitLabels = map[string]string{"trust": "postsubmit"}
	opts.Config = &cfg
	opts.Log = testLogger(t)
	runTrybot(t, opts)
	ctx := t.Context()

	n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "good change", map[string]string{"ok.txt": "yes\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result", 60*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
	if v := resultVote(s, n, 1); v != 1 {
		t.Fatalf("TryBot-Result %+d on the try pool, want +1", v)
	}
	cc := s.Client()
	tries, err := cc.Builds(ctx, api.ListOptions{Labels: map[string]string{"kind": "try"}, Limit: 10})
	if err != nil || len(tries) == 0 {
		t.Fatalf("try builds: %v, %v", tries, err)
	}
	try := tries[0]

	// The same revision in the post-submit domain.
	psBuilders, err := trybot.NewBuilders(trybot.WithLabels(cfg.Builders, cfg.Trybot.PostSubmitLabels), nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := psBuilders.Plan(try.Labels["builder"], try.Source)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := cc.Submit(ctx, api.SubmitRequest{Graph: *g, Priority: api.PriorityPostSubmit, Labels: map[string]string{"kind": "post-submit"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	b, err := cc.Build(ctx, sub.BuildID)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range b.Jobs {
		if j.State != api.JobQueued && j.State != api.JobWaiting {
			t.Fatalf("post-submit job %s is %s with only the try pool connected", j.Name, j.State)
		}
	}
	// A post-submit worker joins and runs it, from scratch.
	testcluster.StartWorker(t, s.CoordinatorURL, "w2", s.WorkerTokens["w2"], testcluster.WorkerOptions{Slots: 2, Labels: map[string]string{"trust": "postsubmit"}})
	wait, wcancel2 := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel2()
	b, err = cc.Wait(wait, sub.BuildID, nil)
	if err != nil || b.State != api.BuildSucceeded {
		t.Fatalf("post-submit build: %+v, %v", b, err)
	}
	for _, j := range b.Jobs {
		if j.CachedFrom != nil || j.Worker != "w2" {
			t.Errorf("post-submit job %s: cached from %+v, worker %q; want run on w2", j.Name, j.CachedFrom, j.Worker)
		}
	}
}
