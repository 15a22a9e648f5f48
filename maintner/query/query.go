package query

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/maintner"
)

var (
	// ErrNotFound means the repository, issue, project or change does not
	// exist in the corpus (HTTP 404).
	ErrNotFound = errors.New("query: not found")
	// ErrBadRequest means a filter or path is malformed (HTTP 400).
	ErrBadRequest = errors.New("query: bad request")
)

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// Limits of list pages.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// IssueFilter selects issues and pull requests.
type IssueFilter struct {
	// State is "open", "closed" or "" for all.
	State string
	// PR selects pull requests (true) or plain issues (false); nil for
	// both.
	PR *bool
	// Labels must all be on the issue.
	Labels []string
	// UpdatedSince keeps issues modified at or after it (zero: all).
	UpdatedSince time.Time
	// Limit bounds the page (default DefaultLimit); After skips numbers
	// up to and including it.
	Limit int
	After int64
}

// Values encodes f as URL query parameters.
func (f IssueFilter) Values() url.Values {
	v := url.Values{}
	if f.State != "" {
		v.Set("state", f.State)
	}
	if f.PR != nil {
		v.Set("pr", strconv.FormatBool(*f.PR))
	}
	for _, l := range f.Labels {
		v.Add("label", l)
	}
	if !f.UpdatedSince.IsZero() {
		v.Set("updated_since", f.UpdatedSince.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.After != 0 {
		v.Set("after", strconv.FormatInt(f.After, 10))
	}
	return v
}

// known lists the parameters each list accepts, so that a misspelt
// filter is an error rather than silently ignored.
var (
	issueParams  = []string{"state", "pr", "label", "updated_since", "limit", "after"}
	changeParams = []string{"project", "status", "branch", "hashtag", "vote", "owner", "updated_since", "limit", "after"}
)

func checkParams(v url.Values, known []string) error {
	for k := range v {
		if !slices.Contains(known, k) {
			return badf("unknown parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	return nil
}

// one returns the single value of a parameter, refusing repeats.
func one(v url.Values, key string) (string, error) {
	vs := v[key]
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", badf("parameter %q given %d times", key, len(vs))
}

func parsePaging(v url.Values) (limit int, after int64, err error) {
	if s, err := one(v, "limit"); err != nil {
		return 0, 0, err
	} else if s != "" {
		limit, err = strconv.Atoi(s)
		if err != nil || limit <= 0 || limit > MaxLimit {
			return 0, 0, badf("limit %q: want 1..%d", s, MaxLimit)
		}
	}
	if s, err := one(v, "after"); err != nil {
		return 0, 0, err
	} else if s != "" {
		after, err = strconv.ParseInt(s, 10, 64)
		if err != nil || after < 0 {
			return 0, 0, badf("after %q: want a non-negative number", s)
		}
	}
	return limit, after, nil
}

func parseSince(v url.Values) (time.Time, error) {
	s, err := one(v, "updated_since")
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badf("updated_since %q: want RFC 3339, e.g. 2024-05-01T00:00:00Z", s)
	}
	return t, nil
}

// ParseIssueFilter parses URL query parameters (see the package
// documentation). Errors wrap ErrBadRequest.
func ParseIssueFilter(v url.Values) (IssueFilter, error) {
	var f IssueFilter
	if err := checkParams(v, issueParams); err != nil {
		return f, err
	}
	state, err := one(v, "state")
	if err != nil {
		return f, err
	}
	switch state {
	case "", "all":
	case "open", "closed":
		f.State = state
	default:
		return f, badf("state %q: want open, closed or all", state)
	}
	if s, err := one(v, "pr"); err != nil {
		return f, err
	} else if s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, badf("pr %q: want true or false", s)
		}
		f.PR = &b
	}
	for _, l := range v["label"] {
		if l == "" {
			return f, badf("empty label")
		}
		f.Labels = append(f.Labels, l)
	}
	if f.UpdatedSince, err = parseSince(v); err != nil {
		return f, err
	}
	f.Limit, f.After, err = parsePaging(v)
	return f, err
}

// VoteFilter requires some account to vote Value on Label on the current
// patch set.
type VoteFilter struct {
	Label string
	Value int8
}

// String formats the filter as LABEL=VALUE (with + for positive values).
func (v VoteFilter) String() string {
	if v.Value > 0 {
		return fmt.Sprintf("%s=+%d", v.Label, v.Value)
	}
	return fmt.Sprintf("%s=%d", v.Label, v.Value)
}

// ParseVoteFilter parses "Run-TryBot=+1", "Run-TryBot=1" or
// "Code-Review=-2"; "label:" prefixes (Gerrit search syntax) are accepted.
func ParseVoteFilter(s string) (VoteFilter, error) {
	s = strings.TrimPrefix(s, "label:")
	label, val, ok := strings.Cut(s, "=")
	if !ok || label == "" {
		return VoteFilter{}, badf("vote %q: want LABEL=VALUE, e.g. Run-TryBot=+1", s)
	}
	for _, r := range label {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return VoteFilter{}, badf("vote %q: bad label name", s)
		}
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(val, "+"), 10, 8)
	if err != nil || strings.HasPrefix(val, "+-") || strings.HasPrefix(val, "++") {
		return VoteFilter{}, badf("vote %q: value %q is not a number between -128 and 127", s, val)
	}
	return VoteFilter{Label: label, Value: int8(n)}, nil
}

// ChangeFilter selects Gerrit changes.
type ChangeFilter struct {
	// Project is "server/project" (required).
	Project string
	// Status is "new", "merged", "abandoned", "open" (= new), "closed"
	// (merged or abandoned) or "" for all.
	Status       string
	Branch       string
	Hashtag      string
	Votes        []VoteFilter
	Owner        int32
	UpdatedSince time.Time
	Limit        int
	After        int64
}

// Values encodes f as URL query parameters.
func (f ChangeFilter) Values() url.Values {
	v := url.Values{}
	v.Set("project", f.Project)
	if f.Status != "" {
		v.Set("status", f.Status)
	}
	if f.Branch != "" {
		v.Set("branch", f.Branch)
	}
	if f.Hashtag != "" {
		v.Set("hashtag", f.Hashtag)
	}
	for _, vf := range f.Votes {
		v.Add("vote", vf.String())
	}
	if f.Owner != 0 {
		v.Set("owner", strconv.Itoa(int(f.Owner)))
	}
	if !f.UpdatedSince.IsZero() {
		v.Set("updated_since", f.UpdatedSince.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.After != 0 {
		v.Set("after", strconv.FormatInt(f.After, 10))
	}
	return v
}

// ParseChangeFilter parses URL query parameters (see the package
// documentation). Errors wrap ErrBadRequest.
func ParseChangeFilter(v url.Values) (ChangeFilter, error) {
	var f ChangeFilter
	if err := checkParams(v, changeParams); err != nil {
		return f, err
	}
	var err error
	if f.Project, err = one(v, "project"); err != nil {
		return f, err
	}
	if f.Project == "" {
		return f, badf("project is required (e.g. project=go.googlesource.com/go)")
	}
	status, err := one(v, "status")
	if err != nil {
		return f, err
	}
	switch status {
	case "", "all":
	case "new", "merged", "abandoned", "open", "closed":
		f.Status = status
	default:
		return f, badf("status %q: want new, merged, abandoned, open, closed or all", status)
	}
	if f.Branch, err = one(v, "branch"); err != nil {
		return f, err
	}
	if f.Hashtag, err = one(v, "hashtag"); err != nil {
		return f, err
	}
	for _, s := range v["vote"] {
		vf, err := ParseVoteFilter(s)
		if err != nil {
			return f, err
		}
		f.Votes = append(f.Votes, vf)
	}
	if s, err := one(v, "owner"); err != nil {
		return f, err
	} else if s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n <= 0 {
			return f, badf("owner %q: want an account number", s)
		}
		f.Owner = int32(n)
	}
	if f.UpdatedSince, err = parseSince(v); err != nil {
		return f, err
	}
	f.Limit, f.After, err = parsePaging(v)
	return f, err
}

func tp(t maintner.Time) *time.Time {
	if t == 0 {
		return nil
	}
	v := t.Time()
	return &v
}

func user(u *maintner.GitHubUser) *User {
	if u == nil {
		return nil
	}
	return &User{ID: u.ID, Login: u.Login}
}

// Stats returns the corpus statistics.
func Stats(c *maintner.Corpus) maintner.Stats { return c.Stats() }

func repoSummary(r *maintner.GitHubRepo) RepoSummary {
	s := RepoSummary{Owner: r.Owner, Name: r.Name, ID: r.ID, DefaultBranch: r.DefaultBranch}
	for _, is := range r.Issues() {
		if is.NotExist {
			continue
		}
		s.Issues++
		if !is.Closed {
			s.OpenIssues++
		}
		if is.PullRequest {
			s.PullRequests++
		}
	}
	return s
}

// Repos lists the GitHub repositories.
func Repos(c *maintner.Corpus) []RepoSummary {
	c.RLock()
	defer c.RUnlock()
	out := []RepoSummary{}
	for _, r := range c.GitHubRepos() {
		out = append(out, repoSummary(r))
	}
	return out
}

// GetRepo returns one GitHub repository.
func GetRepo(c *maintner.Corpus, owner, name string) (*Repo, error) {
	c.RLock()
	defer c.RUnlock()
	r := c.GitHubRepo(owner, name)
	if r == nil {
		return nil, fmt.Errorf("%w: github repo %s/%s", ErrNotFound, owner, name)
	}
	out := &Repo{RepoSummary: repoSummary(r), Labels: []Label{}, Milestones: []Milestone{}}
	for _, l := range r.Labels() {
		out.Labels = append(out.Labels, Label{ID: l.ID, Name: l.Name})
	}
	for _, m := range r.Milestones() {
		out.Milestones = append(out.Milestones, Milestone{ID: m.ID, Title: m.Title, Number: m.Number, Closed: m.Closed})
	}
	return out, nil
}

func issueSummary(is *maintner.GitHubIssue) IssueSummary {
	s := IssueSummary{
		Number: is.Number, ID: is.ID, Title: is.Title, State: is.State(), PullRequest: is.PullRequest,
		User: user(is.User), Labels: []string{}, Assignees: []string{}, Comments: len(is.Comments),
		Created: tp(is.Created), Updated: tp(is.LastModified()), Closed: tp(is.ClosedAt),
	}
	for _, l := range is.Labels {
		s.Labels = append(s.Labels, l.Name)
	}
	slices.Sort(s.Labels)
	if is.Milestone != nil {
		s.Milestone = is.Milestone.Title
	}
	for _, a := range is.Assignees {
		s.Assignees = append(s.Assignees, a.Login)
	}
	return s
}

func (f *IssueFilter) match(is *maintner.GitHubIssue) bool {
	if is.NotExist {
		return false
	}
	if f.State != "" && is.State() != f.State {
		return false
	}
	if f.PR != nil && is.PullRequest != *f.PR {
		return false
	}
	for _, l := range f.Labels {
		if !is.HasLabel(l) {
			return false
		}
	}
	if !f.UpdatedSince.IsZero() && is.LastModified() < maintner.TimeOf(f.UpdatedSince) {
		return false
	}
	return true
}

// Issues lists the issues of a repository that match f.
func Issues(c *maintner.Corpus, owner, name string, f IssueFilter) (Page[IssueSummary], error) {
	c.RLock()
	defer c.RUnlock()
	r := c.GitHubRepo(owner, name)
	if r == nil {
		return Page[IssueSummary]{}, fmt.Errorf("%w: github repo %s/%s", ErrNotFound, owner, name)
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	p := Page[IssueSummary]{Items: []IssueSummary{}}
	for _, is := range r.Issues() {
		if int64(is.Number) <= f.After || !f.match(is) {
			continue
		}
		if len(p.Items) == limit {
			p.Next = int64(p.Items[len(p.Items)-1].Number)
			break
		}
		p.Items = append(p.Items, issueSummary(is))
	}
	return p, nil
}

// GetIssue returns one issue or pull request.
func GetIssue(c *maintner.Corpus, owner, name string, number int32) (*Issue, error) {
	c.RLock()
	defer c.RUnlock()
	r := c.GitHubRepo(owner, name)
	if r == nil {
		return nil, fmt.Errorf("%w: github repo %s/%s", ErrNotFound, owner, name)
	}
	is := r.Issue(number)
	if is == nil || is.NotExist {
		return nil, fmt.Errorf("%w: issue %s/%s#%d", ErrNotFound, owner, name, number)
	}
	body, err := c.Text(is.Body)
	if err != nil {
		return nil, err
	}
	out := &Issue{IssueSummary: issueSummary(is), Body: body, Locked: is.Locked, ClosedBy: user(is.ClosedBy),
		Comment: []Comment{}, Events: []Event{}, Reviews: []Review{}, Statuses: []Status{}, CheckRuns: []CheckRun{}}
	for _, cm := range is.Comments {
		body, err := c.Text(cm.Body)
		if err != nil {
			return nil, err
		}
		out.Comment = append(out.Comment, Comment{ID: cm.ID, User: user(cm.User), Created: tp(cm.Created), Updated: tp(cm.Updated), Body: body})
	}
	for _, e := range is.Events {
		out.Events = append(out.Events, Event{ID: e.ID, Type: e.Type, Actor: user(e.Actor), Created: tp(e.Created), Subject: e.Subject, Previous: e.Previous, Other: user(e.Other)})
	}
	for _, rv := range is.Reviews {
		body, err := c.Text(rv.Body)
		if err != nil {
			return nil, err
		}
		out.Reviews = append(out.Reviews, Review{ID: rv.ID, Actor: user(rv.Actor), Created: tp(rv.Created), State: rv.State, Body: body, CommitID: rv.CommitID})
	}
	if pr := is.PR; pr != nil {
		out.PR = &PullRequest{HeadRef: pr.HeadRef, HeadRepo: pr.HeadRepo, BaseRef: pr.BaseRef, Merged: pr.Merged, Draft: pr.Draft, MergedAt: tp(pr.MergedAt)}
		if !pr.HeadSHA.IsZero() {
			out.PR.HeadSHA = pr.HeadSHA.String()
			for _, s := range r.Statuses(pr.HeadSHA) {
				out.Statuses = append(out.Statuses, Status{Context: s.Context, State: s.State, Description: s.Description, TargetURL: s.TargetURL, Updated: tp(s.Updated)})
			}
			for _, cr := range r.CheckRuns(pr.HeadSHA) {
				out.CheckRuns = append(out.CheckRuns, CheckRun{ID: cr.ID, Name: cr.Name, Status: cr.Status, Conclusion: cr.Conclusion, DetailsURL: cr.DetailsURL, Completed: tp(cr.Completed)})
			}
		}
		if !pr.BaseSHA.IsZero() {
			out.PR.BaseSHA = pr.BaseSHA.String()
		}
		if !pr.MergeCommitSHA.IsZero() {
			out.PR.MergeCommitSHA = pr.MergeCommitSHA.String()
		}
	}
	return out, nil
}

// Projects lists the Gerrit projects.
func Projects(c *maintner.Corpus) []Project {
	c.RLock()
	defer c.RUnlock()
	out := []Project{}
	for _, p := range c.GerritProjects() {
		pr := Project{Name: p.Name}
		for _, ch := range p.Changes() {
			pr.Changes++
			if ch.Status == "new" {
				pr.OpenChange++
			}
		}
		out = append(out, pr)
	}
	return out
}

func votes(vs []maintner.GerritVote) []Vote {
	out := make([]Vote, 0, len(vs))
	for _, v := range vs {
		out = append(out, Vote{Label: v.Label, Account: v.Account, Value: v.Value, Copied: v.Copied, Granted: tp(v.Granted)})
	}
	return out
}

func changeSummary(ch *maintner.GerritChange) ChangeSummary {
	return ChangeSummary{
		Project: ch.Project.Name, Number: ch.Number, ChangeID: ch.ChangeID, Branch: ch.Branch, Subject: ch.Subject,
		Status: ch.Status, Owner: ch.Owner, CurrentPatchSet: ch.CurrentPatchSet, Created: tp(ch.Created), Updated: tp(ch.Updated),
		Hashtags: append([]string{}, ch.Hashtags...), Topic: ch.Topic, Votes: votes(ch.VotesOn(ch.CurrentPatchSet)), Error: ch.Err,
	}
}

func (f *ChangeFilter) match(ch *maintner.GerritChange) bool {
	switch f.Status {
	case "":
	case "open":
		if ch.Status != "new" {
			return false
		}
	case "closed":
		if ch.Status != "merged" && ch.Status != "abandoned" {
			return false
		}
	default:
		if ch.Status != f.Status {
			return false
		}
	}
	if f.Branch != "" && ch.Branch != strings.TrimPrefix(f.Branch, "refs/heads/") {
		return false
	}
	if f.Hashtag != "" && !slices.Contains(ch.Hashtags, f.Hashtag) {
		return false
	}
	if f.Owner != 0 && ch.Owner != f.Owner {
		return false
	}
	for _, v := range f.Votes {
		if !ch.HasVote(v.Label, v.Value) {
			return false
		}
	}
	if !f.UpdatedSince.IsZero() && ch.Updated < maintner.TimeOf(f.UpdatedSince) {
		return false
	}
	return true
}

// Changes lists the Gerrit changes that match f.
func Changes(c *maintner.Corpus, f ChangeFilter) (Page[ChangeSummary], error) {
	c.RLock()
	defer c.RUnlock()
	p := c.GerritProject(f.Project)
	if p == nil {
		return Page[ChangeSummary]{}, fmt.Errorf("%w: gerrit project %s", ErrNotFound, f.Project)
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	out := Page[ChangeSummary]{Items: []ChangeSummary{}}
	for _, ch := range p.Changes() {
		if int64(ch.Number) <= f.After || !f.match(ch) {
			continue
		}
		if len(out.Items) == limit {
			out.Next = int64(out.Items[len(out.Items)-1].Number)
			break
		}
		out.Items = append(out.Items, changeSummary(ch))
	}
	return out, nil
}

func allVotes(ch *maintner.GerritChange) []PatchSetVotes {
	out := []PatchSetVotes{}
	for _, ps := range ch.PatchSets {
		out = append(out, PatchSetVotes{PatchSet: ps.Number, Current: ps.Number == ch.CurrentPatchSet, Votes: votes(ch.VotesOn(ps.Number))})
	}
	return out
}

func lookupChange(c *maintner.Corpus, project string, number int32) (*maintner.GerritChange, error) {
	p := c.GerritProject(project)
	if p == nil {
		return nil, fmt.Errorf("%w: gerrit project %s", ErrNotFound, project)
	}
	ch := p.Change(number)
	if ch == nil {
		return nil, fmt.Errorf("%w: change %d in %s", ErrNotFound, number, project)
	}
	return ch, nil
}

// GetChange returns one Gerrit change.
func GetChange(c *maintner.Corpus, project string, number int32) (*Change, error) {
	c.RLock()
	defer c.RUnlock()
	ch, err := lookupChange(c, project, number)
	if err != nil {
		return nil, err
	}
	out := &Change{ChangeSummary: changeSummary(ch), Private: ch.Private, WorkInProgress: ch.WorkInProgress, Meta: ch.Meta.String(),
		PatchSets: []PatchSet{}, Messages: []Message{}, AllVotes: allVotes(ch)}
	for _, ps := range ch.PatchSets {
		p := PatchSet{Number: ps.Number, Commit: ps.Commit.String(), Uploader: ps.Uploader, Created: tp(ps.Created)}
		if gc := ch.Project.Commit(ps.Commit); gc != nil {
			p.Subject = gc.Subject
		}
		out.PatchSets = append(out.PatchSets, p)
	}
	for _, m := range ch.Messages {
		out.Messages = append(out.Messages, Message{ID: m.Meta.String(), Author: m.Author, Time: tp(m.Time), PatchSet: m.PatchSet, Tag: m.Tag, Body: m.Body})
	}
	return out, nil
}

// Votes returns a change's votes per patch set.
func Votes(c *maintner.Corpus, project string, number int32) ([]PatchSetVotes, error) {
	c.RLock()
	defer c.RUnlock()
	ch, err := lookupChange(c, project, number)
	if err != nil {
		return nil, err
	}
	return allVotes(ch), nil
}
