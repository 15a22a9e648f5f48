package ingest

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/maintner"
)

func gerritSyncer(t *testing.T, w *gerritsimtest.World, c *maintner.Corpus, auth bool) *Gerrit {
	t.Helper()
	opts := GerritOptions{Corpus: c, URL: w.Sim.URL(), Projects: []string{w.Project}, CorpusServer: "review.example.com",
		Dir: t.TempDir(), Git: testenv.NeedTool(t, "git")}
	if auth {
		opts.User, opts.Password = "bot", gerritsimtest.BotPassword
	}
	g, err := NewGerrit(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// changeLife uploads a change, votes Run-TryBot+1, comments, uploads a
// second patch set, approves and submits it, calling step after each.
func changeLife(t *testing.T, w *gerritsimtest.World, step func(string, int)) int {
	t.Helper()
	ctx, s := context.Background(), w.Sim
	n, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "Add feature", map[string]string{"feature.go": "package proj\n"})
	must(t, err)
	step("uploaded", n)
	must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Run-TryBot": 1}, "Please run the trybots.", ""))
	step("voted", n)
	must(t, s.Comment(ctx, n, 1, w.Reviewer, "looks good", ""))
	step("commented", n)
	_, _, err = s.UploadPatchSet(ctx, n, w.Owner, map[string]string{"feature.go": "package proj // v2\n"}, "Add feature, v2")
	must(t, err)
	step("patch set 2", n)
	must(t, s.Vote(ctx, n, 2, w.Reviewer, map[string]int{"Code-Review": 2}, "", ""))
	step("approved", n)
	must(t, s.Submit(ctx, n, w.Reviewer))
	step("submitted", n)
	return n
}

// checkChange checks the corpus's view of the change at the end of
// changeLife.
func checkChange(t *testing.T, c *maintner.Corpus, w *gerritsimtest.World, n int) {
	t.Helper()
	c.RLock()
	defer c.RUnlock()
	p := c.GerritProject("review.example.com/" + w.Project)
	if p == nil {
		t.Fatal("project not in the corpus")
	}
	ch := p.Change(int32(n))
	if ch == nil {
		t.Fatalf("change %d not in the corpus", n)
	}
	if ch.Err != "" {
		t.Fatalf("change %d: %s", n, ch.Err)
	}
	if ch.Status != "merged" || ch.Subject != "Add feature, v2" || ch.Branch != "main" || ch.CurrentPatchSet != 2 || len(ch.PatchSets) != 2 {
		t.Errorf("change: status %q subject %q branch %q current %d patch sets %d", ch.Status, ch.Subject, ch.Branch, ch.CurrentPatchSet, len(ch.PatchSets))
	}
	if v := ch.Vote(1, "Run-TryBot", int32(w.Reviewer)); v != 1 {
		t.Errorf("Run-TryBot on patch set 1 by the reviewer: %d, want 1", v)
	}
	if v := ch.Vote(2, "Code-Review", int32(w.Reviewer)); v != 2 {
		t.Errorf("Code-Review on patch set 2: %d, want 2", v)
	}
	var bodies []string
	for _, m := range ch.Messages {
		bodies = append(bodies, m.Body)
	}
	all := strings.Join(bodies, "\n")
	for _, want := range []string{"Please run the trybots.", "looks good"} {
		if !strings.Contains(all, want) {
			t.Errorf("messages %q lack %q", bodies, want)
		}
	}
	for _, ps := range ch.PatchSets {
		ref, ok := ch.PatchSetRef(ps.Number)
		if !ok || ref != ps.Commit || p.Commit(ref) == nil {
			t.Errorf("patch set %d: ref %v (%v), commit %v in corpus: %v", ps.Number, ref, ok, ps.Commit, p.Commit(ref) != nil)
		}
	}
	main, ok := p.Ref("refs/heads/main")
	if !ok || p.Commit(main) == nil {
		t.Fatalf("refs/heads/main %v %v not in the corpus with its commit", main, ok)
	}
	if gc := p.Commit(main); len(gc.Parents) == 0 {
		t.Errorf("main's tip %s has no parent; want the merged change on top", main)
	}
}

// TestGerritChange syncs after every step of a change's life, as nudges
// from webhooks would: every step logs something, the corpus (and a
// corpus rebuilt from the log) derives status, patch sets, votes per
// patch set and messages; replayed nudges and reconciliation log nothing.
func TestGerritChange(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(map[bool]string{false: "anonymous", true: "authenticated"}[auth], func(t *testing.T) {
			w := gerritsimtest.NewWorld(t, gerritsim.Options{})
			c, dir := newCorpus(t)
			g := gerritSyncer(t, w, c, auth)
			ctx := context.Background()
			must(t, g.Reconcile(ctx))
			n := changeLife(t, w, func(step string, n int) {
				before := records(c)
				if err := g.Sync(ctx, w.Project, n); err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if records(c) == before {
					t.Errorf("%s: nothing logged", step)
				}
			})
			checkChange(t, c, w, n)
			checkChange(t, reload(t, dir), w, n)
			before := records(c)
			for i := 0; i < 3; i++ {
				must(t, g.Sync(ctx, w.Project, n))
				must(t, g.Sync(ctx, w.Project, 0))
			}
			must(t, g.Reconcile(ctx))
			if got := records(c); got != before {
				t.Errorf("replayed nudges and reconciliation logged %d records, want none", got-before)
			}
		})
	}
}

