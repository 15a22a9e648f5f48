// Package webhook parses the bodies of GitHub webhook deliveries and of
// Gerrit events (as POSTed by Gerrit's webhooks plugin, or printed by
// `gerrit stream-events`) into pubsubtypes events, once, at the edge.
//
// Wire formats accepted:
//
//   - GitHub: the JSON body of a delivery whose event type is the
//     X-GitHub-Event header. Only the fields subscribers need are decoded
//     (repository, issue/pull request numbers, action, ref and head
//     commit, label, sender, installation); the rest stays in the raw
//     payload. The body must be a JSON object; repository.full_name, when
//     present, must be "owner/name".
//   - Gerrit: one JSON object with a "type" (every type of
//     cmd-stream-events: patchset-created, comment-added, change-merged,
//     change-abandoned, change-restored, change-deleted, ref-updated,
//     batch-ref-updated, hashtags-changed, topic-changed, vote-deleted,
//     reviewer-added, reviewer-deleted, wip-state-changed,
//     private-state-changed, project-created, project-head-updated,
//     dropped-output, …). "project" may be a string or {"name": …},
//     "changeKey" {"id": …} or {"key": …} (the webhooks plugin serialises
//     with plain Gson), and numbers may be JSON numbers or decimal strings
//     (old servers). Types this package does not know are accepted with
//     whatever common fields decode, because Gerrit adds types.
//
// Errors wrap ErrMalformed, which the HTTP edge maps to 400.
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// ErrMalformed marks a body that is not a well-formed event.
var ErrMalformed = errors.New("malformed event")

// Limits on decoded values. Bodies are bounded by the HTTP edge; these
// keep one event's summary small whatever the body holds.
const (
	maxNameLen   = 1024 // names, refs, URLs, hashes
	maxApprovals = 64
	maxRefs      = 1024
	maxHashtags  = 256
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// checkObject rejects bodies that do not start like a JSON object; the
// decoder that follows validates the rest (one pass, not two).
func checkObject(body []byte) error {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return malformed("body is not a JSON object")
	}
	return nil
}

// --- GitHub ---

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// ValidGitHubEventType reports whether s looks like an X-GitHub-Event
// value (lower case letters, digits and _ . -).
func ValidGitHubEventType(s string) bool { return eventTypeRE.MatchString(s) }

type ghAccount struct {
	Login string `json:"login"`
}

type ghRepository struct {
	Name     string    `json:"name"`
	FullName string    `json:"full_name"`
	Owner    ghAccount `json:"owner"`
}

type ghIssue struct {
	Number      int            `json:"number"`
	PullRequest jsontext.Value `json:"pull_request"`
}

type ghBranch struct {
	Ref string `json:"ref"`
	SHA string `json:"sha"`
}

type ghPull struct {
	Number int      `json:"number"`
	Head   ghBranch `json:"head"`
}

type ghCheck struct {
	HeadSHA      string `json:"head_sha"`
	HeadBranch   string `json:"head_branch"`
	PullRequests []struct {
		Number int `json:"number"`
	} `json:"pull_requests"`
	CheckSuite *struct {
		HeadBranch string `json:"head_branch"`
	} `json:"check_suite"`
}

