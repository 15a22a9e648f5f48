package trybot_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot"
	"github.com/tryd-ci/tryd/trybot/client"
)

// postsCounted returns tryd_trybot_posts_total for the labels.
func postsCounted(t *testing.T, reg *prometheus.Registry, kind, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "tryd_trybot_posts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "kind") == kind && label(m, "result") == result {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestGitHubRefusesMissingCommit checks that when GitHub no longer has
// the commit a run tested (422 "No commit found for SHA"), the trybot
// records the failure once, shows it in the run, and stops retrying,
// with check runs (App) and with commit statuses (token), and that a
// restarted trybot does not retry it either.
func TestGitHubRefusesMissingCommit(t *testing.T) {
	t.Parallel()
	for _, app := range []bool{true, false} {
		name := "statuses"
		if app {
			name = "check runs"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			marker := filepath.Join(t.TempDir(), "go")
			builders := []config.Builder{{Name: "check", Steps: []config.Step{{Name: "wait", Shell: "while [ ! -e " + marker + " ]; do sleep 0.05; done"}}}}
			s := startStack(t, trystack.Options{GitHub: true, Builders: builders})
			g := s.GitHub
			dir := t.TempDir()
			start := func() (*trybot.Trybot, *prometheus.Registry, func()) {
				opts := s.TrybotOptions(dir)
				s.GitHubConfig(opts.Config, app)
				opts.Log = testLogger(t)
				opts.RetryMin, opts.RetryMax = 10*time.Millisecond, 50*time.Millisecond
				reg := prometheus.NewRegistry()
				opts.Registry = reg
				tb, stop := runStoppable(t, opts)
				return tb, reg, stop
			}
			tb, reg, stop := start()
			srv := httptest.NewServer(tb.Handler())
			t.Cleanup(srv.Close)
			runs, err := client.New(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			n, err := g.Sim.OpenPR(ctx, g.Slug(), g.Maintainer, githubsimPR("feature", "Add ok.txt", map[string]string{"ok.txt": "ok\n"}))
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Sim.AddLabel(ctx, g.Slug(), n, g.Maintainer, "run-trybot"); err != nil {
				t.Fatal(err)
			}
			// The build has started (and said so on GitHub) when GitHub
			// loses the commit.
			waitFor(t, "the build to start", 60*time.Second, func() bool { return postsCounted(t, reg, "started", "ok") == 1 })
			var run client.Run
			rl, err := runs.Runs(ctx, client.ListOptions{Review: client.ReviewGitHub, Change: int32(n)})
			if err != nil || len(rl) != 1 {
				t.Fatalf("runs: %+v, %v", rl, err)
			}
			run = rl[0]
			if err := g.Sim.ForgetCommit(g.Slug(), run.Revision); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the run to finish", 60*time.Second, func() bool {
				r, err := runs.Run(ctx, run.ID)
				if err != nil {
					t.Fatal(err)
				}
				run = *r
				return run.State.Finished()
			})
			if run.State != client.StateSucceeded || len(run.ReportErrors) != 1 {
				t.Fatalf("run %s, report errors %+v; want succeeded with one", run.State, run.ReportErrors)
			}
			re := run.ReportErrors[0]
			if re.What != "done:check" || re.Status != 422 || !strings.Contains(re.Error, "No commit found for SHA: "+run.Revision) || re.At.IsZero() || re.AwaitingAccess {
				t.Errorf("report error %+v", re)
			}
			if strings.Contains(re.Error, "http") {
				t.Errorf("the report error shows a URL: %q", re.Error)
			}
			if got, errs := postsCounted(t, reg, "done", "refused"), postsCounted(t, reg, "done", "error"); got != 1 || errs != 0 {
				t.Errorf("done posts: %v refused, %v retried errors; want 1 and 0", got, errs)
			}
			// Nothing is retried later, nor after a restart.
			time.Sleep(200 * time.Millisecond)
			stop()
			_, reg2, _ := start()
			time.Sleep(500 * time.Millisecond)
			if got := postsCounted(t, reg, "done", "refused") + postsCounted(t, reg2, "done", "refused") + postsCounted(t, reg2, "done", "error"); got != 1 {
				t.Errorf("done posts after a restart: %v attempts in all, want the first one only", got)
			}
		})
	}
}
