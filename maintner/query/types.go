// Package query is the corpus query API: an HTTP/JSON handler over a
// maintner.Corpus, the same queries as Go functions (for in-process use),
// and a Go client.
//
// Wire format: GET requests, JSON responses. Lists are sorted by number
// and paged: {"items": [...], "next": N}; pass after=N for the next page
// (next is 0 on the last page). Errors are {"error": "..."} with 400 for
// a bad filter or path, 404 for an unknown repository, issue, project or
// change, 405 for other methods.
//
//	GET /api/stats
//	GET /api/github/repos
//	GET /api/github/repos/{owner}/{repo}                    repo, labels, milestones
//	GET /api/github/repos/{owner}/{repo}/issues?FILTER      issue summaries
//	GET /api/github/repos/{owner}/{repo}/issues/{n}         issue with comments, events, reviews, PR, statuses
//	GET /api/gerrit/projects
//	GET /api/gerrit/changes?project=P&FILTER                change summaries
//	GET /api/gerrit/changes/{n}?project=P                   change with patch sets, messages, votes
//	GET /api/gerrit/changes/{n}/votes?project=P             votes per patch set
//
// Issue filters: state=open|closed|all (default all), pr=true|false,
// label=NAME (repeatable; all must match), updated_since=RFC3339,
// limit=N (default 100, at most 10000), after=N. Change filters:
// status=new|merged|abandoned|open|closed|all, branch=B, hashtag=H,
// vote=LABEL=VALUE (repeatable, e.g. vote=Run-TryBot=+1: some account
// votes exactly VALUE on the current patch set), owner=ACCOUNT,
// updated_since, limit, after.
//
// Authentication: a server may wrap the handler with RequireToken, which
// requires "Authorization: Bearer TOKEN" on every request and answers 401
// {"error": ...} with a WWW-Authenticate header otherwise; the client
// sends the token given to Client.WithToken and maps 401 to
// ErrUnauthorized. (maintnerd requires it off loopback unless told the
// API is public; its /logs is never wrapped.)
package query

import (
	"time"
)

// Page is one page of a list.
type Page[T any] struct {
	Items []T `json:"items"`
	// Next is the after= value of the next page, 0 on the last page.
	Next int64 `json:"next"`
}

// User is a GitHub account.
type User struct {
	ID    int64  `json:"id"`
	Login string `json:"login,omitempty"`
}

// Label is a GitHub label.
type Label struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Milestone is a GitHub milestone.
type Milestone struct {
	ID     int64  `json:"id"`
	Title  string `json:"title"`
	Number int32  `json:"number"`
	Closed bool   `json:"closed"`
}

// RepoSummary describes a GitHub repository in lists.
type RepoSummary struct {
	Owner         string `json:"owner"`
	Name          string `json:"name"`
	ID            int64  `json:"id,omitempty"`
	DefaultBranch string `json:"default_branch,omitempty"`
	Issues        int    `json:"issues"`
	OpenIssues    int    `json:"open_issues"`
	PullRequests  int    `json:"pull_requests"`
}

// Repo is a GitHub repository with its labels and milestones.
type Repo struct {
	RepoSummary
	Labels     []Label     `json:"labels"`
	Milestones []Milestone `json:"milestones"`
}

// IssueSummary describes an issue or pull request in lists.
type IssueSummary struct {
	Number      int32      `json:"number"`
	ID          int64      `json:"id,omitempty"`
	Title       string     `json:"title"`
	State       string     `json:"state"`
	PullRequest bool       `json:"pull_request"`
	User        *User      `json:"user,omitempty"`
	Labels      []string   `json:"labels"`
	Milestone   string     `json:"milestone,omitempty"`
	Assignees   []string   `json:"assignees"`
	Comments    int        `json:"comments"`
	Created     *time.Time `json:"created,omitempty"`
	Updated     *time.Time `json:"updated,omitempty"`
	Closed      *time.Time `json:"closed_at,omitempty"`
}

// Issue is an issue or pull request with everything the corpus knows.
type Issue struct {
	IssueSummary
	Body      string       `json:"body"`
	Locked    bool         `json:"locked"`
	ClosedBy  *User        `json:"closed_by,omitempty"`
	Comment   []Comment    `json:"comment_list"`
	Events    []Event      `json:"events"`
	Reviews   []Review     `json:"reviews"`
	PR        *PullRequest `json:"pr,omitempty"`
	Statuses  []Status     `json:"statuses"`
	CheckRuns []CheckRun   `json:"check_runs"`
}

// Comment is an issue comment.
type Comment struct {
	ID      int64      `json:"id"`
	User    *User      `json:"user,omitempty"`
	Created *time.Time `json:"created,omitempty"`
	Updated *time.Time `json:"updated,omitempty"`
	Body    string     `json:"body"`
}

