package query_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/query"
)

// sampleCorpus applies corpusgen.Sample to a new corpus.
func sampleCorpus(t testing.TB, legacy bool) *maintner.Corpus {
	t.Helper()
	c, err := maintner.New(maintner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range corpusgen.Sample(legacy) {
		p, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// startServer serves the query API on 127.0.0.1:0 and returns a client.
func startServer(t *testing.T, c *maintner.Corpus) (*query.Client, string) {
	t.Helper()
	srv := httptest.NewServer(query.NewHandler(c, nil))
	t.Cleanup(srv.Close)
	cl, err := query.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return cl, srv.URL
}

func TestQueryAPI(t *testing.T) {
	c := sampleCorpus(t, false)
	cl, _ := startServer(t, c)
	ctx := context.Background()
	const owner, repo, project = corpusgen.SampleOwner, corpusgen.SampleRepo, corpusgen.SampleProject

	repos, err := cl.Repos(ctx)
	if err != nil || len(repos) != 1 || repos[0].Issues != 2 || repos[0].OpenIssues != 1 || repos[0].PullRequests != 1 {
		t.Fatalf("Repos = %+v, %v", repos, err)
	}
	r, err := cl.Repo(ctx, owner, repo)
	if err != nil || len(r.Labels) != 2 || r.Labels[0].Name != "NeedsFix" {
		t.Fatalf("Repo = %+v, %v", r, err)
	}

	numbers := func(p query.Page[query.IssueSummary]) []int32 {
		var out []int32
		for _, is := range p.Items {
			out = append(out, is.Number)
		}
		return out
	}
	yes, no := true, false
	for _, tc := range []struct {
		name string
		f    query.IssueFilter
		want []int32
	}{
		{"all", query.IssueFilter{}, []int32{1, 2}},
		{"open", query.IssueFilter{State: "open"}, []int32{1}},
		{"closed", query.IssueFilter{State: "closed"}, []int32{2}},
		{"prs", query.IssueFilter{PR: &yes}, []int32{2}},
		{"issues", query.IssueFilter{PR: &no}, []int32{1}},
		{"label", query.IssueFilter{Labels: []string{"run-trybot"}}, []int32{2}},
		{"two labels", query.IssueFilter{Labels: []string{"run-trybot", "NeedsFix"}}, nil},
		{"updated since future", query.IssueFilter{UpdatedSince: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"updated since past", query.IssueFilter{UpdatedSince: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)}, []int32{1, 2}},
		{"after", query.IssueFilter{After: 1}, []int32{2}},
	} {
		t.Run("issues/"+tc.name, func(t *testing.T) {
			p, err := cl.Issues(ctx, owner, repo, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := numbers(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	p, err := cl.Issues(ctx, owner, repo, query.IssueFilter{Limit: 1})
	if err != nil || len(p.Items) != 1 || p.Next != 1 {
		t.Fatalf("paging: %+v %v", p, err)
	}

	is, err := cl.Issue(ctx, owner, repo, 1)
	if err != nil {
		t.Fatal(err)
	}
	if is.Title != "runtime: crash" || len(is.Comment) != 2 || is.Comment[1].Body != "Here it is (edited)." || is.User.Login != "alice" ||
		len(is.Events) != 1 || is.Events[0].Subject != "NeedsFix" || is.State != "open" {
		t.Errorf("issue 1 = %+v", is)
	}
	pr, err := cl.Issue(ctx, owner, repo, 2)
	if err != nil {
		t.Fatal(err)
	}
	if pr.PR == nil || !pr.PR.Merged || pr.PR.HeadSHA != "1111111111111111111111111111111111111111" || pr.PR.BaseRef != "master" ||
		len(pr.Statuses) != 1 || pr.Statuses[0].State != "success" || len(pr.CheckRuns) != 1 || len(pr.Reviews) != 1 || pr.State != "closed" {
		t.Errorf("PR 2 = %+v (pr %+v)", pr, pr.PR)
	}

	changes := func(f query.ChangeFilter) []int32 {
		t.Helper()
		f.Project = project
		p, err := cl.Changes(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []int32
		for _, ch := range p.Items {
			out = append(out, ch.Number)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    query.ChangeFilter
		want []int32
	}{
		{"all", query.ChangeFilter{}, []int32{1001, 1002}},
		{"merged", query.ChangeFilter{Status: "merged"}, []int32{1001}},
		{"closed", query.ChangeFilter{Status: "closed"}, []int32{1001, 1002}},
		{"open", query.ChangeFilter{Status: "open"}, nil},
		{"hashtag", query.ChangeFilter{Hashtag: "wip"}, []int32{1002}},
		{"vote run-trybot", query.ChangeFilter{Votes: []query.VoteFilter{{Label: "Run-TryBot", Value: 1}}}, []int32{1001}},
		{"vote trybot-result +1", query.ChangeFilter{Votes: []query.VoteFilter{{Label: "TryBot-Result", Value: 1}}}, []int32{1001}},
		// The -1 was on patch set 1 and did not survive patch set 2.
		{"vote trybot-result -1", query.ChangeFilter{Votes: []query.VoteFilter{{Label: "TryBot-Result", Value: -1}}}, nil},
		{"owner", query.ChangeFilter{Owner: corpusgen.SampleOwnerAccount}, []int32{1001, 1002}},
		{"branch", query.ChangeFilter{Branch: "refs/heads/master"}, []int32{1001, 1002}},
		{"other branch", query.ChangeFilter{Branch: "release"}, nil},
	} {
		t.Run("changes/"+tc.name, func(t *testing.T) {
			if got := changes(tc.f); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	ch, err := cl.Change(ctx, project, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Status != "merged" || ch.CurrentPatchSet != 2 || len(ch.PatchSets) != 2 || ch.Subject != "net/http: fix header parsing" ||
		ch.Owner != corpusgen.SampleOwnerAccount || len(ch.Messages) != 8 || ch.PatchSets[1].Subject != "net/http: fix header parsing" {
		t.Errorf("change 1001 = %+v", ch)
	}
	votes, err := cl.Votes(ctx, project, 1001)
	if err != nil {
		t.Fatal(err)
	}
	want := []query.PatchSetVotes{
		{PatchSet: 1, Votes: []query.Vote{{Label: "Run-TryBot", Account: 1002, Value: 1}, {Label: "TryBot-Result", Account: corpusgen.BotAccount, Value: -1}}},
		{PatchSet: 2, Current: true, Votes: []query.Vote{{Label: "Code-Review", Account: 1002, Value: 2}, {Label: "Run-TryBot", Account: 1002, Value: 1}, {Label: "TryBot-Result", Account: corpusgen.BotAccount, Value: 1}}},
	}
	for i := range votes {
		for j := range votes[i].Votes {
			votes[i].Votes[j].Granted = nil
		}
	}
	if !reflect.DeepEqual(votes, want) {
		t.Errorf("votes = %+v\nwant %+v", votes, want)
	}
	st, err := cl.Stats(ctx)
	if err != nil || st.GerritChanges != 2 || st.GitHubIssues != 2 || st.BadRecords != 0 {
		t.Errorf("stats = %+v, %v", st, err)
	}
}

func TestQueryErrors(t *testing.T) {
	c := sampleCorpus(t, false)
	cl, base := startServer(t, c)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"unknown repo", func() error { _, err := cl.Repo(ctx, "nope", "nope"); return err }, query.ErrNotFound},
		{"unknown issue", func() error { _, err := cl.Issue(ctx, "golang", "go", 99); return err }, query.ErrNotFound},
		{"unknown project", func() error { _, err := cl.Changes(ctx, query.ChangeFilter{Project: "x/y"}); return err }, query.ErrNotFound},
		{"unknown change", func() error { _, err := cl.Change(ctx, corpusgen.SampleProject, 5); return err }, query.ErrNotFound},
		{"no project", func() error { _, err := cl.Changes(ctx, query.ChangeFilter{}); return err }, query.ErrBadRequest},
		{"bad state", func() error { _, err := cl.Issues(ctx, "golang", "go", query.IssueFilter{State: "weird"}); return err }, query.ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/github/repos/golang/go/issues?state=bogus", 400},
		{"/api/github/repos/golang/go/issues?limit=0", 400},
		{"/api/github/repos/golang/go/issues?limit=999999", 400},
		{"/api/github/repos/golang/go/issues?updated_since=yesterday", 400},
		{"/api/github/repos/golang/go/issues?colour=red", 400},
		{"/api/github/repos/golang/go/issues?state=open&state=closed", 400},
		{"/api/github/repos/golang/go/issues/abc", 400},
		{"/api/github/repos/golang/go/issues/-3", 400},
		{"/api/gerrit/changes?project=go.googlesource.com/go&vote=Run-TryBot", 400},
		{"/api/gerrit/changes?project=go.googlesource.com/go&vote=Run-TryBot=x", 400},
		{"/api/gerrit/changes?project=go.googlesource.com/go&vote=Run-TryBot%3D%2B1", 200},
		{"/api/gerrit/changes?project=go.googlesource.com/go&vote=label:Run-TryBot=1", 200},
		{"/api/gerrit/changes/1001", 400},
		{"/api/gerrit/changes/1001?project=go.googlesource.com/go", 200},
		{"/api/gerrit/changes/1001/votes?project=other/proj", 404},
		{"/api/nothing", 404},
		{"/api/stats?x=1", 400},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.code)
			}
		})
	}
	resp, err := http.Post(base+"/api/stats", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/stats: %d", resp.StatusCode)
	}
}

func TestFilterRoundTrip(t *testing.T) {
	yes := true
	f := query.IssueFilter{State: "open", PR: &yes, Labels: []string{"a b", "c"}, UpdatedSince: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), Limit: 5, After: 7}
	got, err := query.ParseIssueFilter(f.Values())
	if err != nil || !reflect.DeepEqual(got, f) {
		t.Errorf("issue filter round trip: %+v, %v", got, err)
	}
	cf := query.ChangeFilter{Project: "p/q", Status: "open", Branch: "main", Hashtag: "h", Votes: []query.VoteFilter{{"Run-TryBot", 1}, {"Code-Review", -2}}, Owner: 3, Limit: 9, After: 1}
	gotc, err := query.ParseChangeFilter(cf.Values())
	if err != nil || !reflect.DeepEqual(gotc, cf) {
		t.Errorf("change filter round trip: %+v, %v", gotc, err)
	}
}

func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{"state=open&label=x", "pr=true&after=3&limit=10", "project=a/b&vote=Run-TryBot=%2B1&status=closed",
		"updated_since=2024-01-01T00:00:00Z", "vote=label:X=-2&project=p", "limit=-1", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		if f, err := query.ParseIssueFilter(v); err == nil {
			if _, err := query.ParseIssueFilter(f.Values()); err != nil {
				t.Errorf("issue filter %+v does not round-trip: %v", f, err)
			}
		} else if !errors.Is(err, query.ErrBadRequest) {
			t.Errorf("error %v does not wrap ErrBadRequest", err)
		}
		if f, err := query.ParseChangeFilter(v); err == nil {
			if _, err := query.ParseChangeFilter(f.Values()); err != nil {
				t.Errorf("change filter %+v does not round-trip: %v", f, err)
			}
		} else if !errors.Is(err, query.ErrBadRequest) {
			t.Errorf("error %v does not wrap ErrBadRequest", err)
		}
	})
}
