// Package pubsubtypes holds the types pubsubhelper publishes to its
// subscribers, and their JSON wire format.
//
// The format is a superset of golang.org/x/build/cmd/pubsubhelper's
// pubsubtypes.Event: the fields Time, LongPollTimeout, Gerrit {URL,
// Project, CommitHash, ChangeNumber} and GitHub {Action, RepoOwner, Repo,
// IssueNumber, PullRequestNumber} have exactly x/build's names and
// encodings (Time is an RFC 3339 time in UTC with nanoseconds, null when
// zero), so x/build clients decode tryd's events unchanged. tryd adds
// fields those clients ignore: a sequence number and journal ID for exact
// resumption (Cursor), the source and event type, the configured server
// whose secret authenticated the delivery, more detail per source, and
// the raw payload when asked for (?raw=1).
//
// Filter is the set of subscriber filters and their URL query encoding,
// shared by the server and the Go client.
//
// This package imports only the standard library.
package pubsubtypes

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sources of events.
const (
	SourceGitHub = "github"
	SourceGerrit = "gerrit"
)

// Event is one event as published to subscribers: a GitHub webhook
// delivery or a Gerrit event, or (with LongPollTimeout) the answer to a
// long poll that saw no event.
type Event struct {
	// Time is when the event was received (strictly increasing within a
	// journal), or for a long-poll timeout the point up to which the
	// subscriber has seen everything. Clients send it back as ?after=.
	Time Time

	// LongPollTimeout says no event arrived in time; retry with the
	// cursor of this event (x/build: ?after=Time).
	LongPollTimeout bool `json:",omitempty"`

	// Gerrit is non-nil for Gerrit events.
	Gerrit *GerritEvent `json:",omitempty"`

	// GitHub is non-nil for GitHub events.
	GitHub *GitHubEvent `json:",omitempty"`

	// Seq numbers events within a journal, from 1, strictly increasing
	// (gaps are possible where a write failed). It is the exact resume
	// point: ?afterseq=Seq&journal=JournalID.
	Seq int64 `json:",omitempty"`
	// JournalID identifies the journal that numbered the event; a
	// subscriber whose cursor names another journal resumes by Time.
	JournalID string `json:",omitempty"`
	// Source is SourceGitHub or SourceGerrit.
	Source string `json:",omitempty"`
	// Type is the event type: GitHub's X-GitHub-Event ("pull_request",
	// "push", "ping", …) or Gerrit's "type" ("patchset-created", …).
	Type string `json:",omitempty"`
	// Server names the configured GitHub or Gerrit server whose secret
	// authenticated the delivery.
	Server string `json:",omitempty"`
	// DeliveryID is GitHub's X-GitHub-Delivery.
	DeliveryID string `json:",omitempty"`
	// Raw is the payload exactly as received, present only when the
	// subscriber asked for it (?raw=1).
	Raw json.RawMessage `json:",omitempty"`
}

// Cursor returns the point after this event, to resume a subscription.
func (e *Event) Cursor() Cursor {
	return Cursor{JournalID: e.JournalID, Seq: e.Seq, Time: e.Time}
}

// GerritEvent describes a Gerrit event. The first four fields are
// x/build's; the rest are tryd's.
type GerritEvent struct {
	// URL is the change's URL, e.g. "https://go-review.googlesource.com/39551".
	URL string
	// Project is the Gerrit project, e.g. "go".
	Project string
	// CommitHash is the patch set's commit, or the new value of an
	// updated ref.
	CommitHash string
	// ChangeNumber is the change's number, also derived from
	// refs/changes/NN/CL/… for ref updates.
	ChangeNumber int `json:",omitempty"`

	// Branch is the change's target branch (without refs/heads/).
	Branch string `json:",omitempty"`
	// RefName is the event's refName, or the updated ref.
	RefName string `json:",omitempty"`
	// ChangeID is the change's Change-Id ("I…").
	ChangeID string `json:",omitempty"`
	// PatchSet is the patch set number, when the event has one.
	PatchSet int `json:",omitempty"`
	// Topic is the change's topic.
	Topic string `json:",omitempty"`
	// Status is the change's status (NEW, MERGED, ABANDONED).
	Status string `json:",omitempty"`
	// Actor is the user name (else e-mail, else name) of the account that
	// caused the event: comment author, uploader, submitter, …
	Actor string `json:",omitempty"`
	// Approvals are the votes carried by comment-added and vote-deleted.
	Approvals []Approval `json:",omitempty"`
	// RefUpdates are the refs changed by ref-updated and
	// batch-ref-updated.
	RefUpdates []RefUpdate `json:",omitempty"`
	// Hashtags are the change's hashtags after hashtags-changed.
	Hashtags []string `json:",omitempty"`
	// Origin is the server's canonical web URL from the webhooks plugin's
	// X-Origin-Url header.
	Origin string `json:",omitempty"`
}

