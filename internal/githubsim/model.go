package githubsim

import (
	"time"
)

// This file holds the wire types: the JSON objects GitHub sends, with the
// field names, key sets and null-ness of the real payloads (checked against
// the recorded fixtures by the contract tests). Fields are not omitempty on
// purpose: GitHub sends null for absent values, and a missing key is a
// difference a client can see.

// ghTime formats as GitHub does: RFC 3339 in UTC with second precision.
type ghTime time.Time

func (t ghTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(time.RFC3339) + `"`), nil
}

// tp returns a nullable timestamp: nil for the zero time.
func tp(t time.Time) *ghTime {
	if t.IsZero() {
		return nil
	}
	g := ghTime(t)
	return &g
}

func sp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type wUser struct {
	Login             string `json:"login"`
	ID                int64  `json:"id"`
	NodeID            string `json:"node_id"`
	AvatarURL         string `json:"avatar_url"`
	GravatarID        string `json:"gravatar_id"`
	URL               string `json:"url"`
	HTMLURL           string `json:"html_url"`
	FollowersURL      string `json:"followers_url"`
	FollowingURL      string `json:"following_url"`
	GistsURL          string `json:"gists_url"`
	StarredURL        string `json:"starred_url"`
	SubscriptionsURL  string `json:"subscriptions_url"`
	OrganizationsURL  string `json:"organizations_url"`
	ReposURL          string `json:"repos_url"`
	EventsURL         string `json:"events_url"`
	ReceivedEventsURL string `json:"received_events_url"`
	Type              string `json:"type"`
	SiteAdmin         bool   `json:"site_admin"`
}

// wPushUser is a user as push events show the repository owner: the usual
// fields plus name and email.
type wPushUser struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	*wUser
}

type wGitUser struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Username string `json:"username"`
}

type wNameEmail struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

type wRepo struct {
	ID                       int64          `json:"id"`
	NodeID                   string         `json:"node_id"`
	Name                     string         `json:"name"`
	FullName                 string         `json:"full_name"`
	Private                  bool           `json:"private"`
	Owner                    *wUser         `json:"owner"`
	HTMLURL                  string         `json:"html_url"`
	Description              *string        `json:"description"`
	Fork                     bool           `json:"fork"`
	URL                      string         `json:"url"`
	ForksURL                 string         `json:"forks_url"`
	KeysURL                  string         `json:"keys_url"`
	CollaboratorsURL         string         `json:"collaborators_url"`
	TeamsURL                 string         `json:"teams_url"`
	HooksURL                 string         `json:"hooks_url"`
	IssueEventsURL           string         `json:"issue_events_url"`
	EventsURL                string         `json:"events_url"`
	AssigneesURL             string         `json:"assignees_url"`
	BranchesURL              string         `json:"branches_url"`
	TagsURL                  string         `json:"tags_url"`
	BlobsURL                 string         `json:"blobs_url"`
	GitTagsURL               string         `json:"git_tags_url"`
	GitRefsURL               string         `json:"git_refs_url"`
	TreesURL                 string         `json:"trees_url"`
	StatusesURL              string         `json:"statuses_url"`
	LanguagesURL             string         `json:"languages_url"`
	StargazersURL            string         `json:"stargazers_url"`
	ContributorsURL          string         `json:"contributors_url"`
	SubscribersURL           string         `json:"subscribers_url"`
	SubscriptionURL          string         `json:"subscription_url"`
	CommitsURL               string         `json:"commits_url"`
	GitCommitsURL            string         `json:"git_commits_url"`
	CommentsURL              string         `json:"comments_url"`
	IssueCommentURL          string         `json:"issue_comment_url"`
	ContentsURL              string         `json:"contents_url"`
	CompareURL               string         `json:"compare_url"`
	MergesURL                string         `json:"merges_url"`
	ArchiveURL               string         `json:"archive_url"`
	DownloadsURL             string         `json:"downloads_url"`
	IssuesURL                string         `json:"issues_url"`
	PullsURL                 string         `json:"pulls_url"`
	MilestonesURL            string         `json:"milestones_url"`
	NotificationsURL         string         `json:"notifications_url"`
	LabelsURL                string         `json:"labels_url"`
	ReleasesURL              string         `json:"releases_url"`
	DeploymentsURL           string         `json:"deployments_url"`
	CreatedAt                ghTime         `json:"created_at"`
	UpdatedAt                ghTime         `json:"updated_at"`
	PushedAt                 ghTime         `json:"pushed_at"`
	GitURL                   string         `json:"git_url"`
	SSHURL                   string         `json:"ssh_url"`
	CloneURL                 string         `json:"clone_url"`
	SVNURL                   string         `json:"svn_url"`
	Homepage                 *string        `json:"homepage"`
	Size                     int64          `json:"size"`
	StargazersCount          int64          `json:"stargazers_count"`
	WatchersCount            int64          `json:"watchers_count"`
	Language                 *string        `json:"language"`
	HasIssues                bool           `json:"has_issues"`
	HasProjects              bool           `json:"has_projects"`
	HasDownloads             bool           `json:"has_downloads"`
	HasWiki                  bool           `json:"has_wiki"`
	HasPages                 bool           `json:"has_pages"`
	ForksCount               int64          `json:"forks_count"`
	MirrorURL                *string        `json:"mirror_url"`
	Archived                 bool           `json:"archived"`
	Disabled                 bool           `json:"disabled"`
	OpenIssuesCount          int64          `json:"open_issues_count"`
	License                  *struct{}      `json:"license"`
	Forks                    int64          `json:"forks"`
	OpenIssues               int64          `json:"open_issues"`
	Watchers                 int64          `json:"watchers"`
	DefaultBranch            string         `json:"default_branch"`
	IsTemplate               bool           `json:"is_template"`
	Topics                   []string       `json:"topics"`
	Visibility               string         `json:"visibility"`
	WebCommitSignoffRequired bool           `json:"web_commit_signoff_required"`
	CustomProperties         map[string]any `json:"custom_properties"`
}

