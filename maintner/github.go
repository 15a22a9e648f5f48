package maintner

import (
	"slices"
	"sort"
)

// githubState is the GitHub half of the corpus.
type githubState struct {
	repos map[string]*GitHubRepo // "owner/repo"
	users map[int64]*GitHubUser
	key   []byte // scratch for repo keys
}

func (g *githubState) init() {
	g.repos = make(map[string]*GitHubRepo)
	g.users = make(map[int64]*GitHubUser)
}

// GitHubUser is a GitHub account. Users are shared: every reference to
// the same id is the same *GitHubUser.
type GitHubUser struct {
	ID    int64
	Login string
}

// GitHubLabel is a repository label.
type GitHubLabel struct {
	ID   int64
	Name string
}

// GitHubMilestone is a repository milestone.
type GitHubMilestone struct {
	ID     int64
	Title  string
	Number int32
	Closed bool
}

// GitHubRepo is a GitHub repository and everything tracked in it.
type GitHubRepo struct {
	Owner, Name   string
	ID            int64
	DefaultBranch string
	Private       bool

	issues     map[int32]*GitHubIssue
	labels     map[int64]*GitHubLabel
	milestones map[int64]*GitHubMilestone
	statuses   map[GitHash][]*GitHubStatus
	checkRuns  map[int64]*GitHubCheckRun
}

// FullName returns "owner/name".
func (r *GitHubRepo) FullName() string { return r.Owner + "/" + r.Name }

// Issue returns issue or pull request n, or nil.
func (r *GitHubRepo) Issue(n int32) *GitHubIssue { return r.issues[n] }