// Approval is one vote: label, new value and previous value, as Gerrit
// writes them ("2", "-1", "+1").
type Approval struct {
	Type     string
	Value    string
	OldValue string `json:",omitempty"`
}

// RefUpdate is one updated ref. An all-zero OldRev means created, an
// all-zero NewRev deleted.
type RefUpdate struct {
	Project string `json:",omitempty"`
	RefName string
	OldRev  string
	NewRev  string
}

// GitHubEvent describes a GitHub webhook delivery. The first five fields
// are x/build's; the rest are tryd's.
type GitHubEvent struct {
	Action    string
	RepoOwner string // "golang"
	Repo      string // "go"
	// IssueNumber is issue.number (also set for comments on pull
	// requests, which GitHub models as issues).
	IssueNumber int `json:",omitempty"`
	// PullRequestNumber is the pull request's number: pull_request.number,
	// the issue number of a comment on a pull request, or the first pull
	// request of a check run or suite.
	PullRequestNumber int `json:",omitempty"`

	// Ref is the pushed ref (push) or the pull request's head ref.
	Ref string `json:",omitempty"`
	// SHA is the commit the event is about: the pushed head, a pull
	// request's head, a check's head_sha, a status's sha.
	SHA string `json:",omitempty"`
	// Label is the label added or removed (labeled, unlabeled).
	Label string `json:",omitempty"`
	// Sender is the login of the user who caused the event.
	Sender string `json:",omitempty"`
	// InstallationID is set for deliveries to a GitHub App.
	InstallationID int64 `json:",omitempty"`
}

// Time is a time.Time encoded in JSON as an RFC 3339 time in UTC with
// nanoseconds, and null when zero: the encoding of go4.org/types.Time3339,
// which x/build's pubsubtypes uses.
type Time time.Time

// T returns t as a time.Time.
func (t Time) T() time.Time { return time.Time(t) }

// String formats t as x/build does.
func (t Time) String() string { return time.Time(t).UTC().Format(time.RFC3339Nano) }

// MarshalJSON encodes t as a string, or null when zero.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.T().IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.String() + `"`), nil
}

// UnmarshalJSON decodes an RFC 3339 string, "" or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("pubsubtypes: time must be a string: %w", err)
	}
	if s == "" {
		*t = Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("pubsubtypes: %w", err)
	}
	*t = Time(v)
	return nil
}

// Cursor is a subscriber's position: everything up to and including it
// has been seen. The zero Cursor means "from now on".
type Cursor struct {
	// JournalID and Seq resume exactly within one journal.
	JournalID string
	Seq       int64
	// Time resumes by receipt time, x/build's way, when the journal
	// changed or Seq is unknown.
	Time Time
}

// IsZero reports whether c is the zero cursor.
func (c Cursor) IsZero() bool { return c.Seq == 0 && c.T().IsZero() && c.JournalID == "" }

// T returns the cursor's time.
func (c Cursor) T() time.Time { return c.Time.T() }

// Values encodes c as query parameters: after, afterseq, journal.
func (c Cursor) Values(v url.Values) {
	if !c.T().IsZero() {
		v.Set("after", c.Time.String())
	}
	if c.Seq > 0 {
		v.Set("afterseq", strconv.FormatInt(c.Seq, 10))
	}
	if c.JournalID != "" {
		v.Set("journal", c.JournalID)
	}
}