// wPushRepo is the repository as push events carry it: created_at and
// pushed_at are Unix seconds there (a long-standing GitHub quirk), the
// owner has name and email, and two legacy fields are added.
type wPushRepo struct {
	*wRepo
	Owner        *wPushUser `json:"owner"`
	CreatedAt    int64      `json:"created_at"`
	PushedAt     int64      `json:"pushed_at"`
	MasterBranch string     `json:"master_branch"`
	Stargazers   int64      `json:"stargazers"`
}

// wEnvelope holds the properties every webhook payload carries, last:
// the repository, the sender, and for a GitHub App's hook the
// installation. Embedded at the end of a payload, its fields keep that
// place in the JSON.
type wEnvelope struct {
	Repository *wRepo         `json:"repository"`
	Sender     *wUser         `json:"sender"`
	Inst       *wInstallation `json:"installation,omitempty"`
}

type wLabel struct {
	ID          int64   `json:"id"`
	NodeID      string  `json:"node_id"`
	URL         string  `json:"url"`
	Name        string  `json:"name"`
	Color       string  `json:"color"`
	Default     bool    `json:"default"`
	Description *string `json:"description"`
}

type wMilestone struct {
	URL          string  `json:"url"`
	HTMLURL      string  `json:"html_url"`
	LabelsURL    string  `json:"labels_url"`
	ID           int64   `json:"id"`
	NodeID       string  `json:"node_id"`
	Number       int     `json:"number"`
	Title        string  `json:"title"`
	Description  *string `json:"description"`
	Creator      *wUser  `json:"creator"`
	OpenIssues   int     `json:"open_issues"`
	ClosedIssues int     `json:"closed_issues"`
	State        string  `json:"state"`
	CreatedAt    ghTime  `json:"created_at"`
	UpdatedAt    ghTime  `json:"updated_at"`
	DueOn        *ghTime `json:"due_on"`
	ClosedAt     *ghTime `json:"closed_at"`
}

type wReactions struct {
	URL        string `json:"url"`
	TotalCount int    `json:"total_count"`
	PlusOne    int    `json:"+1"`
	MinusOne   int    `json:"-1"`
	Laugh      int    `json:"laugh"`
	Hooray     int    `json:"hooray"`
	Confused   int    `json:"confused"`
	Heart      int    `json:"heart"`
	Rocket     int    `json:"rocket"`
	Eyes       int    `json:"eyes"`
}

