package githubsim

import (
	"fmt"
	"net/url"
	"strings"
)

// This file renders the simulator's state as GitHub's JSON objects. All
// functions expect s.mu held.

func (s *Sim) api() string { return s.base + "/api/v3" }

func (s *Sim) wUserOf(u *user) *wUser {
	if u == nil {
		return nil
	}
	api := s.api() + "/users/" + url.PathEscape(u.login)
	kind := "User"
	if u.typ == "Bot" {
		kind = "Bot"
	}
	if u.typ == "Organization" {
		kind = "Organization"
	}
	return &wUser{
		Login: u.login, ID: u.id, NodeID: nodeID(kind, u.id),
		AvatarURL:  fmt.Sprintf("%s/avatars/u/%d?v=4", s.base, u.id),
		GravatarID: "", URL: api, HTMLURL: s.base + "/" + u.login,
		FollowersURL: api + "/followers", FollowingURL: api + "/following{/other_user}",
		GistsURL: api + "/gists{/gist_id}", StarredURL: api + "/starred{/owner}{/repo}",
		SubscriptionsURL: api + "/subscriptions", OrganizationsURL: api + "/orgs",
		ReposURL: api + "/repos", EventsURL: api + "/events{/privacy}",
		ReceivedEventsURL: api + "/received_events", Type: kind, SiteAdmin: false,
	}
}

func (s *Sim) openIssuesLocked(r *repo) int64 {
	var n int64
	for _, is := range r.issues {
		if is.state == "open" {
			n++
		}
	}
	return n
}

func (s *Sim) wRepoOf(r *repo) *wRepo {
	api := s.api() + "/repos/" + r.fullName()
	web := s.base + "/" + r.fullName()
	open := s.openIssuesLocked(r)
	return &wRepo{
		ID: r.id, NodeID: nodeID("Repository", r.id), Name: r.name, FullName: r.fullName(),
		Owner: s.wUserOf(s.users[r.owner]), HTMLURL: web, URL: api,
		ForksURL: api + "/forks", KeysURL: api + "/keys{/key_id}",
		CollaboratorsURL: api + "/collaborators{/collaborator}", TeamsURL: api + "/teams",
		HooksURL: api + "/hooks", IssueEventsURL: api + "/issues/events{/number}",
		EventsURL: api + "/events", AssigneesURL: api + "/assignees{/user}",
		BranchesURL: api + "/branches{/branch}", TagsURL: api + "/tags",
		BlobsURL: api + "/git/blobs{/sha}", GitTagsURL: api + "/git/tags{/sha}",
		GitRefsURL: api + "/git/refs{/sha}", TreesURL: api + "/git/trees{/sha}",
		StatusesURL: api + "/statuses/{sha}", LanguagesURL: api + "/languages",
		StargazersURL: api + "/stargazers", ContributorsURL: api + "/contributors",
		SubscribersURL: api + "/subscribers", SubscriptionURL: api + "/subscription",
		CommitsURL: api + "/commits{/sha}", GitCommitsURL: api + "/git/commits{/sha}",
		CommentsURL: api + "/comments{/number}", IssueCommentURL: api + "/issues/comments{/number}",
		ContentsURL: api + "/contents/{+path}", CompareURL: api + "/compare/{base}...{head}",
		MergesURL: api + "/merges", ArchiveURL: api + "/{archive_format}{/ref}",
		DownloadsURL: api + "/downloads", IssuesURL: api + "/issues{/number}",
		PullsURL: api + "/pulls{/number}", MilestonesURL: api + "/milestones{/number}",
		NotificationsURL: api + "/notifications{?since,all,participating}",
		LabelsURL:        api + "/labels{/name}", ReleasesURL: api + "/releases{/id}",
		DeploymentsURL: api + "/deployments",
		CreatedAt:      ghTime(r.created), UpdatedAt: ghTime(r.pushed), PushedAt: ghTime(r.pushed),
		GitURL: strings.Replace(web, "http://", "git://", 1) + ".git", SSHURL: "git@" + hostOf(s.base) + ":" + r.fullName() + ".git",
		CloneURL: web + ".git", SVNURL: web,
		HasIssues: true, HasProjects: true, HasDownloads: true, HasWiki: true,
		OpenIssuesCount: open, OpenIssues: open, DefaultBranch: r.defaultBranch,
		Topics: []string{}, Visibility: "public", CustomProperties: map[string]any{},
	}
}

