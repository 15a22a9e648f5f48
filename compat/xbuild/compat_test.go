package xbuild

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	xmaintner "golang.org/x/build/maintner"
	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// server is a tryd leader: a disk log, the corpus that logs through it
// and the /logs handler, served on 127.0.0.1:0.
type server struct {
	log    *mutlog.Log
	corpus *maintner.Corpus
	url    string // of /logs
}

func startServer(t *testing.T) *server {
	t.Helper()
	st, err := mutlog.NewDiskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	c, err := maintner.New(maintner.Options{Appender: l})
	if err != nil {
		t.Fatal(err)
	}
	h, err := logsync.NewHandler(logsync.HandlerOptions{Source: l, Path: "/logs", PollTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/logs", h)
	mux.Handle("/logs/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		l.Close()
	})
	return &server{log: l, corpus: c, url: srv.URL + "/logs"}
}

// history is the log both corpora read: corpusgen.Sample (GitHub issues,
// a pull request, comments, labels, statuses; Gerrit changes 1001 and
// 1002 with votes in the modern "Label=+1, <uuid>" form) plus change
// 1003 whose votes use the legacy form without a UUID.
func history() []*maintner.Mutation {
	ms := corpusgen.Sample(false)
	b := corpusgen.NewBuilder()
	b.Now = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	b.Legacy = true
	b.NewChange(1003, corpusgen.SampleOwnerAccount, "os: legacy votes")
	b.Vote(1003, corpusgen.SampleReviewerAccount, "Run-TryBot", 1, "")
	b.Vote(1003, corpusgen.BotAccount, "TryBot-Result", -1, "failed")
	b.Vote(1003, corpusgen.SampleReviewerAccount, "Code-Review", -2, "no")
	return append(ms, b.Take()...)
}

func init() {
	// x/build's maintner logs progress through the standard logger.
	log.SetOutput(io.Discard)
}

func syncXbuild(t *testing.T, url string) *xmaintner.Corpus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xc := new(xmaintner.Corpus)
	if err := xc.Initialize(ctx, xmaintner.NewNetworkMutationSource(url, t.TempDir())); err != nil {
		t.Fatalf("x/build Initialize over tryd's /logs: %v", err)
	}
	if err := xc.Check(); err != nil {
		t.Errorf("x/build corpus Check: %v", err)
	}
	return xc
}

type commentView struct {
	ID   int64
	User string
	Body string
}

type issueView struct {
	Number      int32
	ID          int64
	Title, Body string
	User        string
	Closed      bool
	PullRequest bool
	Labels      []string
	Comments    []commentView
	Events      []string
	Created     time.Time
	ClosedAt    time.Time
}

func tIssues(c *maintner.Corpus, owner, repo string) []issueView {
	c.RLock()
	defer c.RUnlock()
	var out []issueView
	for _, is := range c.GitHubRepo(owner, repo).Issues() {
		v := issueView{Number: is.Number, ID: is.ID, Title: is.Title, Body: c.MustText(is.Body), User: is.User.Login, Closed: is.Closed,
			PullRequest: is.PullRequest, Created: is.Created.Time(), ClosedAt: is.ClosedAt.Time()}
		for _, l := range is.Labels {
			v.Labels = append(v.Labels, l.Name)
		}
		sort.Strings(v.Labels)
		for _, cm := range is.Comments {
			v.Comments = append(v.Comments, commentView{cm.ID, cm.User.Login, c.MustText(cm.Body)})
		}
		for _, e := range is.Events {
			v.Events = append(v.Events, fmt.Sprintf("%d:%s", e.ID, e.Type))
		}
		out = append(out, v)
	}
	return out
}