// TestGerritReconcileAfterLostWebhooks never nudges: the reconciliation
// pass alone reaches the same state.
func TestGerritReconcileAfterLostWebhooks(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	c, dir := newCorpus(t)
	g := gerritSyncer(t, w, c, false)
	ctx := context.Background()
	must(t, g.Reconcile(ctx))
	n := changeLife(t, w, func(string, int) {})
	must(t, g.Reconcile(ctx))
	checkChange(t, c, w, n)
	checkChange(t, reload(t, dir), w, n)
	before := records(c)
	must(t, g.Reconcile(ctx))
	if got := records(c); got != before {
		t.Errorf("second reconciliation logged %d records", got-before)
	}
}

// TestGerritRun drives the worker through nudges: a nudge for a new
// change brings it into the corpus without a direct Sync.
func TestGerritRun(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	c, _ := newCorpus(t)
	g := gerritSyncer(t, w, c, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	n, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Nudged", map[string]string{"n.go": "package proj\n"})
	must(t, err)
	must(t, w.Sim.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""))
	must(t, g.Nudge(w.Project, n))
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.RLock()
		var ok bool
		if p := c.GerritProject("review.example.com/" + w.Project); p != nil {
			ch := p.Change(int32(n))
			ok = ch != nil && ch.HasVote("Run-TryBot", 1)
		}
		c.RUnlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nudged change with its vote not in the corpus")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := g.Nudge("other", 1); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("nudge of an untracked project: %v", err)
	}
}

func TestNewGerritValidates(t *testing.T) {
	c, _ := newCorpus(t)
	ok := GerritOptions{Corpus: c, URL: "https://review.example.com/", Projects: []string{"go"}, Dir: t.TempDir()}
	for _, tc := range []struct {
		name string
		mod  func(*GerritOptions)
	}{
		{"no corpus", func(o *GerritOptions) { o.Corpus = nil }},
		{"no projects", func(o *GerritOptions) { o.Projects = nil }},
		{"no dir", func(o *GerritOptions) { o.Dir = "" }},
		{"bad url", func(o *GerritOptions) { o.URL = "file:///etc" }},
		{"credentials in url", func(o *GerritOptions) { o.URL = "https://u:p@review.example.com/" }},
		{"dotdot", func(o *GerritOptions) { o.Projects = []string{"../x"} }},
		{"option", func(o *GerritOptions) { o.Projects = []string{"-x"} }},
		{"dup", func(o *GerritOptions) { o.Projects = []string{"go", "go"} }},
		{"bad server", func(o *GerritOptions) { o.CorpusServer = "a/b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mod(&o)
			if _, err := NewGerrit(o); err == nil {
				t.Error("accepted")
			}
		})
	}
	g, err := NewGerrit(ok)
	must(t, err)
	if got := g.CorpusName("go"); got != "review.example.com/go" {
		t.Errorf("corpus name %q", got)
	}
	if got := g.projects["go"].dir; filepath.Dir(got) != ok.Dir {
		t.Errorf("mirror %s outside %s", got, ok.Dir)
	}
}

func TestParseChangeRef(t *testing.T) {
	for _, tc := range []struct {
		ref    string
		cl, ps int
		ok     bool
	}{
		{"refs/changes/45/12345/meta", 12345, 0, true},
		{"refs/changes/07/7/3", 7, 3, true},
		{"refs/changes/00/100/1", 100, 1, true},
		{"refs/changes/7/7/1", 0, 0, false},
		{"refs/changes/08/7/1", 0, 0, false},
		{"refs/changes/07/07/1", 0, 0, false},
		{"refs/changes/07/7/robot-comments", 0, 0, false},
		{"refs/changes/07/7/0", 0, 0, false},
		{"refs/heads/main", 0, 0, false},
	} {
		cl, ps, ok := parseChangeRef(tc.ref)
		if cl != tc.cl || ps != tc.ps || ok != tc.ok {
			t.Errorf("%s: %d %d %v, want %d %d %v", tc.ref, cl, ps, ok, tc.cl, tc.ps, tc.ok)
		}
	}
}

// TestGerritBranchNudge moves a branch directly (as a push bypassing
// review does): a project-wide nudge, as a ref-updated event gives,
// brings the branch and its new commit in.
func TestGerritBranchNudge(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	c, _ := newCorpus(t)
	g := gerritSyncer(t, w, c, false)
	ctx := context.Background()
	must(t, g.Reconcile(ctx))
	sha, err := w.Sim.CommitToBranch(ctx, w.Project, "main", w.Owner, "Direct push", map[string]string{"d.go": "package proj\n"})
	must(t, err)
	_, err = w.Sim.CreateBranch(ctx, w.Project, "release", sha, w.Owner)
	must(t, err)
	must(t, g.Sync(ctx, w.Project, 0))
	c.RLock()
	defer c.RUnlock()
	p := c.GerritProject("review.example.com/" + w.Project)
	for _, ref := range []string{"refs/heads/main", "refs/heads/release"} {
		h, ok := p.Ref(ref)
		if !ok || h.String() != sha || p.Commit(h) == nil || p.Commit(h).Subject != "Direct push" {
			t.Errorf("%s: %v %v, want %s with its commit", ref, h, ok, sha)
		}
	}
}