type wIssuePRLinks struct {
	URL      string  `json:"url"`
	HTMLURL  string  `json:"html_url"`
	DiffURL  string  `json:"diff_url"`
	PatchURL string  `json:"patch_url"`
	MergedAt *ghTime `json:"merged_at"`
}

type wIssue struct {
	URL               string         `json:"url"`
	RepositoryURL     string         `json:"repository_url"`
	LabelsURL         string         `json:"labels_url"`
	CommentsURL       string         `json:"comments_url"`
	EventsURL         string         `json:"events_url"`
	HTMLURL           string         `json:"html_url"`
	ID                int64          `json:"id"`
	NodeID            string         `json:"node_id"`
	Number            int            `json:"number"`
	Title             string         `json:"title"`
	User              *wUser         `json:"user"`
	Labels            []*wLabel      `json:"labels"`
	State             string         `json:"state"`
	Locked            bool           `json:"locked"`
	Assignee          *wUser         `json:"assignee"`
	Assignees         []*wUser       `json:"assignees"`
	Milestone         *wMilestone    `json:"milestone"`
	Comments          int            `json:"comments"`
	CreatedAt         ghTime         `json:"created_at"`
	UpdatedAt         ghTime         `json:"updated_at"`
	ClosedAt          *ghTime        `json:"closed_at"`
	AuthorAssociation string         `json:"author_association"`
	ActiveLockReason  *string        `json:"active_lock_reason"`
	PullRequest       *wIssuePRLinks `json:"pull_request,omitempty"` // present only on pull requests: how clients tell them apart
	Draft             *bool          `json:"draft,omitempty"`        // present only on pull requests
	Body              *string        `json:"body"`
	Reactions         wReactions     `json:"reactions"`
}

type wHref struct {
	Href string `json:"href"`
}

type wPRLinks struct {
	Self           wHref `json:"self"`
	HTML           wHref `json:"html"`
	Issue          wHref `json:"issue"`
	Comments       wHref `json:"comments"`
	ReviewComments wHref `json:"review_comments"`
	ReviewComment  wHref `json:"review_comment"`
	Commits        wHref `json:"commits"`
	Statuses       wHref `json:"statuses"`
}

type wPRBranch struct {
	Label string `json:"label"`
	Ref   string `json:"ref"`
	SHA   string `json:"sha"`
	User  *wUser `json:"user"`
	Repo  *wRepo `json:"repo"`
}

type wPull struct {
	URL                 string      `json:"url"`
	ID                  int64       `json:"id"`
	NodeID              string      `json:"node_id"`
	HTMLURL             string      `json:"html_url"`
	DiffURL             string      `json:"diff_url"`
	PatchURL            string      `json:"patch_url"`
	IssueURL            string      `json:"issue_url"`
	Number              int         `json:"number"`
	State               string      `json:"state"`
	Locked              bool        `json:"locked"`
	Title               string      `json:"title"`
	User                *wUser      `json:"user"`
	Body                *string     `json:"body"`
	CreatedAt           ghTime      `json:"created_at"`
	UpdatedAt           ghTime      `json:"updated_at"`
	ClosedAt            *ghTime     `json:"closed_at"`
	MergedAt            *ghTime     `json:"merged_at"`
	MergeCommitSHA      *string     `json:"merge_commit_sha"`
	Assignee            *wUser      `json:"assignee"`
	Assignees           []*wUser    `json:"assignees"`
	RequestedReviewers  []*wUser    `json:"requested_reviewers"`
	RequestedTeams      []any       `json:"requested_teams"`
	Labels              []*wLabel   `json:"labels"`
	Milestone           *wMilestone `json:"milestone"`
	CommitsURL          string      `json:"commits_url"`
	ReviewCommentsURL   string      `json:"review_comments_url"`
	ReviewCommentURL    string      `json:"review_comment_url"`
	CommentsURL         string      `json:"comments_url"`
	StatusesURL         string      `json:"statuses_url"`
	Head                wPRBranch   `json:"head"`
	Base                wPRBranch   `json:"base"`
	Links               wPRLinks    `json:"_links"`
	AuthorAssociation   string      `json:"author_association"`
	AutoMerge           *struct{}   `json:"auto_merge"`
	ActiveLockReason    *string     `json:"active_lock_reason"`
	Draft               bool        `json:"draft"`
	Merged              bool        `json:"merged"`
	Mergeable           *bool       `json:"mergeable"`
	Rebaseable          *bool       `json:"rebaseable"`
	MergeableState      string      `json:"mergeable_state"`
	MergedBy            *wUser      `json:"merged_by"`
	Comments            int         `json:"comments"`
	ReviewComments      int         `json:"review_comments"`
	MaintainerCanModify bool        `json:"maintainer_can_modify"`
	Commits             int         `json:"commits"`
	Additions           int         `json:"additions"`
	Deletions           int         `json:"deletions"`
	ChangedFiles        int         `json:"changed_files"`
}