func xIssues(xc *xmaintner.Corpus, owner, repo string) []issueView {
	var out []issueView
	xc.GitHub().Repo(owner, repo).ForeachIssue(func(is *xmaintner.GitHubIssue) error {
		v := issueView{Number: is.Number, ID: is.ID, Title: is.Title, Body: is.Body, User: is.User.Login, Closed: is.Closed,
			PullRequest: is.PullRequest, Created: is.Created.UTC(), ClosedAt: is.ClosedAt.UTC()}
		for _, l := range is.Labels {
			v.Labels = append(v.Labels, l.Name)
		}
		sort.Strings(v.Labels)
		is.ForeachComment(func(cm *xmaintner.GitHubComment) error {
			v.Comments = append(v.Comments, commentView{cm.ID, cm.User.Login, cm.Body})
			return nil
		})
		is.ForeachEvent(func(e *xmaintner.GitHubIssueEvent) error {
			v.Events = append(v.Events, fmt.Sprintf("%d:%s", e.ID, e.Type))
			return nil
		})
		out = append(out, v)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

func tLabels(c *maintner.Corpus, owner, repo string) map[int64]string {
	c.RLock()
	defer c.RUnlock()
	out := map[int64]string{}
	for _, l := range c.GitHubRepo(owner, repo).Labels() {
		out[l.ID] = l.Name
	}
	return out
}

func xLabels(xc *xmaintner.Corpus, owner, repo string) map[int64]string {
	out := map[int64]string{}
	xc.GitHub().Repo(owner, repo).ForeachLabel(func(l *xmaintner.GitHubLabel) error {
		out[l.ID] = l.Name
		return nil
	})
	return out
}

type changeView struct {
	Number   int32
	Status   string
	Branch   string
	Version  int32  // current patch set
	Commit   string // its commit
	ChangeID string
	Subject  string
	// Votes maps label → voter email → value, as x/build's
	// GerritMeta.LabelVotes reports them.
	Votes map[string]map[string]int8
}

func tChanges(c *maintner.Corpus, project string) []changeView {
	c.RLock()
	defer c.RUnlock()
	var out []changeView
	for _, ch := range c.GerritProject(project).Changes() {
		v := changeView{Number: ch.Number, Status: ch.Status, Branch: ch.Branch, Version: ch.CurrentPatchSet,
			ChangeID: ch.ChangeID, Subject: ch.Subject, Votes: map[string]map[string]int8{}}
		v.Commit = ch.PatchSet(ch.CurrentPatchSet).Commit.String()
		for _, vote := range ch.VotesOn(ch.CurrentPatchSet) {
			if v.Votes[vote.Label] == nil {
				v.Votes[vote.Label] = map[string]int8{}
			}
			v.Votes[vote.Label][fmt.Sprintf("%d@%s", vote.Account, corpusgen.ServerID)] = vote.Value
		}
		out = append(out, v)
	}
	return out
}

func xChanges(t *testing.T, xc *xmaintner.Corpus, project string) []changeView {
	server, proj, _ := strings.Cut(project, "/")
	gp := xc.Gerrit().Project(server, proj)
	if gp == nil {
		t.Fatalf("x/build has no Gerrit project %s", project)
	}
	var out []changeView
	gp.ForeachCLUnsorted(func(cl *xmaintner.GerritCL) error {
		// cl.Meta is not the same object as the last of cl.Metas (an
		// x/build quirk), and LabelVotes wants one from Metas.
		votes, err := cl.Metas[len(cl.Metas)-1].LabelVotes()
		if err != nil {
			t.Errorf("x/build LabelVotes of %d: %v", cl.Number, err)
		}
		out = append(out, changeView{Number: cl.Number, Status: cl.Status, Branch: cl.Branch(), Version: cl.Version,
			Commit: cl.Commit.Hash.String(), ChangeID: cl.ChangeID(), Subject: cl.Subject(), Votes: votes})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

func TestXbuildSyncsTrydLog(t *testing.T) {
	s := startServer(t)
	if err := s.corpus.LogBatch(context.Background(), history()...); err != nil {
		t.Fatal(err)
	}
	xc := syncXbuild(t, s.url)
	const owner, repo = corpusgen.SampleOwner, corpusgen.SampleRepo

	t.Run("issues and comments", func(t *testing.T) {
		got, want := xIssues(xc, owner, repo), tIssues(s.corpus, owner, repo)
		if len(want) != 2 {
			t.Fatalf("tryd has %d issues, want 2", len(want))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("x/build issues differ from tryd's:\n x/build %+v\n tryd    %+v", got, want)
		}
	})
	t.Run("labels", func(t *testing.T) {
		if got, want := xLabels(xc, owner, repo), tLabels(s.corpus, owner, repo); !reflect.DeepEqual(got, want) || len(want) != 2 {
			t.Errorf("labels: x/build %v, tryd %v", got, want)
		}
	})

	tch := tChanges(s.corpus, corpusgen.SampleProject)
	xch := xChanges(t, xc, corpusgen.SampleProject)
	if len(tch) != 3 || len(xch) != 3 {
		t.Fatalf("changes: tryd %d, x/build %d, want 3", len(tch), len(xch))
	}
	for i := range tch {
		tv, xv := tch[i], xch[i]
		t.Run(fmt.Sprintf("change %d", tv.Number), func(t *testing.T) {
			tVotes, xVotes := tv.Votes, xv.Votes
			tv.Votes, xv.Votes = nil, nil
			if !reflect.DeepEqual(tv, xv) {
				t.Errorf("change differs:\n x/build %+v\n tryd    %+v", xv, tv)
			}
			switch tv.Number {
			case 1003:
				// Legacy "Label: Run-TryBot=+1" votes: both read the same.
				if !reflect.DeepEqual(tVotes, xVotes) || tVotes["Run-TryBot"][fmt.Sprintf("%d@%s", corpusgen.SampleReviewerAccount, corpusgen.ServerID)] != 1 {
					t.Errorf("legacy votes: x/build %v, tryd %v", xVotes, tVotes)
				}
			default:
				// Known difference: current Gerrit writes "Label:
				// Run-TryBot=+1, <uuid>". x/build's parseGerritLabelValue
				// predates the UUID and reads the value "+1," as 0;
				// tryd (internal/notedb) reads +1. Every vote of these
				// changes is therefore 0 in x/build and the real value
				// in tryd, with the same labels and voters.
				for label, byVoter := range tVotes {
					for voter, value := range byVoter {
						if value == 0 {
							t.Errorf("tryd vote %s by %s is 0", label, voter)
						}
						xvalue, ok := xVotes[label][voter]
						if !ok || xvalue != 0 {
							t.Errorf("x/build vote %s by %s = %d (present %v); the known UUID misparse gives 0", label, voter, xvalue, ok)
						}
					}
				}
				if len(tVotes) != len(xVotes) {
					t.Errorf("labels voted: x/build %v, tryd %v", xVotes, tVotes)
				}
			}
		})
	}
	// tryd's own reading of the UUID form: the Run-TryBot+1 and the final
	// TryBot-Result+1 on patch set 2 of change 1001.
	s.corpus.RLock()
	ch := s.corpus.GerritProject(corpusgen.SampleProject).Change(1001)
	if ch.Vote(2, "Run-TryBot", corpusgen.SampleReviewerAccount) != 1 || ch.Vote(2, "TryBot-Result", corpusgen.BotAccount) != 1 {
		t.Errorf("tryd votes of 1001: %+v", ch.Votes)
	}
	s.corpus.RUnlock()
}

func TestXbuildSeesAppendedMutations(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.corpus.LogBatch(ctx, history()...); err != nil {
		t.Fatal(err)
	}
	xc := syncXbuild(t, s.url)

	var mu sync.Mutex
	var tailed []*maintpb.Mutation
	tailErr := make(chan error, 1)
	tailCtx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	go func() {
		tailErr <- xmaintner.TailNetworkMutationSource(tailCtx, s.url, func(e xmaintner.MutationStreamEvent) error {
			if e.Err != nil {
				return e.Err
			}
			mu.Lock()
			tailed = append(tailed, e.Mutation)
			mu.Unlock()
			return nil
		})
	}()

	// TailNetworkMutationSource gives no sign that it has read the index,
	// so append new issues until one is seen; each has its own number.
	seen := func() []int32 {
		mu.Lock()
		defer mu.Unlock()
		var nums []int32
		for _, m := range tailed {
			if m.GithubIssue != nil {
				nums = append(nums, m.GithubIssue.Number)
			}
		}
		return nums
	}
	b := corpusgen.NewBuilder()
	b.Now = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	var next int32 = 100
	for len(seen()) == 0 {
		if ctx.Err() != nil {
			t.Fatal("TailNetworkMutationSource saw no appended mutation")
		}
		b.Issue(next, &maintpb.GithubIssueMutation{Id: int64(next), User: &maintpb.GithubUser{Id: 1, Login: "late"}, Title: fmt.Sprintf("late issue %d", next), Created: b.Ts()}, nil)
		if err := s.corpus.LogBatch(ctx, b.Take()...); err != nil {
			t.Fatal(err)
		}
		next++
		time.Sleep(300 * time.Millisecond)
	}
	// Only appended records are tailed, never the history before it.
	for _, n := range seen() {
		if n < 100 {
			t.Errorf("tail delivered old issue %d", n)
		}
	}
	stopTail()
	if err := <-tailErr; err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("tail: %v", err)
	}

	// A synced x/build corpus picks the new issues up with Update.
	if err := xc.Update(ctx); err != nil {
		t.Fatalf("x/build Update: %v", err)
	}
	last := next - 1
	if is := xc.GitHub().Repo(corpusgen.SampleOwner, corpusgen.SampleRepo).Issue(last); is == nil || is.Title != fmt.Sprintf("late issue %d", last) {
		t.Errorf("x/build after Update: issue %d = %+v", last, is)
	}
	if got, want := xIssues(xc, corpusgen.SampleOwner, corpusgen.SampleRepo), tIssues(s.corpus, corpusgen.SampleOwner, corpusgen.SampleRepo); !reflect.DeepEqual(got, want) {
		t.Errorf("after Update, issues differ:\n x/build %+v\n tryd    %+v", got, want)
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