// Issues returns the repository's issues and pull requests sorted by
// number (including ones marked NotExist).
func (r *GitHubRepo) Issues() []*GitHubIssue {
	out := make([]*GitHubIssue, 0, len(r.issues))
	for _, is := range r.issues {
		out = append(out, is)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

// Labels returns the repository's labels sorted by name.
func (r *GitHubRepo) Labels() []*GitHubLabel {
	out := make([]*GitHubLabel, 0, len(r.labels))
	for _, l := range r.labels {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out
}

// Milestones returns the repository's milestones sorted by number.
func (r *GitHubRepo) Milestones() []*GitHubMilestone {
	out := make([]*GitHubMilestone, 0, len(r.milestones))
	for _, m := range r.milestones {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Number < out[j].Number || out[i].Number == out[j].Number && out[i].ID < out[j].ID
	})
	return out
}

// Statuses returns the commit statuses reported on sha, latest per
// context, sorted by context.
func (r *GitHubRepo) Statuses(sha GitHash) []*GitHubStatus { return r.statuses[sha] }

// CheckRuns returns the check runs on sha, sorted by name then id.
func (r *GitHubRepo) CheckRuns(sha GitHash) []*GitHubCheckRun {
	var out []*GitHubCheckRun
	for _, cr := range r.checkRuns {
		if cr.HeadSHA == sha {
			out = append(out, cr)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out
}

// GitHubIssue is an issue or a pull request (GitHub numbers them in one
// sequence). Comments, Events and Reviews are sorted by ID.
type GitHubIssue struct {
	Repo        *GitHubRepo
	Number      int32
	ID          int64
	NotExist    bool
	PullRequest bool
	Closed      bool
	Locked      bool
	User        *GitHubUser
	ClosedBy    *GitHubUser
	Title       string
	// Body is read with Corpus.Text.
	Body     Text
	Created  Time
	Updated  Time
	ClosedAt Time
	// Milestone is nil when the issue has none.
	Milestone *GitHubMilestone
	Labels    []*GitHubLabel
	Assignees []*GitHubUser
	Comments  []GitHubComment
	Events    []GitHubEvent
	Reviews   []GitHubReview
	// PR holds pull-request-only data (tryd's extension); nil for issues
	// and for pull requests the log has no such data for.
	PR *GitHubPullRequest
}

// State returns "open" or "closed".
func (is *GitHubIssue) State() string {
	if is.Closed {
		return "closed"
	}
	return "open"
}

// HasLabel reports whether the issue carries a label with that name.
func (is *GitHubIssue) HasLabel(name string) bool {
	for _, l := range is.Labels {
		if l.Name == name {
			return true
		}
	}
	return false
}

// LastModified returns the latest of the issue's update time and its
// comments', events' and reviews' times.
func (is *GitHubIssue) LastModified() Time {
	t := max(is.Updated, is.Created, is.ClosedAt)
	for i := range is.Comments {
		t = max(t, is.Comments[i].Updated, is.Comments[i].Created)
	}
	if n := len(is.Events); n > 0 {
		t = max(t, is.Events[n-1].Created)
	}
	if n := len(is.Reviews); n > 0 {
		t = max(t, is.Reviews[n-1].Created)
	}
	return t
}

// GitHubComment is a comment on an issue or pull request.
type GitHubComment struct {
	ID      int64
	User    *GitHubUser
	Created Time
	Updated Time
	// Body is read with Corpus.Text.
	Body Text
}

// GitHubEvent is an issue timeline event. Subject depends on Type: the
// label name (labeled, unlabeled), the milestone title (milestoned,
// demilestoned), the commit SHA (referenced, closed, merged) or the new
// title (renamed, whose old title is in Previous). Other is the assignee
// (assigned, unassigned) or the requested reviewer (review_requested).
type GitHubEvent struct {
	ID       int64
	Type     string
	Actor    *GitHubUser
	Created  Time
	Subject  string
	Previous string
	Other    *GitHubUser
}

// GitHubReview is a pull request review.
type GitHubReview struct {
	ID               int64
	Actor            *GitHubUser
	Created          Time
	State            string // COMMENTED, APPROVED, CHANGES_REQUESTED, DISMISSED
	Body             Text
	CommitID         string
	ActorAssociation string
}

// GitHubPullRequest is the pull-request half of an issue.
type GitHubPullRequest struct {
	HeadSHA        GitHash
	HeadRef        string
	HeadRepo       string
	BaseSHA        GitHash
	BaseRef        string
	Merged         bool
	Draft          bool
	MergeCommitSHA GitHash
	MergedAt       Time
}

// GitHubStatus is a commit status.
type GitHubStatus struct {
	SHA         GitHash
	Context     string
	State       string
	Description string
	TargetURL   string
	ID          int64
	Created     Time
	Updated     Time
	Creator     *GitHubUser
}

// GitHubCheckRun is a check run.
type GitHubCheckRun struct {
	ID         int64
	HeadSHA    GitHash
	Name       string
	Status     string
	Conclusion string
	DetailsURL string
	ExternalID string
	Started    Time
	Completed  Time
	AppID      int64
}

// GitHubRepos returns every repository sorted by full name. The caller
// holds RLock.
func (c *Corpus) GitHubRepos() []*GitHubRepo {
	out := make([]*GitHubRepo, 0, len(c.github.repos))
	for _, r := range c.github.repos {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out
}

// GitHubRepo returns the repository "owner/name", or nil. The caller
// holds RLock.
func (c *Corpus) GitHubRepo(owner, name string) *GitHubRepo {
	return c.github.repos[owner+"/"+name]
}

// validRepoPart reports whether an owner or repository name from a record
// is usable: non-empty, no slash, no control characters.
func validRepoPart(b []byte) bool {
	if len(b) == 0 || len(b) > 100 {
		return false
	}
	for _, ch := range b {
		if ch == '/' || ch < 0x20 || ch == 0x7f {
			return false
		}
	}
	return true
}

func (c *Corpus) repo(owner, name []byte) *GitHubRepo {
	if !validRepoPart(owner) || !validRepoPart(name) {
		return nil
	}
	// The key is built in a reused buffer: a map lookup with
	// string(bytes) as the key does not allocate, and every issue
	// record looks its repository up.
	key := append(append(append(c.github.key[:0], owner...), '/'), name...)
	c.github.key = key
	if r := c.github.repos[string(key)]; r != nil {
		return r
	}
	r := &GitHubRepo{Owner: c.str(owner), Name: c.str(name)}
	c.github.repos[string(key)] = r
	return r
}

func (c *Corpus) user(u *dUser) *GitHubUser {
	if u == nil || u.id == 0 {
		return nil
	}
	if gu := c.github.users[u.id]; gu != nil {
		if len(u.login) > 0 && string(u.login) != gu.Login {
			gu.Login = c.str(u.login)
		}
		return gu
	}
	gu := &GitHubUser{ID: u.id, Login: c.str(u.login)}
	c.github.users[u.id] = gu
	return gu
}

func (c *Corpus) userID(id int64) *GitHubUser {
	if id == 0 {
		return nil
	}
	return c.user(&dUser{id: id})
}

func (r *GitHubRepo) label(c *Corpus, l dLabel) *GitHubLabel {
	if l.id == 0 {
		return nil
	}
	if r.labels == nil {
		r.labels = make(map[int64]*GitHubLabel)
	}
	gl := r.labels[l.id]
	if gl == nil {
		gl = &GitHubLabel{ID: l.id}
		r.labels[l.id] = gl
	}
	if len(l.name) > 0 {
		gl.Name = c.str(l.name)
	}
	return gl
}

func (r *GitHubRepo) milestone(c *Corpus, m dMilestone) *GitHubMilestone {
	if m.id == 0 {
		return nil
	}
	if r.milestones == nil {
		r.milestones = make(map[int64]*GitHubMilestone)
	}
	gm := r.milestones[m.id]
	if gm == nil {
		gm = &GitHubMilestone{ID: m.id}
		r.milestones[m.id] = gm
	}
	if len(m.title) > 0 {
		gm.Title = c.str(m.title)
	}
	if m.number != 0 {
		gm.Number = int32(m.number)
	}
	if m.closedSet {
		gm.Closed = m.closed
	}
	return gm
}

func (c *Corpus) applyGithub(d *dGithub) {
	r := c.repo(d.owner, d.repo)
	if r == nil {
		c.log.Warnf("maintner: github mutation for bad repo %q/%q ignored", truncate(d.owner, 100), truncate(d.repo, 100))
		return
	}
	for _, l := range d.labels {
		r.label(c, l)
	}
	for _, m := range d.milestones {
		r.milestone(c, m)
	}
}

// applyIssue follows x/build's processGithubIssueMutation field by field,
// so that both corpora agree on every log.
func (c *Corpus) applyIssue(d *dIssue) {
	r := c.repo(d.owner, d.repo)
	if r == nil || d.number <= 0 {
		c.log.Warnf("maintner: issue mutation for bad repo or number %q/%q#%d ignored", truncate(d.owner, 100), truncate(d.repo, 100), d.number)
		return
	}
	if r.issues == nil {
		r.issues = make(map[int32]*GitHubIssue)
	}
	is := r.issues[d.number]
	if is == nil {
		is = &GitHubIssue{Repo: r, Number: d.number, ID: d.id}
		r.issues[d.number] = is
		if d.notExist {
			is.NotExist = true
			return
		}
		is.Created = d.created.t
	}
	is.NotExist = d.notExist
	if is.NotExist {
		return
	}
	if d.id != 0 {
		is.ID = d.id
	}
	if d.updated.set {
		is.Updated = d.updated.t
	}
	if d.closedAt.set {
		is.ClosedAt = d.closedAt.t
	}
	if d.user.set {
		is.User = c.user(&d.user)
	}
	if d.noMilestone {
		is.Milestone = nil
	} else if d.milestoneID != 0 {
		is.Milestone = r.milestone(c, dMilestone{id: d.milestoneID, title: d.milestoneTitle, number: d.milestoneNum})
	}
	if d.closedBy.set {
		is.ClosedBy = c.user(&d.closedBy)
	}
	if d.closedSet {
		is.Closed = d.closed
	}
	if d.lockedSet {
		is.Locked = d.locked
	}
	if d.pullRequest {
		is.PullRequest = true
	}
	for i := range d.assignees {
		a := &d.assignees[i]
		u := c.user(a)
		if u != nil && !slices.Contains(is.Assignees, u) {
			is.Assignees = append(is.Assignees, u)
		}
	}
	if len(d.deletedAssignees) > 0 {
		is.Assignees = slices.DeleteFunc(is.Assignees, func(u *GitHubUser) bool { return slices.Contains(d.deletedAssignees, u.ID) })
	}
	if len(d.body) > 0 {
		is.Body = c.textOf(d.body)
	}
	if d.bodyChangeSet {
		is.Body = c.textOf(d.bodyChange)
	}
	if len(d.title) > 0 {
		is.Title = c.text.copy(d.title)
	}
	if len(d.removeLabel) > 0 {
		is.Labels = slices.DeleteFunc(is.Labels, func(l *GitHubLabel) bool { return slices.Contains(d.removeLabel, l.ID) })
	}
	for _, l := range d.addLabel {
		gl := r.label(c, l)
		if gl != nil && !slices.Contains(is.Labels, gl) {
			is.Labels = append(is.Labels, gl)
		}
	}
	for i := range d.comments {
		c.applyComment(is, &d.comments[i])
	}
	for i := range d.events {
		c.applyEvent(is, &d.events[i])
	}
	for i := range d.reviews {
		c.applyReview(is, &d.reviews[i])
	}
}

// find returns the index of id in a slice sorted by ID (via key), and
// whether it is there; the common case, a new largest id, is O(1).
func find[T any](s []T, id int64, key func(*T) int64) (int, bool) {
	n := len(s)
	if n == 0 || key(&s[n-1]) < id {
		return n, false
	}
	i := sort.Search(n, func(i int) bool { return key(&s[i]) >= id })
	return i, i < n && key(&s[i]) == id
}

func commentID(c *GitHubComment) int64 { return c.ID }
func eventID(e *GitHubEvent) int64     { return e.ID }
func reviewID(r *GitHubReview) int64   { return r.ID }

func (c *Corpus) applyComment(is *GitHubIssue, d *dComment) {
	if d.id == 0 {
		return
	}
	i, ok := find(is.Comments, d.id, commentID)
	if !ok {
		is.Comments = slices.Insert(is.Comments, i, GitHubComment{ID: d.id})
	}
	gc := &is.Comments[i]
	if d.user.set {
		gc.User = c.user(&d.user)
	}
	if d.created.set {
		gc.Created = d.created.t
	}
	if d.updated.set {
		gc.Updated = d.updated.t
	}
	if len(d.body) > 0 {
		gc.Body = c.textOf(d.body)
	}
}

func (c *Corpus) applyEvent(is *GitHubIssue, d *dEvent) {
	if d.id == 0 {
		return
	}
	e := GitHubEvent{
		ID:      d.id,
		Type:    c.str(d.typ),
		Actor:   c.userID(d.actor),
		Created: d.created.t,
	}
	switch {
	case len(d.label) > 0:
		e.Subject = c.str(d.label)
	case len(d.milestone) > 0:
		e.Subject = c.str(d.milestone)
	case len(d.commit) > 0:
		e.Subject = c.str(d.commit)
	case len(d.renameTo) > 0:
		e.Subject = c.text.copy(d.renameTo)
		e.Previous = c.text.copy(d.renameFrom)
	}
	switch {
	case d.assignee != 0:
		e.Other = c.userID(d.assignee)
	case d.reviewer != 0:
		e.Other = c.userID(d.reviewer)
	}
	i, ok := find(is.Events, d.id, eventID)
	if ok {
		is.Events[i] = e
		return
	}
	is.Events = slices.Insert(is.Events, i, e)
}

func (c *Corpus) applyReview(is *GitHubIssue, d *dReview) {
	if d.id == 0 {
		return
	}
	rv := GitHubReview{
		ID:               d.id,
		Actor:            c.userID(d.actor),
		Created:          d.created.t,
		State:            c.str(d.state),
		Body:             c.textOf(d.body),
		CommitID:         c.str(d.commitID),
		ActorAssociation: c.str(d.association),
	}
	i, ok := find(is.Reviews, d.id, reviewID)
	if ok {
		is.Reviews[i] = rv
		return
	}
	is.Reviews = slices.Insert(is.Reviews, i, rv)
}

func hashOf(s string) GitHash {
	h, _ := ParseGitHash(s)
	return h
}

// hashBytes parses a hash from a record, the zero hash if it is not one.
func hashBytes(b []byte) GitHash {
	h, _ := parseGitHash(b)
	return h
}

func (c *Corpus) applyExt(x *dExt) {
	if rp := &x.repo; rp.set {
		if r := c.repo(rp.owner, rp.repo); r != nil {
			if rp.id != 0 {
				r.ID = rp.id
			}
			if len(rp.defaultBranch) > 0 {
				r.DefaultBranch = c.str(rp.defaultBranch)
			}
			r.Private = rp.private
		}
	}
	if x.pr.set {
		c.applyPR(&x.pr)
	}
	for i := range x.statuses {
		c.applyStatus(&x.statuses[i])
	}
	for i := range x.checkRuns {
		c.applyCheckRun(&x.checkRuns[i])
	}
}

func (c *Corpus) applyPR(p *dPR) {
	r := c.repo(p.owner, p.repo)
	if r == nil || p.number <= 0 {
		return
	}
	if r.issues == nil {
		r.issues = make(map[int32]*GitHubIssue)
	}
	is := r.issues[p.number]
	if is == nil {
		is = &GitHubIssue{Repo: r, Number: p.number}
		r.issues[p.number] = is
	}
	is.PullRequest = true
	if is.PR == nil {
		is.PR = &GitHubPullRequest{}
	}
	pr := is.PR
	if len(p.headSHA) > 0 {
		pr.HeadSHA = hashBytes(p.headSHA)
	}
	if len(p.headRef) > 0 {
		pr.HeadRef = c.str(p.headRef)
	}
	if len(p.headRepo) > 0 {
		pr.HeadRepo = c.str(p.headRepo)
	}
	if len(p.baseSHA) > 0 {
		pr.BaseSHA = hashBytes(p.baseSHA)
	}
	if len(p.baseRef) > 0 {
		pr.BaseRef = c.str(p.baseRef)
	}
	if len(p.mergeCommitSHA) > 0 {
		pr.MergeCommitSHA = hashBytes(p.mergeCommitSHA)
	}
	if p.merged.set {
		pr.Merged = p.merged.val
	}
	if p.draft.set {
		pr.Draft = p.draft.val
	}
	if p.mergedAt.set {
		pr.MergedAt = p.mergedAt.time()
	}
	if p.updated.set {
		is.Updated = max(is.Updated, p.updated.time())
	}
}

func (c *Corpus) applyStatus(s *dStatus) {
	r := c.repo(s.owner, s.repo)
	sha, err := parseGitHash(s.sha)
	if r == nil || err != nil || len(s.context) == 0 {
		return
	}
	st := &GitHubStatus{
		SHA:         sha,
		Context:     c.str(s.context),
		State:       c.str(s.state),
		Description: string(s.description),
		TargetURL:   string(s.targetURL),
		ID:          s.id,
		Creator:     c.userID(s.creatorID),
		Created:     s.created.time(),
		Updated:     s.updated.time(),
	}
	if r.statuses == nil {
		r.statuses = make(map[GitHash][]*GitHubStatus)
	}
	list := r.statuses[sha]
	i := sort.Search(len(list), func(i int) bool { return list[i].Context >= st.Context })
	if i < len(list) && list[i].Context == st.Context {
		list[i] = st
	} else {
		list = slices.Insert(list, i, st)
	}
	r.statuses[sha] = list
}

func (c *Corpus) applyCheckRun(p *dCheckRun) {
	r := c.repo(p.owner, p.repo)
	if r == nil || p.id == 0 {
		return
	}
	if r.checkRuns == nil {
		r.checkRuns = make(map[int64]*GitHubCheckRun)
	}
	cr := r.checkRuns[p.id]
	if cr == nil {
		cr = &GitHubCheckRun{ID: p.id}
		r.checkRuns[cr.ID] = cr
	}
	if len(p.headSHA) > 0 {
		cr.HeadSHA = hashBytes(p.headSHA)
	}
	set := func(dst *string, v []byte) {
		if len(v) > 0 {
			*dst = c.str(v)
		}
	}
	set(&cr.Name, p.name)
	set(&cr.Status, p.status)
	set(&cr.Conclusion, p.conclusion)
	if len(p.detailsURL) > 0 {
		cr.DetailsURL = string(p.detailsURL)
	}
	set(&cr.ExternalID, p.externalID)
	if p.started.set {
		cr.Started = p.started.time()
	}
	if p.completed.set {
		cr.Completed = p.completed.time()
	}
	if p.appID != 0 {
		cr.AppID = p.appID
	}
}
