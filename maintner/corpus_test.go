package maintner_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/trydpb"
)

func newCorpus(t testing.TB, opts maintner.Options) *maintner.Corpus {
	t.Helper()
	c, err := maintner.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func apply(t testing.TB, c *maintner.Corpus, ms []*maintner.Mutation) {
	t.Helper()
	for _, m := range ms {
		p, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
}

// openLog opens a real disk log in a temporary directory.
func openLog(t testing.TB, dir string) *mutlog.Log {
	t.Helper()
	return segLog(t, dir, 0)
}

func TestSampleGitHub(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		c := newCorpus(t, maintner.Options{})
		apply(t, c, corpusgen.Sample(legacy))
		c.RLock()
		r := c.GitHubRepo("golang", "go")
		if r == nil {
			t.Fatal("no repo")
		}
		is := r.Issue(1)
		if is == nil || is.Title != "runtime: crash" || c.MustText(is.Body) != "It crashes.\n\nSee the trace." || is.User.Login != "alice" || is.Closed || is.PullRequest {
			t.Fatalf("issue 1 = %+v", is)
		}
		if len(is.Comments) != 2 || c.MustText(is.Comments[0].Body) != "Can you share the trace?" || c.MustText(is.Comments[1].Body) != "Here it is (edited)." ||
			is.Comments[1].User.Login != "alice" || is.Comments[1].Updated <= is.Comments[1].Created {
			t.Errorf("comments = %+v", is.Comments)
		}
		if len(is.Labels) != 1 || is.Labels[0].Name != "NeedsFix" || !is.HasLabel("NeedsFix") {
			t.Errorf("labels = %+v", is.Labels)
		}
		if len(is.Events) != 1 || is.Events[0].Type != "labeled" || is.Events[0].Actor.ID != 502 {
			t.Errorf("events = %+v", is.Events)
		}
		pr := r.Issue(2)
		if pr == nil || !pr.PullRequest || !pr.Closed || pr.ClosedBy.Login != "alice" || pr.PR == nil || !pr.PR.Merged || pr.PR.HeadRef != "fix" || pr.PR.HeadRepo != "bob/go" {
			t.Fatalf("PR 2 = %+v", pr)
		}
		if len(pr.Reviews) != 1 || pr.Reviews[0].State != "APPROVED" {
			t.Errorf("reviews = %+v", pr.Reviews)
		}
		if st := r.Statuses(pr.PR.HeadSHA); len(st) != 1 || st[0].State != "success" || st[0].Context != "tryd/linux-amd64" {
			t.Errorf("statuses = %+v", st)
		}
		if cr := r.CheckRuns(pr.PR.HeadSHA); len(cr) != 1 || cr[0].Conclusion != "success" {
			t.Errorf("check runs = %+v", cr)
		}
		c.RUnlock()
	}
}

func TestSampleGerrit(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		c := newCorpus(t, maintner.Options{})
		apply(t, c, corpusgen.Sample(legacy))
		c.RLock()
		p := c.GerritProject(corpusgen.SampleProject)
		if p == nil {
			t.Fatal("no project")
		}
		ch := p.Change(1001)
		if ch == nil || ch.Err != "" {
			t.Fatalf("change 1001 = %+v", ch)
		}
		if ch.Status != "merged" || ch.Branch != "master" || ch.Subject != "net/http: fix header parsing" || ch.Owner != corpusgen.SampleOwnerAccount ||
			ch.CurrentPatchSet != 2 || len(ch.PatchSets) != 2 || ch.ChangeID == "" {
			t.Errorf("change 1001 = %+v", ch)
		}
		// TryBot-Result-1 on patch set 1 does not carry over to patch
		// set 2 (Gerrit's reset on a new patch set).
		for _, tc := range []struct {
			ps      int32
			label   string
			account int32
			want    int8
		}{
			{1, "Run-TryBot", corpusgen.SampleReviewerAccount, 1},
			{1, "TryBot-Result", corpusgen.BotAccount, -1},
			{2, "Run-TryBot", corpusgen.SampleReviewerAccount, 1},
			{2, "TryBot-Result", corpusgen.BotAccount, 1},
			{2, "Code-Review", corpusgen.SampleReviewerAccount, 2},
			{1, "Code-Review", corpusgen.SampleReviewerAccount, 0},
		} {
			if got := ch.Vote(tc.ps, tc.label, tc.account); got != tc.want {
				t.Errorf("legacy=%v: PS%d %s by %d = %d, want %d", legacy, tc.ps, tc.label, tc.account, got, tc.want)
			}
		}
		if !ch.HasVote("Run-TryBot", 1) || ch.HasVote("TryBot-Result", -1) {
			t.Errorf("HasVote wrong: %+v", ch.Votes)
		}
		if len(ch.Messages) != 8 || ch.Messages[1].Body != "Patch Set 1: Run-TryBot+1\n\nPlease run the trybots." || ch.Messages[1].PatchSet != 1 {
			t.Errorf("messages = %+v", ch.Messages)
		}
		if ref, ok := ch.PatchSetRef(2); !ok || ref != ch.PatchSets[1].Commit {
			t.Errorf("patch set ref 2 = %v %v", ref, ok)
		}
		if head, ok := p.Ref("refs/heads/master"); !ok || head != ch.PatchSets[1].Commit {
			t.Errorf("master = %v, want merged PS2 %v", head, ch.PatchSets[1].Commit)
		}
		ab := p.Change(1002)
		if ab == nil || ab.Status != "abandoned" || len(ab.Hashtags) != 1 || ab.Hashtags[0] != "wip" {
			t.Errorf("change 1002 = %+v", ab)
		}
		if gc := p.Commit(ch.PatchSets[0].Commit); gc == nil || gc.Subject != "net/http: fix header parsing" || len(gc.Parents) != 1 {
			t.Errorf("patch set commit = %+v", gc)
		}
		c.RUnlock()
	}
}