func hostOf(base string) string {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "localhost"
	}
	return u.Hostname()
}

func (s *Sim) wPushRepoOf(r *repo) *wPushRepo {
	w := s.wRepoOf(r)
	o := s.users[r.owner]
	return &wPushRepo{
		wRepo:        w,
		Owner:        &wPushUser{Name: o.login, Email: s.ident(o.login).email, wUser: w.Owner},
		CreatedAt:    r.created.Unix(),
		PushedAt:     r.pushed.Unix(),
		MasterBranch: r.defaultBranch,
	}
}

// envelope returns the webhook properties of an event in r sent by
// sender; inst is nil but for a GitHub App's hook.
func (s *Sim) envelope(r *repo, sender *user, inst *wInstallation) wEnvelope {
	return wEnvelope{Repository: s.wRepoOf(r), Sender: s.wUserOf(sender), Inst: inst}
}

func (s *Sim) wLabelOf(r *repo, l *label) *wLabel {
	return &wLabel{
		ID: l.id, NodeID: nodeID("Label", l.id),
		URL:  s.api() + "/repos/" + r.fullName() + "/labels/" + url.PathEscape(l.name),
		Name: l.name, Color: l.color, Default: false, Description: sp(l.descr),
	}
}

func (s *Sim) wLabelsOf(r *repo, ls []*label) []*wLabel {
	return wireAll(ls, func(l *label) *wLabel { return s.wLabelOf(r, l) })
}

func (s *Sim) wMilestoneOf(r *repo, m *milestone) *wMilestone {
	if m == nil {
		return nil
	}
	api := fmt.Sprintf("%s/repos/%s/milestones/%d", s.api(), r.fullName(), m.number)
	var open, closed int
	for _, is := range r.issues {
		if is.milestone == m {
			if is.state == "open" {
				open++
			} else {
				closed++
			}
		}
	}
	return &wMilestone{
		URL: api, HTMLURL: fmt.Sprintf("%s/%s/milestone/%d", s.base, r.fullName(), m.number),
		LabelsURL: api + "/labels", ID: m.id, NodeID: nodeID("Milestone", m.id), Number: m.number,
		Title: m.title, Description: sp(m.descr), Creator: s.wUserOf(m.creator),
		OpenIssues: open, ClosedIssues: closed, State: m.state,
		CreatedAt: ghTime(m.created), UpdatedAt: ghTime(m.updated), DueOn: tp(m.due), ClosedAt: tp(m.closed),
	}
}

func (s *Sim) wUsersOf(us []*user) []*wUser { return wireAll(us, s.wUserOf) }

func (s *Sim) reactions(apiURL string) wReactions {
	return wReactions{URL: apiURL + "/reactions"}
}

func (s *Sim) wIssueOf(r *repo, is *issue) *wIssue {
	api := fmt.Sprintf("%s/repos/%s/issues/%d", s.api(), r.fullName(), is.number)
	kind := "issues"
	if is.pr != nil {
		kind = "pull"
	}
	w := &wIssue{
		URL: api, RepositoryURL: s.api() + "/repos/" + r.fullName(),
		LabelsURL: api + "/labels{/name}", CommentsURL: api + "/comments", EventsURL: api + "/events",
		HTMLURL: fmt.Sprintf("%s/%s/%s/%d", s.base, r.fullName(), kind, is.number),
		ID:      is.id, NodeID: nodeID("Issue", is.id), Number: is.number, Title: is.title,
		User: s.wUserOf(is.author), Labels: s.wLabelsOf(r, is.labels), State: is.state,
		Assignees: s.wUsersOf(is.assignees), Milestone: s.wMilestoneOf(r, is.milestone),
		Comments: is.comments, CreatedAt: ghTime(is.created), UpdatedAt: ghTime(is.updated),
		ClosedAt: tp(is.closed), AuthorAssociation: s.assocLocked(r, is.author),
		Body: sp(is.body), Reactions: s.reactions(api),
	}
	if len(is.assignees) > 0 {
		w.Assignee = s.wUserOf(is.assignees[0])
	}
	draft := false
	if is.pr != nil {
		pr := fmt.Sprintf("%s/%s/pull/%d", s.base, r.fullName(), is.number)
		w.PullRequest = &wIssuePRLinks{
			URL:     fmt.Sprintf("%s/repos/%s/pulls/%d", s.api(), r.fullName(), is.number),
			HTMLURL: pr, DiffURL: pr + ".diff", PatchURL: pr + ".patch", MergedAt: tp(is.pr.mergedAt),
		}
		draft = is.pr.draft
	}
	w.Draft = &draft
	return w
}

