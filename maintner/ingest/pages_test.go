package ingest

import (
	"fmt"
	"testing"

	"github.com/tryd-ci/tryd/internal/githubsim"
)

// TestGitHubPagination syncs an issue with more comments than a page
// holds: every comment arrives, in order, and one more comment after
// that (on the second page, behind an unchanged first page answered
// 304) arrives too.
func TestGitHubPagination(t *testing.T) {
	w := newGHWorld(t, githubsim.Options{})
	c, _ := newCorpus(t)
	g := w.syncer(t, c, nil)
	n, err := w.sim.OpenIssue(w.ctx, ghRepoName, "gopher", "Busy", "")
	must(t, err)
	count := func() int {
		c.RLock()
		defer c.RUnlock()
		return len(c.GitHubRepo("gopher", "widget").Issue(int32(n)).Comments)
	}
	for i := 0; i < 130; i++ {
		_, err := w.sim.Comment(w.ctx, ghRepoName, n, "gopher", fmt.Sprint("comment ", i))
		must(t, err)
		if i == 98 || i == 99 || i == 100 || i == 128 {
			must(t, g.Sync(w.ctx, ghRepoName, n))
			if got := count(); got != i+1 {
				t.Errorf("after %d comments: %d in the corpus", i+1, got)
			}
		}
	}
	must(t, g.Sync(w.ctx, ghRepoName, n))
	if got := count(); got != 130 {
		t.Errorf("%d comments in the corpus, want 130", got)
	}
}