func TestLogIsDurableThenVisible(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	c := newCorpus(t, maintner.Options{Appender: l})
	_, changed := c.Watch()
	ms := corpusgen.Sample(false)
	ctx := context.Background()
	if err := c.Log(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Watch channel not closed after Log")
	}
	if err := c.LogBatch(ctx, ms[1:]...); err != nil {
		t.Fatal(err)
	}
	want := c.Stats()
	if want.Records != int64(len(ms)) || want.GerritChanges != 2 {
		t.Fatalf("stats after Log: %+v", want)
	}
	// Reloading the log gives the same corpus.
	c2 := newCorpus(t, maintner.Options{})
	if _, err := c2.LoadLog(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := c2.Stats(); got != want {
		t.Errorf("reloaded stats %+v, want %+v", got, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c3 := newCorpus(t, maintner.Options{})
	if err := c3.LoadDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if got := c3.Stats(); got != want {
		t.Errorf("stats from dir %+v, want %+v", got, want)
	}
	// A closed log refuses the append, and the corpus stays unchanged.
	err := c.Log(ctx, &maintner.Mutation{Base: &maintpb.Mutation{Github: &maintpb.GithubMutation{Owner: "a", Repo: "b"}}})
	if !errors.Is(err, mutlog.ErrClosed) {
		t.Errorf("Log on closed log: %v", err)
	}
	if got := c.Stats(); got != want {
		t.Errorf("failed Log changed the corpus: %+v", got)
	}
}

func TestLogRefusesBadMutations(t *testing.T) {
	l := openLog(t, t.TempDir())
	c := newCorpus(t, maintner.Options{Appender: l})
	ctx := context.Background()
	for name, m := range map[string]*maintner.Mutation{
		"empty":      {},
		"bad commit": {Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{Project: "a/b", Commits: []*maintpb.GitCommit{{Sha1: "xyz", Raw: []byte("junk")}}}}},
		"bad ref":    {Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{Project: "a/b", Refs: []*maintpb.GitRef{{Ref: "refs/heads/x", Sha1: "nothex"}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Log(ctx, m); err == nil {
				t.Error("accepted")
			}
			if l.Size() != 0 {
				t.Errorf("log grew to %d", l.Size())
			}
		})
	}
	if err := newCorpus(t, maintner.Options{}).Log(ctx, corpusgen.Sample(false)[0]); !errors.Is(err, maintner.ErrReadOnly) {
		t.Errorf("Log without appender: %v", err)
	}
}

func TestApplyBadRecordChangesNothing(t *testing.T) {
	c := newCorpus(t, maintner.Options{})
	apply(t, c, corpusgen.Sample(false)[:3])
	before := c.Stats()
	good, _ := corpusgen.Sample(false)[3].Marshal()
	for name, p := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"bad tag":   {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"bad ext":   append(append([]byte{}, good...), 0xa2, 0x06, 0x05, 0x01),
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Apply(p); !errors.Is(err, maintner.ErrBadRecord) {
				t.Errorf("Apply = %v, want ErrBadRecord", err)
			}
		})
	}
	after := c.Stats()
	after.BadRecords = before.BadRecords
	if after != before {
		t.Errorf("bad records changed the corpus: %+v vs %+v", after, before)
	}
}

func TestLoadCorruptSegmentNamesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w, err := corpusgen.NewDirWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := corpusgen.Generate(context.Background(), corpusgen.Options{Size: 20 << 20}, w.Write); err != nil {
		t.Fatal(err)
	}
	files, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	// Clobber the header of the segment's third record.
	third := 0
	for i := 0; i < 3; i++ {
		third += 1 + bytes.Index(data[third+1:], []byte("REC@"))
	}
	copy(data[third:], "REX@")
	if err := os.WriteFile(files[1], data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCorpus(t, maintner.Options{})
	err = c.LoadDir(context.Background(), dir)
	if err == nil {
		t.Fatal("corrupt segment loaded")
	}
	if msg := err.Error(); !strings.Contains(msg, filepath.Base(files[1])) || !strings.Contains(msg, "segment 1") || !strings.Contains(msg, "offset") {
		t.Errorf("error does not name the segment: %v", err)
	}
	if c.Stats().Records == 0 {
		t.Error("records of segment 0 were lost")
	}
	checkUnmapped(t, dir)
}

// checkUnmapped fails if the process still maps a file of dir: LoadFiles
// maps sealed segments while it applies them and must release every
// mapping, also when the load fails.
func checkUnmapped(t *testing.T, dir string) {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return // not Linux: LoadFiles reads segments
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.Contains(line, dir) {
			t.Errorf("after the load, still mapped: %s", line)
		}
	}
}