func (s *Sim) wBranchOf(r *repo, ref, sha string) wPRBranch {
	return wPRBranch{
		Label: r.owner + ":" + ref, Ref: ref, SHA: sha,
		User: s.wUserOf(s.users[r.owner]), Repo: s.wRepoOf(r),
	}
}

func (s *Sim) wPullOf(r *repo, is *issue) *wPull {
	p := is.pr
	api := fmt.Sprintf("%s/repos/%s/pulls/%d", s.api(), r.fullName(), is.number)
	iapi := fmt.Sprintf("%s/repos/%s/issues/%d", s.api(), r.fullName(), is.number)
	web := fmt.Sprintf("%s/%s/pull/%d", s.base, r.fullName(), is.number)
	statuses := s.api() + "/repos/" + r.fullName() + "/statuses/" + p.headSHA
	w := &wPull{
		URL: api, ID: p.id, NodeID: nodeID("PullRequest", p.id), HTMLURL: web,
		DiffURL: web + ".diff", PatchURL: web + ".patch", IssueURL: iapi,
		Number: is.number, State: is.state, Title: is.title, User: s.wUserOf(is.author),
		Body: sp(is.body), CreatedAt: ghTime(is.created), UpdatedAt: ghTime(is.updated),
		ClosedAt: tp(is.closed), MergedAt: tp(p.mergedAt), MergeCommitSHA: sp(p.mergeSHA),
		Assignees: s.wUsersOf(is.assignees), RequestedReviewers: []*wUser{}, RequestedTeams: []any{},
		Labels: s.wLabelsOf(r, is.labels), Milestone: s.wMilestoneOf(r, is.milestone),
		CommitsURL: api + "/commits", ReviewCommentsURL: api + "/comments",
		ReviewCommentURL: s.api() + "/repos/" + r.fullName() + "/pulls/comments{/number}",
		CommentsURL:      iapi + "/comments", StatusesURL: statuses,
		Head: s.wBranchOf(r, p.headRef, p.headSHA), Base: s.wBranchOf(r, p.baseRef, p.baseSHA),
		Links: wPRLinks{
			Self: wHref{api}, HTML: wHref{web}, Issue: wHref{iapi}, Comments: wHref{iapi + "/comments"},
			ReviewComments: wHref{api + "/comments"},
			ReviewComment:  wHref{s.api() + "/repos/" + r.fullName() + "/pulls/comments{/number}"},
			Commits:        wHref{api + "/commits"}, Statuses: wHref{statuses},
		},
		AuthorAssociation: s.assocLocked(r, is.author), Draft: p.draft, Merged: p.merged,
		MergeableState: "unknown", MergedBy: s.wUserOf(p.mergedBy), Comments: is.comments,
		Commits: p.commits, Additions: p.adds, Deletions: p.dels, ChangedFiles: p.nf,
		MaintainerCanModify: false,
	}
	if len(is.assignees) > 0 {
		w.Assignee = s.wUserOf(is.assignees[0])
	}
	if is.state == "open" {
		// GitHub computes mergeability in the background and answers
		// null until it knows; the simulator knows at once (it is
		// computed with refs/pull/N/merge).
		m := p.mergeable
		w.Mergeable, w.Rebaseable = &m, &m
		w.MergeableState = "clean"
		if !m {
			w.MergeableState = "dirty"
		}
	}
	return w
}

func (s *Sim) wCommentOf(r *repo, c *comment) *wComment {
	api := fmt.Sprintf("%s/repos/%s/issues/comments/%d", s.api(), r.fullName(), c.id)
	kind := "issues"
	if c.issue.pr != nil {
		kind = "pull"
	}
	var via *wApp
	if c.author.app != nil {
		via = s.wAppOf(c.author.app)
	}
	return &wComment{
		URL:      api,
		HTMLURL:  fmt.Sprintf("%s/%s/%s/%d#issuecomment-%d", s.base, r.fullName(), kind, c.issue.number, c.id),
		IssueURL: fmt.Sprintf("%s/repos/%s/issues/%d", s.api(), r.fullName(), c.issue.number),
		ID:       c.id, NodeID: nodeID("IssueComment", c.id), User: s.wUserOf(c.author),
		CreatedAt: ghTime(c.created), UpdatedAt: ghTime(c.updated),
		AuthorAssociation: s.assocLocked(r, c.author), PerformedViaGithubApp: via,
		Body: c.body, Reactions: s.reactions(api),
	}
}