type wComment struct {
	URL                   string     `json:"url"`
	HTMLURL               string     `json:"html_url"`
	IssueURL              string     `json:"issue_url"`
	ID                    int64      `json:"id"`
	NodeID                string     `json:"node_id"`
	User                  *wUser     `json:"user"`
	CreatedAt             ghTime     `json:"created_at"`
	UpdatedAt             ghTime     `json:"updated_at"`
	AuthorAssociation     string     `json:"author_association"`
	PerformedViaGithubApp *wApp      `json:"performed_via_github_app"`
	Body                  string     `json:"body"`
	Reactions             wReactions `json:"reactions"`
}

type wReview struct {
	ID                int64   `json:"id"`
	NodeID            string  `json:"node_id"`
	User              *wUser  `json:"user"`
	Body              string  `json:"body"`
	State             string  `json:"state"`
	HTMLURL           string  `json:"html_url"`
	PullRequestURL    string  `json:"pull_request_url"`
	AuthorAssociation string  `json:"author_association"`
	Links             any     `json:"_links"`
	SubmittedAt       *ghTime `json:"submitted_at"`
	CommitID          string  `json:"commit_id"`
}

type wApp struct {
	ID          int64             `json:"id"`
	Slug        string            `json:"slug"`
	NodeID      string            `json:"node_id"`
	Owner       *wUser            `json:"owner"`
	Name        string            `json:"name"`
	Description *string           `json:"description"`
	ExternalURL string            `json:"external_url"`
	HTMLURL     string            `json:"html_url"`
	CreatedAt   ghTime            `json:"created_at"`
	UpdatedAt   ghTime            `json:"updated_at"`
	Permissions map[string]string `json:"permissions"`
	Events      []string          `json:"events"`
}

type wRepoRef struct {
	ID   int64  `json:"id"`
	URL  string `json:"url"`
	Name string `json:"name"`
}

type wPRRefBranch struct {
	Ref  string   `json:"ref"`
	SHA  string   `json:"sha"`
	Repo wRepoRef `json:"repo"`
}

// wCheckPR is the minimal pull request object inside check runs/suites.
type wCheckPR struct {
	URL    string       `json:"url"`
	ID     int64        `json:"id"`
	Number int          `json:"number"`
	Head   wPRRefBranch `json:"head"`
	Base   wPRRefBranch `json:"base"`
}

type wCheckSuite struct {
	ID                   int64       `json:"id"`
	NodeID               string      `json:"node_id"`
	HeadBranch           *string     `json:"head_branch"`
	HeadSHA              string      `json:"head_sha"`
	Status               string      `json:"status"`
	Conclusion           *string     `json:"conclusion"`
	URL                  string      `json:"url"`
	Before               *string     `json:"before"`
	After                *string     `json:"after"`
	PullRequests         []*wCheckPR `json:"pull_requests"`
	App                  *wApp       `json:"app"`
	CreatedAt            ghTime      `json:"created_at"`
	UpdatedAt            ghTime      `json:"updated_at"`
	LatestCheckRunsCount *int        `json:"latest_check_runs_count,omitempty"` // REST only
	CheckRunsURL         string      `json:"check_runs_url,omitempty"`          // REST only
	Repository           *wRepo      `json:"repository,omitempty"`              // REST only
}

