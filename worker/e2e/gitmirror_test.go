package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
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
	run := func(repo, rev, want string) {
		t.Helper()
		g := &graph.Graph{Source: graph.Source{Repo: repo, Revision: rev}, Jobs: []*graph.Job{{
			Name:     "read",
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `cp data.txt "$0"/ && echo "at $1"`, "{{OUTPUT_DIR}}", rev}}},
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
	run(gm.RepoURL("proj"), rev1, "first\n")
	rev2 := commit(t, wt, map[string]string{"data.txt": "second\n"})
	sync()
	run(gm.RepoURL("proj"), rev2, "second\n")

	// When git cannot fetch (here a proxy refuses smart HTTP), the worker
	// falls back to gitmirror's tarball of the revision.
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	blocked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, ".git/") {
			http.Error(w, "smart HTTP is down", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(blocked.Close)
	run(blocked.URL+"/proj.git", rev1, "first\n")
	contains(t, "worker log", e.logs.String(), "falling back to the tarball")
}
