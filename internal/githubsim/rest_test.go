package githubsim

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
)

// fakeClock is an injectable clock for rate-limit windows.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// restWorld has a pull request with a label, comments and a review, and
// an issue.
func restWorld(t *testing.T, opts Options) (*world, int, int) {
	t.Helper()
	w := newWorld(t, opts)
	s, ctx := w.s, ctxT(t)
	n, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "feature", Title: "Add feature", Body: "Please review.", Files: map[string]string{"f.go": "package f\n"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddLabel(ctx, w.repo, n, "wendy", "run-trybot"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Comment(ctx, w.repo, n, "rita", "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddReview(ctx, w.repo, n, "wendy", "APPROVED", "LGTM"); err != nil {
		t.Fatal(err)
	}
	in, err := s.OpenIssue(ctx, w.repo, "rita", "Bug", "It breaks.")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMilestone(w.repo, "v1", ""); err != nil {
		t.Fatal(err)
	}
	return w, n, in
}

func TestRESTThroughGoGitHub(t *testing.T) {
	w, pr, iss := restWorld(t, Options{})
	ctx := ctxT(t)
	gh := client(t, w.s, w.writeTok)
	const o, r = "octo", "hello"

	t.Run("user", func(t *testing.T) {
		u, _, err := gh.Users.Get(ctx, "")
		if err != nil || u.GetLogin() != "wendy" || u.GetType() != "User" {
			t.Fatalf("GET /user = %v, %v", u, err)
		}
	})
	t.Run("repo", func(t *testing.T) {
		rp, _, err := gh.Repositories.Get(ctx, o, r)
		if err != nil || rp.GetFullName() != "octo/hello" || rp.GetDefaultBranch() != "main" || rp.GetOwner().GetLogin() != "octo" || rp.GetCloneURL() != w.s.GitURL(w.repo) {
			t.Fatalf("GET repo = %+v, %v", rp, err)
		}
		if !rp.GetPermissions()["push"] || rp.GetPermissions()["admin"] {
			t.Errorf("permissions = %v, want push but not admin", rp.GetPermissions())
		}
	})
	t.Run("issues list and get", func(t *testing.T) {
		all, _, err := gh.Issues.ListByRepo(ctx, o, r, &github.IssueListByRepoOptions{State: "all", Sort: "updated", Direction: "asc"})
		if err != nil || len(all) != 2 {
			t.Fatalf("list = %d issues, %v", len(all), err)
		}
		if !all[0].IsPullRequest() || all[1].IsPullRequest() {
			t.Errorf("want the PR (updated first) then the issue, got %d then %d", all[0].GetNumber(), all[1].GetNumber())
		}
		labeled, _, err := gh.Issues.ListByRepo(ctx, o, r, &github.IssueListByRepoOptions{Labels: []string{"run-trybot"}})
		if err != nil || len(labeled) != 1 || labeled[0].GetNumber() != pr {
			t.Fatalf("labels filter = %v, %v", labeled, err)
		}
		future, _, err := gh.Issues.ListByRepo(ctx, o, r, &github.IssueListByRepoOptions{Since: time.Now().Add(time.Hour)})
		if err != nil || len(future) != 0 {
			t.Fatalf("since filter = %v, %v", future, err)
		}
		is, _, err := gh.Issues.Get(ctx, o, r, iss)
		if err != nil || is.GetTitle() != "Bug" || is.GetUser().GetLogin() != "rita" || is.GetAuthorAssociation() != "NONE" {
			t.Fatalf("get issue = %+v, %v", is, err)
		}
	})
	t.Run("pagination", func(t *testing.T) {
		var seen []int
		opt := &github.IssueListByRepoOptions{State: "all", Direction: "asc", ListOptions: github.ListOptions{PerPage: 1}}
		for pages := 0; ; pages++ {
			list, resp, err := gh.Issues.ListByRepo(ctx, o, r, opt)
			if err != nil {
				t.Fatal(err)
			}
			if pages == 0 && (resp.LastPage != 2 || resp.NextPage != 2 || resp.FirstPage != 0) {
				t.Errorf("page 1 links: next %d last %d first %d", resp.NextPage, resp.LastPage, resp.FirstPage)
			}
			if pages == 1 && (resp.PrevPage != 1 || resp.FirstPage != 1 || resp.NextPage != 0) {
				t.Errorf("page 2 links: prev %d first %d next %d", resp.PrevPage, resp.FirstPage, resp.NextPage)
			}
			for _, is := range list {
				seen = append(seen, is.GetNumber())
			}
			if resp.NextPage == 0 {
				break
			}
			opt.Page = resp.NextPage
		}
		if len(seen) != 2 || seen[0] != 1 || seen[1] != 2 {
			t.Fatalf("paged through %v, want [1 2]", seen)
		}
	})
	t.Run("pulls", func(t *testing.T) {
		list, _, err := gh.PullRequests.List(ctx, o, r, nil)
		if err != nil || len(list) != 1 {
			t.Fatalf("list pulls = %v, %v", list, err)
		}
		p, _, err := gh.PullRequests.Get(ctx, o, r, pr)
		if err != nil {
			t.Fatal(err)
		}
		sha := lsRemote(t, w.s.GitURL(w.repo))["refs/pull/1/head"]
		if p.GetHead().GetSHA() != sha || p.GetHead().GetRef() != "feature" || p.GetBase().GetRef() != "main" ||
			p.GetBase().GetRepo().GetFullName() != "octo/hello" || p.GetMerged() || p.GetMergeCommitSHA() != "" {
			t.Fatalf("pull = head %s/%s base %s merged %v; ls-remote head %s", p.GetHead().GetRef(), p.GetHead().GetSHA(), p.GetBase().GetRef(), p.GetMerged(), sha)
		}
		if _, _, err := gh.PullRequests.Get(ctx, o, r, iss); !isStatus(err, 404) {
			t.Errorf("GET pulls/<issue> = %v, want 404", err)
		}
	})
	t.Run("comments", func(t *testing.T) {
		c, _, err := gh.Issues.CreateComment(ctx, o, r, pr, &github.IssueComment{Body: github.String("/trybot")})
		if err != nil || c.GetUser().GetLogin() != "wendy" || c.GetAuthorAssociation() != "COLLABORATOR" {
			t.Fatalf("create comment = %+v, %v", c, err)
		}
		onPR, _, err := gh.Issues.ListComments(ctx, o, r, pr, nil)
		if err != nil || len(onPR) != 2 || onPR[1].GetBody() != "/trybot" {
			t.Fatalf("list PR comments = %v, %v", onPR, err)
		}
		since := c.GetCreatedAt().Time
		repoWide, _, err := gh.Issues.ListComments(ctx, o, r, 0, &github.IssueListCommentsOptions{Since: &since})
		if err != nil || len(repoWide) == 0 {
			t.Fatalf("list repo comments since = %v, %v", repoWide, err)
		}
		if err := w.s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range w.hookRC.byEvent(t, "issue_comment", "created") {
			found = found || strings.Contains(string(d.body), `"body":"/trybot"`)
		}
		if !found {
			t.Error("REST comment did not send issue_comment created")
		}
	})
	t.Run("reviews", func(t *testing.T) {
		rv, _, err := gh.PullRequests.ListReviews(ctx, o, r, pr, nil)
		if err != nil || len(rv) != 1 || rv[0].GetState() != "APPROVED" || rv[0].GetUser().GetLogin() != "wendy" {
			t.Fatalf("reviews = %v, %v", rv, err)
		}
	})
	t.Run("labels", func(t *testing.T) {
		ls, _, err := gh.Issues.AddLabelsToIssue(ctx, o, r, iss, []string{"bug", "p1"})
		if err != nil || len(ls) != 2 {
			t.Fatalf("add labels = %v, %v", ls, err)
		}
		if _, err := gh.Issues.RemoveLabelForIssue(ctx, o, r, iss, "p1"); err != nil {
			t.Fatal(err)
		}
		if _, err := gh.Issues.RemoveLabelForIssue(ctx, o, r, iss, "p1"); !isStatus(err, 404) {
			t.Errorf("removing an absent label = %v, want 404", err)
		}
		on, _, err := gh.Issues.ListLabelsByIssue(ctx, o, r, iss, nil)
		if err != nil || len(on) != 1 || on[0].GetName() != "bug" {
			t.Fatalf("issue labels = %v, %v", on, err)
		}
		repoLabels, _, err := gh.Issues.ListLabels(ctx, o, r, nil)
		if err != nil || len(repoLabels) != 3 {
			t.Fatalf("repo labels = %v, %v", repoLabels, err)
		}
		reader := client(t, w.s, w.rTok)
		if _, _, err := reader.Issues.AddLabelsToIssue(ctx, o, r, iss, []string{"x"}); !isStatus(err, 403) {
			t.Errorf("reader labelling = %v, want 403", err)
		}
	})
	t.Run("milestones", func(t *testing.T) {
		ms, _, err := gh.Issues.ListMilestones(ctx, o, r, nil)
		if err != nil || len(ms) != 1 || ms[0].GetTitle() != "v1" {
			t.Fatalf("milestones = %v, %v", ms, err)
		}
	})
	t.Run("issue events", func(t *testing.T) {
		evs, _, err := gh.Issues.ListIssueEvents(ctx, o, r, pr, nil)
		if err != nil || len(evs) == 0 || evs[0].GetEvent() != "labeled" || evs[0].GetLabel().GetName() != "run-trybot" || evs[0].GetActor().GetLogin() != "wendy" {
			t.Fatalf("issue events = %v, %v", evs, err)
		}
		all, _, err := gh.Issues.ListRepositoryEvents(ctx, o, r, nil)
		if err != nil || len(all) < 2 || all[0].GetIssue().GetNumber() == 0 {
			t.Fatalf("repo events = %v, %v", all, err)
		}
	})
	t.Run("statuses", func(t *testing.T) {
		p, _, err := gh.PullRequests.Get(ctx, o, r, pr)
		if err != nil {
			t.Fatal(err)
		}
		sha := p.GetHead().GetSHA()
		for _, st := range []string{"pending", "success"} {
			if _, _, err := gh.Repositories.CreateStatus(ctx, o, r, sha, &github.RepoStatus{State: github.String(st), Context: github.String("tryd"), TargetURL: github.String("http://tryd/x")}); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := gh.Repositories.CreateStatus(ctx, o, r, sha, &github.RepoStatus{State: github.String("failure"), Context: github.String("other")}); err != nil {
			t.Fatal(err)
		}
		cs, _, err := gh.Repositories.GetCombinedStatus(ctx, o, r, sha, nil)
		if err != nil || cs.GetState() != "failure" || cs.GetTotalCount() != 2 || cs.GetSHA() != sha {
			t.Fatalf("combined = %+v, %v", cs, err)
		}
		byBranch, _, err := gh.Repositories.GetCombinedStatus(ctx, o, r, "feature", nil)
		if err != nil || byBranch.GetSHA() != sha {
			t.Fatalf("combined by branch = %+v, %v", byBranch, err)
		}
		list, _, err := gh.Repositories.ListStatuses(ctx, o, r, sha, nil)
		if err != nil || len(list) != 3 || list[0].GetState() != "failure" {
			t.Fatalf("list statuses = %v, %v", list, err)
		}
		if _, _, err := gh.Repositories.CreateStatus(ctx, o, r, sha, &github.RepoStatus{State: github.String("bogus")}); !isStatus(err, 422) {
			t.Errorf("bad state = %v, want 422", err)
		}
	})
	t.Run("checks", func(t *testing.T) {
		p, _, err := gh.PullRequests.Get(ctx, o, r, pr)
		if err != nil {
			t.Fatal(err)
		}
		sha := p.GetHead().GetSHA()
		if _, _, err := gh.Checks.CreateCheckRun(ctx, o, r, github.CreateCheckRunOptions{Name: "x", HeadSHA: sha}); !isStatus(err, 403) {
			t.Errorf("check run with a user token = %v, want 403", err)
		}
		app := client(t, w.s, w.appTok)
		id := createRun(t, app, sha)
		got, _, err := app.Checks.GetCheckRun(ctx, o, r, id)
		if err != nil || got.GetStatus() != "in_progress" || got.GetHeadSHA() != sha || got.GetApp().GetSlug() != "tryd" || len(got.PullRequests) != 1 {
			t.Fatalf("get check run = %+v, %v", got, err)
		}
		done := completeRun(t, app, id)
		if done.GetStatus() != "completed" || done.GetConclusion() != "success" || done.GetCompletedAt().IsZero() {
			t.Fatalf("completed run = %+v", done)
		}
		runs, _, err := gh.Checks.ListCheckRunsForRef(ctx, o, r, sha, nil)
		if err != nil || runs.GetTotal() != 1 || runs.CheckRuns[0].GetID() != id {
			t.Fatalf("runs for ref = %+v, %v", runs, err)
		}
		suites, _, err := gh.Checks.ListCheckSuitesForRef(ctx, o, r, sha, nil)
		if err != nil || suites.GetTotal() != 1 || suites.CheckSuites[0].GetConclusion() != "success" || suites.CheckSuites[0].GetHeadBranch() != "feature" {
			t.Fatalf("suites for ref = %+v, %v", suites, err)
		}
		if _, _, err := app.Checks.CreateCheckRun(ctx, o, r, github.CreateCheckRunOptions{Name: "x", HeadSHA: sha, Status: github.String("completed")}); !isStatus(err, 422) {
			t.Errorf("completed without conclusion = %v, want 422", err)
		}
		if _, _, err := app.Checks.CreateCheckRun(ctx, o, r, github.CreateCheckRunOptions{Name: "x", HeadSHA: strings.Repeat("1", 40)}); !isStatus(err, 422) {
			t.Errorf("unknown head_sha = %v, want 422", err)
		}
	})
	t.Run("permission", func(t *testing.T) {
		cases := []struct{ login, want string }{{"octo", "admin"}, {"wendy", "write"}, {"rita", "read"}}
		for _, c := range cases {
			p, _, err := gh.Repositories.GetPermissionLevel(ctx, o, r, c.login)
			if err != nil || p.GetPermission() != c.want || p.GetUser().GetLogin() != c.login {
				t.Errorf("permission of %s = %+v, %v; want %s", c.login, p, err, c.want)
			}
		}
		if _, _, err := gh.Repositories.GetPermissionLevel(ctx, o, r, "nobody"); !isStatus(err, 404) {
			t.Errorf("unknown user = %v, want 404", err)
		}
	})
	t.Run("hook deliveries", func(t *testing.T) {
		admin := client(t, w.s, w.ownerTok)
		if err := w.s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		hooks, _, err := admin.Repositories.ListHooks(ctx, o, r, nil)
		if err != nil || len(hooks) != 1 || hooks[0].GetID() != w.hookID || hooks[0].Config.GetURL() == "" {
			t.Fatalf("hooks = %v, %v", hooks, err)
		}
		rc := newReceiver(t, w.s)
		created, _, err := admin.Repositories.CreateHook(ctx, o, r, &github.Hook{
			Events: []string{"issues"},
			Config: &github.HookConfig{URL: github.String(rc.srv.URL), ContentType: github.String("json"), Secret: github.String("s3")},
		})
		if err != nil || created.GetID() == 0 || created.Config.GetURL() != rc.srv.URL || created.Config.GetSecret() != "********" {
			t.Fatalf("create hook = %+v, %v", created, err)
		}
		if err := w.s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if pings := rc.byEvent(t, "ping", ""); len(pings) != 1 || github.ValidateSignature(pings[0].header.Get("X-Hub-Signature-256"), pings[0].body, []byte("s3")) != nil {
			t.Fatalf("created hook got %d signed pings", len(pings))
		}
		if _, _, err := admin.Repositories.CreateHook(ctx, o, r, &github.Hook{Config: &github.HookConfig{}}); !isStatus(err, 422) {
			t.Errorf("hook without url = %v, want 422", err)
		}
		if _, _, err := gh.Repositories.CreateHook(ctx, o, r, &github.Hook{Config: &github.HookConfig{URL: github.String(rc.srv.URL)}}); !isStatus(err, 404) {
			t.Errorf("non-admin create hook = %v, want 404", err)
		}
		ds, resp, err := admin.Repositories.ListHookDeliveries(ctx, o, r, w.hookID, &github.ListCursorOptions{PerPage: 2})
		if err != nil || len(ds) != 2 || resp.Cursor == "" {
			t.Fatalf("deliveries = %v, cursor %q, %v", ds, resp.Cursor, err)
		}
		more, _, err := admin.Repositories.ListHookDeliveries(ctx, o, r, w.hookID, &github.ListCursorOptions{PerPage: 2, Cursor: resp.Cursor})
		if err != nil || len(more) == 0 || more[0].GetID() >= ds[1].GetID() {
			t.Fatalf("next page = %v, %v", more, err)
		}
		one, _, err := admin.Repositories.GetHookDelivery(ctx, o, r, w.hookID, ds[0].GetID())
		if err != nil || one.GetGUID() != ds[0].GetGUID() || one.Request == nil || one.GetStatusCode() != 200 {
			t.Fatalf("get delivery = %+v, %v", one, err)
		}
		before := len(w.hookRC.all())
		_, _, err = admin.Repositories.RedeliverHookDelivery(ctx, o, r, w.hookID, ds[0].GetID())
		var accepted *github.AcceptedError
		if !errors.As(err, &accepted) {
			t.Fatalf("redeliver = %v, want 202 (go-github's AcceptedError)", err)
		}
		if err := w.s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		all := w.hookRC.all()
		if len(all) != before+1 || all[len(all)-1].header.Get("X-GitHub-Delivery") != ds[0].GetGUID() {
			t.Fatalf("redelivery not received with the same GUID")
		}
		if _, _, err := gh.Repositories.ListHookDeliveries(ctx, o, r, w.hookID, nil); !isStatus(err, 404) {
			t.Errorf("non-admin deliveries = %v, want 404", err)
		}
	})
	t.Run("rate limit endpoint", func(t *testing.T) {
		rl, _, err := gh.RateLimit.Get(ctx)
		if err != nil || rl.GetCore().Limit != 5000 {
			t.Fatalf("rate_limit = %+v, %v", rl, err)
		}
	})
}

func isStatus(err error, code int) bool {
	var er *github.ErrorResponse
	return errors.As(err, &er) && er.Response.StatusCode == code
}

// TestRESTErrors checks the status codes and bodies GitHub uses for bad
// requests, with raw HTTP so that the exact bodies are visible.
func TestRESTErrors(t *testing.T) {
	w, pr, _ := restWorld(t, Options{})
	api := w.s.APIURL()
	cases := []struct {
		name, method, path, token, body string
		wantCode                        int
		wantBody                        string
	}{
		{"bad token", "GET", "repos/octo/hello", "nope", "", 401, `"message":"Bad credentials"`},
		{"unknown repo", "GET", "repos/octo/nope", w.writeTok, "", 404, `"message":"Not Found"`},
		{"unknown issue", "GET", "repos/octo/hello/issues/99", w.writeTok, "", 404, `"message":"Not Found"`},
		{"unknown route", "GET", "repos/octo/hello/frobnicate", w.writeTok, "", 404, `"documentation_url"`},
		{"wrong method", "PUT", "repos/octo/hello", w.writeTok, "", 404, `"message":"Not Found"`},
		{"malformed JSON", "POST", "repos/octo/hello/issues/" + strconv.Itoa(pr) + "/comments", w.writeTok, `{"body":`, 400, `"message":"Problems parsing JSON"`},
		{"wrong JSON type", "POST", "repos/octo/hello/issues/" + strconv.Itoa(pr) + "/comments", w.writeTok, `{"body":5}`, 422, `"message":"Invalid request.`},
		{"missing body", "POST", "repos/octo/hello/issues/" + strconv.Itoa(pr) + "/comments", w.writeTok, `{}`, 422, `"message":"Validation Failed"`},
		{"anonymous write", "POST", "repos/octo/hello/issues/" + strconv.Itoa(pr) + "/comments", "", `{"body":"x"}`, 401, `"message":"Requires authentication"`},
		{"bad state", "GET", "repos/octo/hello/issues?state=bogus", w.writeTok, "", 422, `"code":"invalid"`},
		{"bad since", "GET", "repos/octo/hello/issues?since=yesterday", w.writeTok, "", 422, `"field":"since"`},
		{"bad labels body", "POST", "repos/octo/hello/issues/1/labels", w.writeTok, `{"labels":"x"}`, 422, `"Validation Failed"`},
		{"unknown ref", "GET", "repos/octo/hello/commits/nope/status", w.writeTok, "", 404, `No commit found for SHA: nope`},
		{"anonymous read", "GET", "repos/octo/hello", "", "", 200, `"full_name":"octo/hello"`},
		// Each permission an endpoint may require, checked before it runs.
		{"anonymous user", "GET", "user", "", "", 401, `"message":"Requires authentication"`},
		{"reader labels", "POST", "repos/octo/hello/issues/1/labels", w.rTok, `{"labels":["x"]}`, 403, `"message":"Must have push access to repository"`},
		{"writer hooks", "GET", "repos/octo/hello/hooks", w.writeTok, "", 404, `"message":"Not Found"`},
		{"user check run", "POST", "repos/octo/hello/check-runs", w.writeTok, `{"name":"x"}`, 403, `"message":"You must authenticate via a GitHub App."`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, api+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode || !strings.Contains(string(b), tc.wantBody) {
				t.Fatalf("%s %s = %d %s; want %d containing %s", tc.method, tc.path, resp.StatusCode, b, tc.wantCode, tc.wantBody)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestConditionalRequests(t *testing.T) {
	w, _, _ := restWorld(t, Options{})
	url := w.s.APIURL() + "repos/octo/hello/issues"
	get := func(etag string) *http.Response {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "token "+w.writeTok)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	first := get("")
	etag := first.Header.Get("ETag")
	if first.StatusCode != 200 || etag == "" {
		t.Fatalf("first GET: %d, ETag %q", first.StatusCode, etag)
	}
	remaining := first.Header.Get("X-RateLimit-Remaining")
	second := get(etag)
	if second.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d, want 304", second.StatusCode)
	}
	if got := second.Header.Get("X-RateLimit-Remaining"); got != remaining {
		t.Errorf("304 counted against the rate limit: remaining %s -> %s", remaining, got)
	}
	if _, err := w.s.Comment(ctxT(t), w.repo, 1, "rita", "changes the list"); err != nil {
		t.Fatal(err)
	}
	third := get(etag)
	if third.StatusCode != 200 || third.Header.Get("ETag") == etag {
		t.Fatalf("after a change: %d with ETag %q (old %q)", third.StatusCode, third.Header.Get("ETag"), etag)
	}
	if n, _ := strconv.Atoi(third.Header.Get("X-RateLimit-Remaining")); strconv.Itoa(n+1) != remaining {
		t.Errorf("remaining after a counted request = %d, want %s-1", n, remaining)
	}
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Used", "X-RateLimit-Resource"} {
		if third.Header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
}

func TestRateLimitExhaustion(t *testing.T) {
	cases := []struct {
		name   string
		status int
		check  func(t *testing.T, err error)
	}{
		{"403 as GitHub", 403, func(t *testing.T, err error) {
			var rl *github.RateLimitError
			if !errors.As(err, &rl) || rl.Rate.Remaining != 0 || rl.Rate.Reset.IsZero() || !strings.Contains(rl.Message, "API rate limit exceeded") {
				t.Fatalf("err = %v, want go-github RateLimitError with a reset time", err)
			}
		}},
		{"429", 429, func(t *testing.T, err error) {
			if !isStatus(err, 429) {
				t.Fatalf("err = %v, want 429", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			w := newWorld(t, Options{Now: clk.Now, RateLimitStatus: tc.status})
			ctx := ctxT(t)
			if err := w.s.SetRateLimitRemaining("wendy", 1); err != nil {
				t.Fatal(err)
			}
			gh := client(t, w.s, w.writeTok)
			if _, resp, err := gh.Repositories.Get(ctx, "octo", "hello"); err != nil || resp.Rate.Remaining != 0 {
				t.Fatalf("last allowed request: %v (remaining %d)", err, resp.Rate.Remaining)
			}
			// A fresh client, so go-github's own memory of the limit
			// does not short-circuit the request.
			_, _, err := client(t, w.s, w.writeTok).Repositories.Get(ctx, "octo", "hello")
			tc.check(t, err)
			// Other users are not affected.
			if _, _, err := client(t, w.s, w.rTok).Repositories.Get(ctx, "octo", "hello"); err != nil {
				t.Fatalf("other user: %v", err)
			}
			clk.Advance(time.Hour + time.Second)
			if _, resp, err := client(t, w.s, w.writeTok).Repositories.Get(ctx, "octo", "hello"); err != nil || resp.Rate.Remaining != 4999 {
				t.Fatalf("after the reset: %v", err)
			}
		})
	}
}

// TestSecondaryRateLimit checks the secondary rate limit as GitHub
// sends it: 403 with Retry-After and the documentation_url go-github
// recognises (an *AbuseRateLimitError with RetryAfter), on writes only,
// and X-RateLimit-Remaining not 0.
func TestSecondaryRateLimit(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	c := client(t, w.s, w.writeTok)
	w.s.SecondaryRateLimit(1, 7*time.Second)
	if _, _, err := c.Repositories.Get(ctx, "octo", "hello"); err != nil {
		t.Errorf("a read under the secondary limit: %v", err)
	}
	head := lsRemote(t, w.s.GitURL(w.repo))["refs/heads/main"]
	st := &github.RepoStatus{State: github.String("success"), Context: github.String("x")}
	_, resp, err := c.Repositories.CreateStatus(ctx, "octo", "hello", head, st)
	var ab *github.AbuseRateLimitError
	if !errors.As(err, &ab) || ab.RetryAfter == nil || *ab.RetryAfter != 7*time.Second || resp.StatusCode != http.StatusForbidden ||
		resp.Header.Get("X-RateLimit-Remaining") == "0" {
		t.Errorf("write: %v (%+v); want 403 secondary rate limit with Retry-After 7s", err, resp)
	}
	// (go-github itself holds back c until the Retry-After has passed.)
	if _, _, err := client(t, w.s, w.writeTok).Repositories.CreateStatus(ctx, "octo", "hello", head, st); err != nil {
		t.Errorf("the next write: %v", err)
	}
}