type wCheckOutput struct {
	Title            *string `json:"title"`
	Summary          *string `json:"summary"`
	Text             *string `json:"text"`
	AnnotationsCount int     `json:"annotations_count"`
	AnnotationsURL   string  `json:"annotations_url"`
}

type wCheckRun struct {
	ID           int64        `json:"id"`
	NodeID       string       `json:"node_id"`
	HeadSHA      string       `json:"head_sha"`
	ExternalID   string       `json:"external_id"`
	URL          string       `json:"url"`
	HTMLURL      string       `json:"html_url"`
	DetailsURL   string       `json:"details_url"`
	Status       string       `json:"status"`
	Conclusion   *string      `json:"conclusion"`
	StartedAt    *ghTime      `json:"started_at"`
	CompletedAt  *ghTime      `json:"completed_at"`
	Output       wCheckOutput `json:"output"`
	Name         string       `json:"name"`
	CheckSuite   *wCheckSuite `json:"check_suite"`
	App          *wApp        `json:"app"`
	PullRequests []*wCheckPR  `json:"pull_requests"`
}

type wStatus struct {
	URL         string  `json:"url"`
	AvatarURL   string  `json:"avatar_url"`
	ID          int64   `json:"id"`
	NodeID      string  `json:"node_id"`
	State       string  `json:"state"`
	Description *string `json:"description"`
	TargetURL   *string `json:"target_url"`
	Context     string  `json:"context"`
	CreatedAt   ghTime  `json:"created_at"`
	UpdatedAt   ghTime  `json:"updated_at"`
	Creator     *wUser  `json:"creator,omitempty"`
}

type wCombinedStatus struct {
	State      string     `json:"state"`
	Statuses   []*wStatus `json:"statuses"`
	SHA        string     `json:"sha"`
	TotalCount int        `json:"total_count"`
	Repository *wRepo     `json:"repository"`
	CommitURL  string     `json:"commit_url"`
	URL        string     `json:"url"`
}

type wEventLabel struct {
	Name  string `json:"name"`
	Color string `json:"color"`
}

type wIssueEvent struct {
	ID        int64        `json:"id"`
	NodeID    string       `json:"node_id"`
	URL       string       `json:"url"`
	Actor     *wUser       `json:"actor"`
	Event     string       `json:"event"`
	CommitID  *string      `json:"commit_id"`
	CommitURL *string      `json:"commit_url"`
	CreatedAt ghTime       `json:"created_at"`
	Label     *wEventLabel `json:"label,omitempty"`
	Milestone *struct {
		Title string `json:"title"`
	} `json:"milestone,omitempty"`
	PerformedViaGithubApp *wApp   `json:"performed_via_github_app"`
	Issue                 *wIssue `json:"issue,omitempty"` // only in the repository-wide list
}

type wHookConfig struct {
	ContentType string `json:"content_type"`
	URL         string `json:"url"`
	InsecureSSL string `json:"insecure_ssl"`
	Secret      string `json:"secret,omitempty"` // GitHub shows "********"
}

type wHookLastResponse struct {
	Code    *int    `json:"code"`
	Status  string  `json:"status"`
	Message *string `json:"message"`
}

type wHook struct {
	Type          string            `json:"type"`
	ID            int64             `json:"id"`
	Name          string            `json:"name"`
	Active        bool              `json:"active"`
	Events        []string          `json:"events"`
	Config        wHookConfig       `json:"config"`
	UpdatedAt     ghTime            `json:"updated_at"`
	CreatedAt     ghTime            `json:"created_at"`
	URL           string            `json:"url"`
	TestURL       string            `json:"test_url"`
	PingURL       string            `json:"ping_url"`
	DeliveriesURL string            `json:"deliveries_url"`
	LastResponse  wHookLastResponse `json:"last_response"`
}

