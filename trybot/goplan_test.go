package trybot_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot/client"
)

// buildTryd builds cmd/tryd into a new directory and returns it: the
// in-process workers put it first on their jobs' PATH, where a Go
// builder's planner job finds "tryd goplan".
func buildTryd(t *testing.T) string {
	t.Helper()
	return filepath.Dir(testenv.TrydBinary(t))
}

// TestGerritGoPlanner: a builder with planner "go" tries a change through
// the Go planner (a planner job on the worker, then one job per package),
// and the failing package's test job, absent at the base revision, is a
// new failure (-1), named in the result message.
func TestGerritGoPlanner(t *testing.T) {
	t.Parallel()
	bin := buildTryd(t)
	builders := []config.Builder{{Name: "gobuilder", Planner: "go", Timeout: config.Duration(5 * time.Minute)}}
	s := startStack(t, trystack.Options{Builders: builders, JobPath: bin})
	tb := startTrybot(t, s, t.TempDir())
	api, err := client.New(serveAPI(t, tb), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "a Go module", map[string]string{
		"go.mod":          "module example.com/m\n\ngo 1.22\n",
		"ok/ok.go":        "package ok\n\nfunc One() int { return 1 }\n",
		"bad/bad.go":      "package bad\n\nfunc Two() int { return 3 }\n",
		"bad/bad_test.go": "package bad\n\nimport \"testing\"\n\nfunc TestTwo(t *testing.T) {\n\tif Two() != 2 {\n\t\tt.Fatal(\"Two() != 2\")\n\t}\n}\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result", 180*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
	if v := resultVote(s, n, 1); v != -1 {
		t.Errorf("TryBot-Result %+d, want -1", v)
	}
	msgs := trybotMessages(s, n, 1)
	if len(msgs) != 2 || !strings.Contains(msgs[1], "test example.com/m/bad [new]") || strings.Contains(msgs[1], "example.com/m/ok") {
		t.Errorf("messages %q: want the result to blame only the test of example.com/m/bad, as new", msgs)
	}
	runs, err := api.Runs(ctx, client.ListOptions{Change: int32(n)})
	if err != nil || len(runs) != 1 || len(runs[0].Builds) != 1 {
		t.Fatalf("runs %+v, %v", runs, err)
	}
	b, err := s.Client().Build(ctx, runs[0].Builds[0].BuildID)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, j := range b.Jobs {
		names[j.Name] = string(j.State)
	}
	if names["plan"] != "succeeded" || names["vet example.com/m/ok"] == "" || names["test example.com/m/bad"] != "failed" {
		t.Errorf("build %d jobs %v: want the planner job, per-package vet jobs and the failed test job", b.ID, names)
	}
}