type ghPayload struct {
	Action      string        `json:"action"`
	Number      int           `json:"number"`
	Repository  *ghRepository `json:"repository"`
	Issue       *ghIssue      `json:"issue"`
	PullRequest *ghPull       `json:"pull_request"`
	Ref         string        `json:"ref"`
	After       string        `json:"after"`
	SHA         string        `json:"sha"`
	CheckRun    *ghCheck      `json:"check_run"`
	CheckSuite  *ghCheck      `json:"check_suite"`
	Label       *struct {
		Name string `json:"name"`
	} `json:"label"`
	Sender       *ghAccount `json:"sender"`
	Installation *struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

// ParseGitHub decodes a GitHub delivery of the given X-GitHub-Event type.
// The returned event has Source, Type and GitHub set; the caller adds
// DeliveryID, Server and the journal's fields.
func ParseGitHub(eventType string, body []byte) (*pubsubtypes.Event, error) {
	if !ValidGitHubEventType(eventType) {
		return nil, malformed("bad X-GitHub-Event %q", eventType)
	}
	if err := checkObject(body); err != nil {
		return nil, fmt.Errorf("webhook: github %s: %w", eventType, err)
	}
	var p ghPayload
	// GitHub bodies are large (typically 10-30 KB, up to 25 MB) and come
	// in bursts, and only a few top-level fields are needed: the
	// encoding/json v2 prototype decodes and skips in one pass, about
	// twice as fast as encoding/json, which validates the whole body
	// before decoding it. Invalid UTF-8 and duplicate names are tolerated
	// as encoding/json does, so that no delivery is refused for them.
	if err := jsonv2.Unmarshal(body, &p, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, fmt.Errorf("webhook: github %s: %w", eventType, malformed("%v", err))
	}
	g := &pubsubtypes.GitHubEvent{Action: p.Action}
	if r := p.Repository; r != nil {
		owner, name, ok := strings.Cut(r.FullName, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("webhook: github %s: %w", eventType, malformed("repository.full_name %q is not owner/name", r.FullName))
		}
		g.RepoOwner, g.Repo = owner, name
	}
	if p.Issue != nil {
		g.IssueNumber = p.Issue.Number
		if isPresent(p.Issue.PullRequest) {
			// A comment on a pull request arrives as an issue comment.
			g.PullRequestNumber = p.Issue.Number
		}
	}
	if p.PullRequest != nil {
		g.PullRequestNumber = p.PullRequest.Number
		g.Ref = p.PullRequest.Head.Ref
		g.SHA = p.PullRequest.Head.SHA
	}
	for _, c := range []*ghCheck{p.CheckRun, p.CheckSuite} {
		if c == nil {
			continue
		}
		g.SHA = c.HeadSHA
		g.Ref = c.HeadBranch
		if g.Ref == "" && c.CheckSuite != nil {
			g.Ref = c.CheckSuite.HeadBranch
		}
		if len(c.PullRequests) > 0 {
			g.PullRequestNumber = c.PullRequests[0].Number
		}
		break
	}
	if eventType == "push" {
		g.Ref, g.SHA = p.Ref, p.After
	}
	if eventType == "status" {
		g.SHA = p.SHA
	}
	if g.PullRequestNumber == 0 && p.Number > 0 && strings.HasPrefix(eventType, "pull_request") {
		g.PullRequestNumber = p.Number
	}
	if p.Label != nil {
		g.Label = p.Label.Name
	}
	if p.Sender != nil {
		g.Sender = p.Sender.Login
	}
	if p.Installation != nil {
		g.InstallationID = p.Installation.ID
	}
	for _, s := range []string{g.Action, g.RepoOwner, g.Repo, g.Ref, g.SHA, g.Label, g.Sender} {
		if len(s) > maxNameLen {
			return nil, fmt.Errorf("webhook: github %s: %w", eventType, malformed("field longer than %d bytes", maxNameLen))
		}
	}
	return &pubsubtypes.Event{Source: pubsubtypes.SourceGitHub, Type: eventType, GitHub: g}, nil
}

func isPresent(raw jsontext.Value) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// --- Gerrit ---

// KnownGerritType reports whether typ is one of the event types of
// Gerrit's cmd-stream-events, which ParseGerrit decodes strictly; other
// types are accepted leniently.
func KnownGerritType(typ string) bool {
	switch typ {
	case "assignee-changed", "change-abandoned", "change-deleted", "change-merged",
		"change-restored", "comment-added", "dropped-output", "hashtags-changed",
		"patchset-created", "private-state-changed", "project-created",
		"project-head-updated", "ref-updated", "batch-ref-updated", "reviewer-added",
		"reviewer-deleted", "topic-changed", "vote-deleted", "wip-state-changed":
		return true
	}
	return false
}

// flexInt is a number that Gerrit writes as a JSON number or, on old
// servers, as a decimal string.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*n = 0
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s = strings.TrimSpace(str)
		if s == "" {
			*n = 0
			return nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %.40q", s)
	}
	*n = flexInt(v)
	return nil
}

// flexString is a string that some servers write as a number (approval
// values).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	v, err := stringOr(b, func(b []byte) (string, error) {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return "", fmt.Errorf("want string or number: %w", err)
		}
		return n.String(), nil
	})
	*s = flexString(v)
	return err
}

// gerritName is a project (or similar) written as "name" or {"name": …}.
type gerritName string