func TestConcurrentReadersAndLog(t *testing.T) {
	l := openLog(t, t.TempDir())
	c := newCorpus(t, maintner.Options{Appender: l})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c.RLock()
				for _, r := range c.GitHubRepos() {
					for _, is := range r.Issues() {
						_ = len(is.Comments) + len(is.Title)
					}
				}
				for _, p := range c.GerritProjects() {
					for _, ch := range p.Changes() {
						_ = ch.VotesOn(ch.CurrentPatchSet)
					}
				}
				c.RUnlock()
				_ = c.Stats()
			}
		}()
	}
	if err := c.LogBatch(context.Background(), corpusgen.Sample(false)...); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		m := &maintner.Mutation{Ext: &trydpb.Ext{GithubStatus: []*trydpb.GithubStatus{{Owner: "golang", Repo: "go", Sha: "1111111111111111111111111111111111111111", Context: "c", State: "pending"}}}}
		if err := c.Log(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	cancel()
	wg.Wait()
}

func FuzzApply(f *testing.F) {
	for _, legacy := range []bool{false, true} {
		for _, m := range corpusgen.Sample(legacy) {
			p, err := m.Marshal()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(p)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	base := corpusgen.Sample(false)
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := maintner.New(maintner.Options{})
		if err != nil {
			t.Fatal(err)
		}
		// A corpus with content, so that the payload can touch existing
		// issues and changes.
		for _, m := range base[:4] {
			p, _ := m.Marshal()
			if err := c.Apply(p); err != nil {
				t.Fatal(err)
			}
		}
		before := c.Stats()
		if err := c.Apply(payload); err != nil {
			if !errors.Is(err, maintner.ErrBadRecord) {
				t.Errorf("error %v does not wrap ErrBadRecord", err)
			}
			after := c.Stats()
			after.BadRecords = before.BadRecords
			if after != before {
				t.Errorf("rejected record changed the corpus")
			}
		}
		c.RLock()
		for _, r := range c.GitHubRepos() {
			for _, is := range r.Issues() {
				_ = is.LastModified()
			}
		}
		for _, p := range c.GerritProjects() {
			for _, ch := range p.Changes() {
				_ = ch.VotesOn(ch.CurrentPatchSet)
			}
		}
		c.RUnlock()
	})
}