// ParseCursor decodes the query parameters written by Cursor.Values.
func ParseCursor(v url.Values) (Cursor, error) {
	var c Cursor
	if s := v.Get("after"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Cursor{}, fmt.Errorf("%w: 'after' parameter is not in time.RFC3339Nano format", ErrBadQuery)
		}
		c.Time = Time(t)
	}
	if s := v.Get("afterseq"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return Cursor{}, fmt.Errorf("%w: 'afterseq' must be a non-negative integer", ErrBadQuery)
		}
		c.Seq = n
	}
	c.JournalID = v.Get("journal")
	if len(c.JournalID) > 64 {
		return Cursor{}, fmt.Errorf("%w: 'journal' too long", ErrBadQuery)
	}
	return c, nil
}

// ErrBadQuery marks a malformed subscription query (HTTP 400).
var ErrBadQuery = errors.New("bad query")

// Filter selects events. Every set field must match; the zero Filter
// matches everything.
type Filter struct {
	// Source is SourceGitHub or SourceGerrit.
	Source string
	// Types lists accepted event types (any of them).
	Types []string
	// Repo is a GitHub repository "owner/name" (case-insensitive, as
	// GitHub's names are).
	Repo string
	// Project is a Gerrit project.
	Project string
	// Branch is a Gerrit change's branch or a ref's short name.
	Branch string
	// Topic is a Gerrit change's topic.
	Topic string
	// Server is the configured server name.
	Server string
}

// Match reports whether e passes the filter.
func (f Filter) Match(e *Event) bool {
	if f.Source != "" && e.Source != f.Source {
		return false
	}
	if f.Server != "" && e.Server != f.Server {
		return false
	}
	if len(f.Types) > 0 {
		ok := false
		for _, t := range f.Types {
			if t == e.Type {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if f.Repo != "" {
		if e.GitHub == nil || !strings.EqualFold(e.GitHub.RepoOwner+"/"+e.GitHub.Repo, f.Repo) {
			return false
		}
	}
	if f.Project != "" || f.Branch != "" || f.Topic != "" {
		g := e.Gerrit
		if g == nil {
			return false
		}
		if f.Project != "" && g.Project != f.Project {
			return false
		}
		if f.Topic != "" && g.Topic != f.Topic {
			return false
		}
		if f.Branch != "" && g.Branch != f.Branch && strings.TrimPrefix(g.RefName, "refs/heads/") != f.Branch {
			return false
		}
	}
	return true
}

// Values encodes f as query parameters (source, type, repo, project,
// branch, topic, server; type may repeat).
func (f Filter) Values(v url.Values) {
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("source", f.Source)
	set("repo", f.Repo)
	set("project", f.Project)
	set("branch", f.Branch)
	set("topic", f.Topic)
	set("server", f.Server)
	for _, t := range f.Types {
		v.Add("type", t)
	}
}

// maxFilterLen bounds each filter parameter.
const maxFilterLen = 256

// ParseFilter decodes the query parameters written by Filter.Values.
// A type parameter may also list several types separated by commas.
func ParseFilter(v url.Values) (Filter, error) {
	f := Filter{
		Source:  v.Get("source"),
		Repo:    v.Get("repo"),
		Project: v.Get("project"),
		Branch:  v.Get("branch"),
		Topic:   v.Get("topic"),
		Server:  v.Get("server"),
	}
	switch f.Source {
	case "", SourceGitHub, SourceGerrit:
	default:
		return Filter{}, fmt.Errorf("%w: unknown source %q (want github or gerrit)", ErrBadQuery, f.Source)
	}
	for _, s := range []string{f.Repo, f.Project, f.Branch, f.Topic, f.Server} {
		if len(s) > maxFilterLen {
			return Filter{}, fmt.Errorf("%w: filter value longer than %d bytes", ErrBadQuery, maxFilterLen)
		}
	}
	if f.Repo != "" {
		if o, r, ok := strings.Cut(f.Repo, "/"); !ok || o == "" || r == "" || strings.Contains(r, "/") {
			return Filter{}, fmt.Errorf("%w: repo must be owner/name, got %q", ErrBadQuery, f.Repo)
		}
	}
	for _, t := range v["type"] {
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				if len(s) > maxFilterLen || len(f.Types) >= 64 {
					return Filter{}, fmt.Errorf("%w: too many or too long types", ErrBadQuery)
				}
				f.Types = append(f.Types, s)
			}
		}
	}
	return f, nil
}