func (g *gerritName) UnmarshalJSON(b []byte) error {
	v, err := stringOr(b, func(b []byte) (string, error) {
		var o struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return "", fmt.Errorf("want string or {\"name\":…}: %w", err)
		}
		return o.Name, nil
	})
	*g = gerritName(v)
	return err
}

// gerritKey is a changeKey written as {"id": …}, {"key": …} or a string.
type gerritKey string

func (g *gerritKey) UnmarshalJSON(b []byte) error {
	v, err := stringOr(b, func(b []byte) (string, error) {
		var o struct {
			ID  string `json:"id"`
			Key string `json:"key"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return "", fmt.Errorf("want {\"id\":…} or {\"key\":…}: %w", err)
		}
		if o.Key != "" {
			return o.Key, nil
		}
		return o.ID, nil
	})
	*g = gerritKey(v)
	return err
}

// stringOr decodes the JSON value b, which Gerrit versions write either
// as a string or in another form that other decodes: null is "", a string
// is itself.
func stringOr(b []byte, other func([]byte) (string, error)) (string, error) {
	if string(b) == "null" {
		return "", nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	}
	return other(b)
}

type gerritAccount struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Username string `json:"username"`
}

func (a *gerritAccount) who() string {
	if a == nil {
		return ""
	}
	switch {
	case a.Username != "":
		return a.Username
	case a.Email != "":
		return a.Email
	}
	return a.Name
}

type gerritChange struct {
	Project gerritName `json:"project"`
	Branch  string     `json:"branch"`
	Topic   string     `json:"topic"`
	ID      string     `json:"id"`
	Number  flexInt    `json:"number"`
	URL     string     `json:"url"`
	Status  string     `json:"status"`
}

type gerritPatchSet struct {
	Number   flexInt `json:"number"`
	Revision string  `json:"revision"`
	Ref      string  `json:"ref"`
}

type gerritApproval struct {
	Type     string     `json:"type"`
	Value    flexString `json:"value"`
	OldValue flexString `json:"oldValue"`
}

type gerritRefUpdate struct {
	OldRev  string     `json:"oldRev"`
	NewRev  string     `json:"newRev"`
	RefName string     `json:"refName"`
	Project gerritName `json:"project"`
}

type gerritBody struct {
	Type           string            `json:"type"`
	EventCreatedOn flexInt           `json:"eventCreatedOn"`
	Project        gerritName        `json:"project"`
	ProjectName    string            `json:"projectName"`
	RefName        string            `json:"refName"`
	ChangeKey      gerritKey         `json:"changeKey"`
	Change         *gerritChange     `json:"change"`
	PatchSet       *gerritPatchSet   `json:"patchSet"`
	Approvals      []gerritApproval  `json:"approvals"`
	RefUpdate      *gerritRefUpdate  `json:"refUpdate"`
	RefUpdates     []gerritRefUpdate `json:"refUpdates"`
	NewRev         string            `json:"newRev"`
	Hashtags       []string          `json:"hashtags"`

	Author    *gerritAccount `json:"author"`
	Uploader  *gerritAccount `json:"uploader"`
	Submitter *gerritAccount `json:"submitter"`
	Abandoner *gerritAccount `json:"abandoner"`
	Restorer  *gerritAccount `json:"restorer"`
	Deleter   *gerritAccount `json:"deleter"`
	Remover   *gerritAccount `json:"remover"`
	Editor    *gerritAccount `json:"editor"`
	Changer   *gerritAccount `json:"changer"`
	Adder     *gerritAccount `json:"adder"`
}

var changeRefRE = regexp.MustCompile(`^refs/changes/\d\d/([1-9]\d{0,9})/([1-9]\d{0,9}|meta)$`)

// ParseGerrit decodes one Gerrit event. The returned event has Source,
// Type and Gerrit set.
func ParseGerrit(body []byte) (*pubsubtypes.Event, error) {
	if err := checkObject(body); err != nil {
		return nil, fmt.Errorf("webhook: gerrit: %w", err)
	}
	var head struct {
		Type json.RawMessage `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, fmt.Errorf("webhook: gerrit: %w", malformed("%v", err))
	}
	var typ string
	if err := json.Unmarshal(head.Type, &typ); err != nil || typ == "" {
		return nil, fmt.Errorf("webhook: gerrit: %w", malformed("missing or non-string \"type\""))
	}
	if !eventTypeRE.MatchString(typ) {
		return nil, fmt.Errorf("webhook: gerrit: %w", malformed("bad event type %.64q", typ))
	}
	ev := &pubsubtypes.Event{Source: pubsubtypes.SourceGerrit, Type: typ, Gerrit: &pubsubtypes.GerritEvent{}}
	var b gerritBody
	if err := json.Unmarshal(body, &b); err != nil {
		if KnownGerritType(typ) {
			return nil, fmt.Errorf("webhook: gerrit %s: %w", typ, malformed("%v", err))
		}
		// An unknown type whose fields differ from the known ones:
		// journal it with only its type; subscribers can read it raw.
		return ev, nil
	}
	if err := fillGerrit(ev.Gerrit, &b); err != nil {
		return nil, fmt.Errorf("webhook: gerrit %s: %w", typ, err)
	}
	return ev, nil
}

func fillGerrit(g *pubsubtypes.GerritEvent, b *gerritBody) error {
	g.Project = string(b.Project)
	if g.Project == "" {
		g.Project = b.ProjectName
	}
	g.RefName = b.RefName
	g.ChangeID = string(b.ChangeKey)
	if c := b.Change; c != nil {
		if g.Project == "" {
			g.Project = string(c.Project)
		}
		g.URL = c.URL
		g.Branch = c.Branch
		g.Topic = c.Topic
		g.Status = c.Status
		if c.ID != "" {
			g.ChangeID = c.ID
		}
		if c.Number < 0 || c.Number > 1<<31-1 {
			return malformed("change number %d out of range", c.Number)
		}
		g.ChangeNumber = int(c.Number)
	}
	if ps := b.PatchSet; ps != nil {
		if ps.Number < 0 || ps.Number > 1<<31-1 {
			return malformed("patch set number %d out of range", ps.Number)
		}
		g.PatchSet = int(ps.Number)
		g.CommitHash = ps.Revision
	}
	if len(b.Approvals) > maxApprovals {
		return malformed("more than %d approvals", maxApprovals)
	}
	for _, a := range b.Approvals {
		g.Approvals = append(g.Approvals, pubsubtypes.Approval{Type: a.Type, Value: string(a.Value), OldValue: string(a.OldValue)})
	}
	refs := b.RefUpdates
	if b.RefUpdate != nil {
		refs = append([]gerritRefUpdate{*b.RefUpdate}, refs...)
	}
	if len(refs) > maxRefs {
		return malformed("more than %d ref updates", maxRefs)
	}
	for _, r := range refs {
		g.RefUpdates = append(g.RefUpdates, pubsubtypes.RefUpdate{Project: string(r.Project), RefName: r.RefName, OldRev: r.OldRev, NewRev: r.NewRev})
	}
	if len(refs) == 1 {
		r := refs[0]
		if g.Project == "" {
			g.Project = string(r.Project)
		}
		if g.RefName == "" {
			g.RefName = r.RefName
		}
		if g.CommitHash == "" {
			g.CommitHash = r.NewRev
		}
		if m := changeRefRE.FindStringSubmatch(r.RefName); m != nil && g.ChangeNumber == 0 {
			g.ChangeNumber, _ = strconv.Atoi(m[1])
			if m[2] != "meta" {
				g.PatchSet, _ = strconv.Atoi(m[2])
			}
		}
	}
	if g.CommitHash == "" {
		g.CommitHash = b.NewRev
	}
	if len(b.Hashtags) > maxHashtags {
		return malformed("more than %d hashtags", maxHashtags)
	}
	g.Hashtags = b.Hashtags
	for _, a := range []*gerritAccount{b.Author, b.Uploader, b.Submitter, b.Abandoner, b.Restorer, b.Deleter, b.Remover, b.Editor, b.Changer, b.Adder} {
		if w := a.who(); w != "" {
			g.Actor = w
			break
		}
	}
	check := []string{g.URL, g.Project, g.CommitHash, g.Branch, g.RefName, g.ChangeID, g.Topic, g.Status, g.Actor}
	for _, a := range g.Approvals {
		check = append(check, a.Type, a.Value, a.OldValue)
	}
	for _, r := range g.RefUpdates {
		check = append(check, r.Project, r.RefName, r.OldRev, r.NewRev)
	}
	check = append(check, g.Hashtags...)
	for _, s := range check {
		if len(s) > maxNameLen {
			return malformed("field longer than %d bytes", maxNameLen)
		}
	}
	return nil
}