// Event is an issue event (see maintner.GitHubEvent for Subject).
type Event struct {
	ID       int64      `json:"id"`
	Type     string     `json:"type"`
	Actor    *User      `json:"actor,omitempty"`
	Created  *time.Time `json:"created,omitempty"`
	Subject  string     `json:"subject,omitempty"`
	Previous string     `json:"previous,omitempty"`
	Other    *User      `json:"other,omitempty"`
}

// Review is a pull request review.
type Review struct {
	ID       int64      `json:"id"`
	Actor    *User      `json:"actor,omitempty"`
	Created  *time.Time `json:"created,omitempty"`
	State    string     `json:"state"`
	Body     string     `json:"body"`
	CommitID string     `json:"commit_id,omitempty"`
}

// PullRequest is the pull-request half of an issue.
type PullRequest struct {
	HeadSHA        string     `json:"head_sha,omitempty"`
	HeadRef        string     `json:"head_ref,omitempty"`
	HeadRepo       string     `json:"head_repo,omitempty"`
	BaseSHA        string     `json:"base_sha,omitempty"`
	BaseRef        string     `json:"base_ref,omitempty"`
	Merged         bool       `json:"merged"`
	Draft          bool       `json:"draft"`
	MergeCommitSHA string     `json:"merge_commit_sha,omitempty"`
	MergedAt       *time.Time `json:"merged_at,omitempty"`
}

// Status is a commit status on a pull request's head.
type Status struct {
	Context     string     `json:"context"`
	State       string     `json:"state"`
	Description string     `json:"description,omitempty"`
	TargetURL   string     `json:"target_url,omitempty"`
	Updated     *time.Time `json:"updated,omitempty"`
}

// CheckRun is a check run on a pull request's head.
type CheckRun struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Conclusion string     `json:"conclusion,omitempty"`
	DetailsURL string     `json:"details_url,omitempty"`
	Completed  *time.Time `json:"completed,omitempty"`
}

// Project is a Gerrit project.
type Project struct {
	Name       string `json:"name"` // "server/project"
	Changes    int    `json:"changes"`
	OpenChange int    `json:"open_changes"`
}

// ChangeSummary describes a Gerrit change in lists.
type ChangeSummary struct {
	Project         string     `json:"project"`
	Number          int32      `json:"number"`
	ChangeID        string     `json:"change_id"`
	Branch          string     `json:"branch"`
	Subject         string     `json:"subject"`
	Status          string     `json:"status"`
	Owner           int32      `json:"owner"`
	CurrentPatchSet int32      `json:"current_patch_set"`
	Created         *time.Time `json:"created,omitempty"`
	Updated         *time.Time `json:"updated,omitempty"`
	Hashtags        []string   `json:"hashtags"`
	Topic           string     `json:"topic,omitempty"`
	// Votes are the current patch set's votes.
	Votes []Vote `json:"votes"`
	// Error says why the meta history could not be read, if it could
	// not.
	Error string `json:"error,omitempty"`
}

// Change is a Gerrit change with patch sets, messages and votes.
type Change struct {
	ChangeSummary
	Private        bool            `json:"private"`
	WorkInProgress bool            `json:"work_in_progress"`
	Meta           string          `json:"meta"`
	PatchSets      []PatchSet      `json:"patch_sets"`
	Messages       []Message       `json:"messages"`
	AllVotes       []PatchSetVotes `json:"all_votes"`
}

// PatchSet is a Gerrit patch set.
type PatchSet struct {
	Number   int32      `json:"number"`
	Commit   string     `json:"commit"`
	Uploader int32      `json:"uploader"`
	Created  *time.Time `json:"created,omitempty"`
	Subject  string     `json:"subject,omitempty"`
}

// Message is a change message; ID is its meta commit.
type Message struct {
	ID       string     `json:"id"`
	Author   int32      `json:"author"`
	Time     *time.Time `json:"time,omitempty"`
	PatchSet int32      `json:"patch_set"`
	Tag      string     `json:"tag,omitempty"`
	Body     string     `json:"body"`
}

// Vote is one account's vote on a label.
type Vote struct {
	Label   string     `json:"label"`
	Account int32      `json:"account"`
	Value   int8       `json:"value"`
	Copied  bool       `json:"copied,omitempty"`
	Granted *time.Time `json:"granted,omitempty"`
}

// PatchSetVotes are the votes on one patch set.
type PatchSetVotes struct {
	PatchSet int32  `json:"patch_set"`
	Current  bool   `json:"current"`
	Votes    []Vote `json:"votes"`
}

// ErrorBody is the JSON body of an error response.
type ErrorBody struct {
	Error string `json:"error"`
}
