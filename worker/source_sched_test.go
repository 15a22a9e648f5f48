package worker_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker"
)

// TestPermanentSourceErrorFailsOnce checks that a source the worker
// cannot have for a reason that will not pass (an unknown revision of a
// real repository, a repository that does not exist) fails the job on
// its first attempt, with a message naming the cause, instead of being
// reported as the worker's fault and run again elsewhere up to the
// attempt limit; and that a good revision of the same repository still
// checks out.
func TestPermanentSourceErrorFailsOnce(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	repoDir := filepath.Join(t.TempDir(), "repo")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repoDir}, args...)...)
		cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "init", "--quiet", repoDir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	git("commit", "--quiet", "--allow-empty", "-m", "one")
	good := git("rev-parse", "HEAD")

	url := startCoordinator(t)
	wc, _ := api.NewClient(url, workerToken, nil)
	cc, _ := api.NewClient(url, clientToken, nil)
	w, err := worker.New(worker.Options{Client: wc, Dir: t.TempDir(), Slots: 2, DrainTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	for _, tc := range []struct {
		name      string
		repo, rev string
		want      api.JobState
		errHas    string
	}{
		{name: "unknown revision", repo: "file://" + repoDir, rev: strings.Repeat("ab", 20), want: api.JobFailed, errHas: "not found"},
		{name: "missing repository", repo: "file://" + repoDir + "-missing", rev: strings.Repeat("cd", 20), want: api.JobFailed, errHas: "not found"},
		{name: "good revision", repo: "file://" + repoDir, rev: good, want: api.JobSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := graph.Graph{Source: graph.Source{Repo: tc.repo, Revision: tc.rev}, Jobs: []*graph.Job{{Name: "ls",
				Commands: []graph.Command{{Argv: []string{"sh", "-c", "test -d {{SOURCE_DIR}}/.git || test -f {{SOURCE_DIR}}/.git"}}}}}}
			sub, err := cc.Submit(context.Background(), api.SubmitRequest{Graph: g})
			if err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer wcancel()
			if _, err := cc.Wait(wctx, sub.BuildID, nil); err != nil {
				t.Fatal(err)
			}
			b, err := cc.Build(wctx, sub.BuildID)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Jobs) != 1 {
				t.Fatalf("build has %d jobs, want 1", len(b.Jobs))
			}
			j := b.Jobs[0]
			if j.State != tc.want {
				t.Fatalf("job %s (error %q), want %s", j.State, j.Error, tc.want)
			}
			if len(j.Attempts) != 1 {
				t.Errorf("job has %d attempts, want 1 (a permanent source error is not retried): %+v", len(j.Attempts), j.Attempts)
			}
			if tc.errHas != "" && !strings.Contains(j.Error, tc.errHas) {
				t.Errorf("job error %q does not say %q", j.Error, tc.errHas)
			}
		})
	}
}