type wPushCommit struct {
	ID        string   `json:"id"`
	TreeID    string   `json:"tree_id"`
	Distinct  bool     `json:"distinct"`
	Message   string   `json:"message"`
	Timestamp string   `json:"timestamp"`
	URL       string   `json:"url"`
	Author    wGitUser `json:"author"`
	Committer wGitUser `json:"committer"`
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Modified  []string `json:"modified"`
}

type wPermission struct {
	Permission string `json:"permission"`
	RoleName   string `json:"role_name"`
	User       *wUser `json:"user"`
}

type wHookDelivery struct {
	ID             int64   `json:"id"`
	GUID           string  `json:"guid"`
	DeliveredAt    ghTime  `json:"delivered_at"`
	Redelivery     bool    `json:"redelivery"`
	Duration       float64 `json:"duration"`
	Status         string  `json:"status"`
	StatusCode     int     `json:"status_code"`
	Event          string  `json:"event"`
	Action         *string `json:"action"`
	InstallationID *int64  `json:"installation_id"`
	RepositoryID   int64   `json:"repository_id"`
	URL            string  `json:"url,omitempty"`
	Request        *struct {
		Headers map[string]string `json:"headers"`
		Payload any               `json:"payload"`
	} `json:"request,omitempty"`
	Response *struct {
		Headers map[string]string `json:"headers"`
		Payload *string           `json:"payload"`
	} `json:"response,omitempty"`
}

type wSuiteCommit struct {
	ID        string     `json:"id"`
	TreeID    string     `json:"tree_id"`
	Message   string     `json:"message"`
	Timestamp string     `json:"timestamp"`
	Author    wNameEmail `json:"author"`
	Committer wNameEmail `json:"committer"`
}

// wCheckSuiteHook is a check suite as check_suite events carry it: the
// REST fields without the repository, plus the head commit.
type wCheckSuiteHook struct {
	*wCheckSuite
	LatestCheckRunsCount int           `json:"latest_check_runs_count"`
	CheckRunsURL         string        `json:"check_runs_url"`
	Repository           *struct{}     `json:"repository,omitempty"` // hides the embedded REST field
	HeadCommit           *wSuiteCommit `json:"head_commit"`
}

type wCheckSuiteEvent struct {
	Action     string           `json:"action"`
	CheckSuite *wCheckSuiteHook `json:"check_suite"`
	wEnvelope
}

type wGitActor struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Date  string `json:"date"`
}

type wStatusCommit struct {
	SHA    string `json:"sha"`
	NodeID string `json:"node_id"`
	Commit struct {
		Author       wGitActor `json:"author"`
		Committer    wGitActor `json:"committer"`
		Message      string    `json:"message"`
		Tree         wSHAURL   `json:"tree"`
		URL          string    `json:"url"`
		CommentCount int       `json:"comment_count"`
		Verification struct {
			Verified  bool    `json:"verified"`
			Reason    string  `json:"reason"`
			Signature *string `json:"signature"`
			Payload   *string `json:"payload"`
		} `json:"verification"`
	} `json:"commit"`
	URL         string    `json:"url"`
	HTMLURL     string    `json:"html_url"`
	CommentsURL string    `json:"comments_url"`
	Author      *wUser    `json:"author"`
	Committer   *wUser    `json:"committer"`
	Parents     []wParent `json:"parents"`
}

type wSHAURL struct {
	SHA string `json:"sha"`
	URL string `json:"url"`
}

type wParent struct {
	SHA     string `json:"sha"`
	URL     string `json:"url"`
	HTMLURL string `json:"html_url"`
}

type wBranch struct {
	Name      string  `json:"name"`
	Commit    wSHAURL `json:"commit"`
	Protected bool    `json:"protected"`
}

type wStatusEvent struct {
	ID          int64          `json:"id"`
	SHA         string         `json:"sha"`
	Name        string         `json:"name"`
	TargetURL   *string        `json:"target_url"`
	AvatarURL   string         `json:"avatar_url"`
	Context     string         `json:"context"`
	Description *string        `json:"description"`
	State       string         `json:"state"`
	Commit      *wStatusCommit `json:"commit"`
	Branches    []wBranch      `json:"branches"`
	CreatedAt   ghTime         `json:"created_at"`
	UpdatedAt   ghTime         `json:"updated_at"`
	wEnvelope
}
