package e2e

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/gitmirror"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
)

// TestSourceFromGitmirror: the source comes from a real gitmirror (its
// smart HTTP endpoint), which mirrors an upstream repository; a new
// upstream commit reaches the job after a sync, through the worker's
// incremental fetch.
func TestSourceFromGitmirror(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	_, wt := gitServer(t)
	rev1 := commit(t, wt, map[string]string{"data.txt": "first\n"})
	// Mirror the upstream's .git directly (file path).
	m, err := gitmirror.New(gitmirror.Options{Dir: t.TempDir(), Repos: []gitmirror.Repo{{Name: "proj", URL: filepath.Join(wt, ".git")}}, Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go m.Run(ctx)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	sync := func() {
		sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
		defer scancel()
		if err := m.Sync(sctx, "proj"); err != nil {
			t.Fatalf("gitmirror sync: %v", err)
		}
	}
	sync()
	gm, err := gmclient.New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(rev, want string) {
		t.Helper()
		g := &graph.Graph{Source: graph.Source{Repo: gm.RepoURL("proj"), Revision: rev}, Jobs: []*graph.Job{{
			Name:     "read",
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `cp data.txt "$0"/ && git -C . rev-parse HEAD`, "{{OUTPUT_DIR}}"}}},
		}}}
		b, ids := e.run(g)
		if b.State != api.BuildSucceeded {
			t.Fatalf("build %s: %+v", b.State, b.Jobs)
		}
		if got := readFile(t, filepath.Join(e.output(ids["read"]), "data.txt")); got != want {
			t.Errorf("data.txt at %s = %q, want %q", rev, got, want)
		}
		contains(t, "log", e.log(ids["read"]), rev)
	}
	run(rev1, "first\n")
	rev2 := commit(t, wt, map[string]string{"data.txt": "second\n"})
	sync()
	run(rev2, "second\n")
}
