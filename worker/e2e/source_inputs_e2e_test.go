package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// TestSourceInputsNoCachePoisoning: a source_mode inputs job's ID covers
// only its inputs' paths and digests. A graph that states the digest of
// old content at a revision whose content differs must not run (its
// result would answer, from the cache, for content it never saw): the
// worker process fails it on the first attempt, naming the input. The
// honest graph of the old revision has the same job ID and runs, seeing
// only its input; the new revision with its own digest runs too.
func TestSourceInputsNoCachePoisoning(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	url, wt := gitServer(t)
	oldRev := commit(t, wt, map[string]string{"lib/lib.txt": "old\n", "other.txt": "not an input\n"})
	newRev := commit(t, wt, map[string]string{"lib/lib.txt": "new\n"})
	g := func(rev, content string) *graph.Graph {
		sum := sha256.Sum256([]byte(content))
		return &graph.Graph{Source: graph.Source{Repo: url, Revision: rev}, Jobs: []*graph.Job{{
			Name:       "lib",
			SourceMode: graph.SourceInputs,
			Inputs:     []graph.Input{{Path: "lib/lib.txt", Digest: hex.EncodeToString(sum[:])}},
			Cacheable:  true,
			Commands:   []graph.Command{{Argv: []string{"sh", "-c", `find . | LC_ALL=C sort; cp lib/lib.txt "$0"/`, "{{OUTPUT_DIR}}"}}},
		}}}
	}

	b, poisoned := e.run(g(newRev, "old\n"))
	j := jobByName(b, "lib")
	if j.State != api.JobFailed || len(j.Attempts) != 1 {
		t.Fatalf("stale digest: job %s after %d attempts (error %q), want failed after 1", j.State, len(j.Attempts), j.Error)
	}
	contains(t, "error", j.Error, `input "lib/lib.txt"`, "does not match")

	b, honest := e.run(g(oldRev, "old\n"))
	if honest["lib"] != poisoned["lib"] {
		t.Fatalf("the honest job's ID %s differs from the refused one's %s: the test proves nothing", honest["lib"], poisoned["lib"])
	}
	if j := jobByName(b, "lib"); j.State != api.JobSucceeded {
		t.Fatalf("old revision: job %s (error %q), want succeeded (run, not cached)", j.State, j.Error)
	}
	if got := readFile(t, filepath.Join(e.output(honest["lib"]), "lib.txt")); got != "old\n" {
		t.Errorf("old revision's job read %q", got)
	}
	if got, want := e.log(honest["lib"]), ".\n./lib\n./lib/lib.txt\n"; got[:min(len(got), len(want))] != want {
		t.Errorf("the job's source held:\n%s\nwant only its input:\n%s", got, want)
	}

	b, fresh := e.run(g(newRev, "new\n"))
	if j := jobByName(b, "lib"); j.State != api.JobSucceeded {
		t.Fatalf("new revision: job %s (error %q)", j.State, j.Error)
	}
	if got := readFile(t, filepath.Join(e.output(fresh["lib"]), "lib.txt")); got != "new\n" {
		t.Errorf("new revision's job read %q", got)
	}
}