func (s *Sim) wReviewOf(r *repo, rv *review) *wReview {
	web := fmt.Sprintf("%s/%s/pull/%d#pullrequestreview-%d", s.base, r.fullName(), rv.issue.number, rv.id)
	pr := fmt.Sprintf("%s/repos/%s/pulls/%d", s.api(), r.fullName(), rv.issue.number)
	return &wReview{
		ID: rv.id, NodeID: nodeID("PullRequestReview", rv.id), User: s.wUserOf(rv.author),
		Body: rv.body, State: rv.state, HTMLURL: web, PullRequestURL: pr,
		AuthorAssociation: s.assocLocked(r, rv.author),
		Links:             map[string]wHref{"html": {web}, "pull_request": {pr}},
		SubmittedAt:       tp(rv.submitted), CommitID: rv.commitID,
	}
}

func (s *Sim) wAppOf(a *app) *wApp {
	return &wApp{
		ID: a.id, Slug: a.slug, NodeID: nodeID("Integration", a.id), Owner: s.wUserOf(a.owner),
		Name: a.name, ExternalURL: s.base + "/apps/" + a.slug, HTMLURL: s.base + "/apps/" + a.slug,
		CreatedAt: ghTime(a.created), UpdatedAt: ghTime(a.created),
		Permissions: map[string]string{"checks": "write", "contents": "read", "issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "write"},
		Events:      append([]string{}, a.events...),
	}
}

// prsForSHA lists the open pull requests whose head is sha, as check runs
// and suites show them.
func (s *Sim) prsForSHA(r *repo, sha string) []*wCheckPR {
	out := []*wCheckPR{}
	ref := wRepoRef{ID: r.id, URL: s.api() + "/repos/" + r.fullName(), Name: r.name}
	for _, is := range r.issues {
		if is.pr == nil || is.state != "open" || is.pr.headSHA != sha {
			continue
		}
		out = append(out, &wCheckPR{
			URL: fmt.Sprintf("%s/repos/%s/pulls/%d", s.api(), r.fullName(), is.number),
			ID:  is.pr.id, Number: is.number,
			Head: wPRRefBranch{Ref: is.pr.headRef, SHA: is.pr.headSHA, Repo: ref},
			Base: wPRRefBranch{Ref: is.pr.baseRef, SHA: is.pr.baseSHA, Repo: ref},
		})
	}
	return out
}

// suiteState aggregates a suite's runs as GitHub does: queued until a run
// starts, completed when all are, with the worst conclusion.
func (s *Sim) suiteState(r *repo, cs *checkSuite) (status, conclusion string, latest int) {
	order := []string{"action_required", "cancelled", "timed_out", "failure", "stale", "neutral", "skipped", "success"}
	rank := func(c string) int {
		for i, o := range order {
			if o == c {
				return i
			}
		}
		return len(order)
	}
	status = "completed"
	anyStarted := false
	best := len(order)
	for _, cr := range r.checkRuns {
		if cr.suite != cs {
			continue
		}
		latest++
		switch cr.status {
		case "completed":
			anyStarted = true
			if rk := rank(cr.conclusion); rk < best {
				best = rk
			}
		case "in_progress":
			anyStarted = true
			status = "in_progress"
		default:
			if status == "completed" {
				status = "queued"
			}
		}
	}
	if status == "queued" && anyStarted {
		status = "in_progress"
	}
	if latest == 0 {
		status = "queued"
	}
	if status == "completed" && best < len(order) {
		conclusion = order[best]
	}
	return status, conclusion, latest
}

func (s *Sim) wCheckSuiteOf(r *repo, cs *checkSuite, rest bool) *wCheckSuite {
	st, concl, latest := s.suiteState(r, cs)
	api := fmt.Sprintf("%s/repos/%s/check-suites/%d", s.api(), r.fullName(), cs.id)
	w := &wCheckSuite{
		ID: cs.id, NodeID: nodeID("CheckSuite", cs.id), HeadBranch: sp(cs.headBranch), HeadSHA: cs.headSHA,
		Status: st, Conclusion: sp(concl), URL: api, Before: sp(cs.before), After: sp(cs.headSHA),
		PullRequests: s.prsForSHA(r, cs.headSHA), App: s.wAppOf(cs.app),
		CreatedAt: ghTime(cs.created), UpdatedAt: ghTime(cs.updated),
	}
	if rest {
		w.LatestCheckRunsCount = &latest
		w.CheckRunsURL = api + "/check-runs"
		w.Repository = s.wRepoOf(r)
	}
	return w
}

func (s *Sim) wCheckRunOf(r *repo, cr *checkRun) *wCheckRun {
	api := fmt.Sprintf("%s/repos/%s/check-runs/%d", s.api(), r.fullName(), cr.id)
	return &wCheckRun{
		ID: cr.id, NodeID: nodeID("CheckRun", cr.id), HeadSHA: cr.headSHA, ExternalID: cr.externalID,
		URL: api, HTMLURL: fmt.Sprintf("%s/%s/runs/%d", s.base, r.fullName(), cr.id),
		DetailsURL: cr.detailsURL, Status: cr.status, Conclusion: sp(cr.conclusion),
		StartedAt: tp(cr.started), CompletedAt: tp(cr.completed),
		Output: wCheckOutput{Title: sp(cr.title), Summary: sp(cr.summary), Text: sp(cr.text),
			AnnotationsCount: cr.annotations, AnnotationsURL: api + "/annotations"},
		Name: cr.name, CheckSuite: s.wCheckSuiteOf(r, cr.suite, false), App: s.wAppOf(cr.suite.app),
		PullRequests: s.prsForSHA(r, cr.headSHA),
	}
}

func (s *Sim) wStatusOf(r *repo, st *status, withCreator bool) *wStatus {
	w := &wStatus{
		URL:       s.api() + "/repos/" + r.fullName() + "/statuses/" + st.sha,
		AvatarURL: fmt.Sprintf("%s/avatars/u/%d?v=4", s.base, st.creator.id),
		ID:        st.id, NodeID: nodeID("StatusContext", st.id), State: st.state,
		Description: sp(st.description), TargetURL: sp(st.targetURL), Context: st.context,
		CreatedAt: ghTime(st.created), UpdatedAt: ghTime(st.updated),
	}
	if withCreator {
		w.Creator = s.wUserOf(st.creator)
	}
	return w
}

func (s *Sim) wHookOf(h *hook) *wHook {
	var api string
	if h.repo != nil {
		api = fmt.Sprintf("%s/repos/%s/hooks/%d", s.api(), h.repo.fullName(), h.id)
	} else {
		api = fmt.Sprintf("%s/app/hook/%d", s.api(), h.id)
	}
	cfg := wHookConfig{ContentType: "json", URL: h.url, InsecureSSL: "0"}
	if len(h.secret) > 0 {
		cfg.Secret = "********"
	}
	w := &wHook{
		Type: "Repository", ID: h.id, Name: "web", Active: true, Events: append([]string{}, h.events...),
		Config: cfg, UpdatedAt: ghTime(h.created), CreatedAt: ghTime(h.created),
		URL: api, TestURL: api + "/test", PingURL: api + "/pings", DeliveriesURL: api + "/deliveries",
		LastResponse: wHookLastResponse{Status: h.lastSt},
	}
	if h.lastRC != 0 {
		c := h.lastRC
		w.LastResponse.Code = &c
	}
	if h.app != nil {
		w.Type = "App"
	}
	return w
}

func (s *Sim) wEventOf(r *repo, e *issueEvent, withIssue bool) *wIssueEvent {
	w := &wIssueEvent{
		ID: e.id, NodeID: nodeID("Event", e.id),
		URL:   fmt.Sprintf("%s/repos/%s/issues/events/%d", s.api(), r.fullName(), e.id),
		Actor: s.wUserOf(e.actor), Event: e.event, CreatedAt: ghTime(e.created),
	}
	if e.commitID != "" {
		w.CommitID = sp(e.commitID)
		w.CommitURL = sp(s.api() + "/repos/" + r.fullName() + "/commits/" + e.commitID)
	}
	if e.label != nil {
		w.Label = &wEventLabel{Name: e.label.name, Color: e.label.color}
	}
	if e.ms != "" {
		w.Milestone = &struct {
			Title string `json:"title"`
		}{e.ms}
	}
	if e.actor.app != nil {
		w.PerformedViaGithubApp = s.wAppOf(e.actor.app)
	}
	if withIssue {
		w.Issue = s.wIssueOf(r, e.issue)
	}
	return w
}
