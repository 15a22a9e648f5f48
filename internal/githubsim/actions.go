package githubsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrForbidden: the acting user lacks the permission the action needs on
// GitHub (e.g. labelling needs write).
var ErrForbidden = errors.New("githubsim: forbidden")

type wPREvent struct {
	Action      string  `json:"action"`
	Number      int     `json:"number"`
	Before      string  `json:"before,omitempty"` // synchronize only
	After       string  `json:"after,omitempty"`  // synchronize only
	PullRequest *wPull  `json:"pull_request"`
	Label       *wLabel `json:"label,omitempty"` // labeled/unlabeled only
	wEnvelope
}

type wIssuesEvent struct {
	Action string  `json:"action"`
	Issue  *wIssue `json:"issue"`
	Label  *wLabel `json:"label,omitempty"`
	wEnvelope
}

type wIssueCommentEvent struct {
	Action  string    `json:"action"`
	Issue   *wIssue   `json:"issue"`
	Comment *wComment `json:"comment"`
	wEnvelope
}

type wPushEvent struct {
	Ref        string         `json:"ref"`
	Before     string         `json:"before"`
	After      string         `json:"after"`
	Repository *wPushRepo     `json:"repository"`
	Pusher     wNameEmail     `json:"pusher"`
	Sender     *wUser         `json:"sender"`
	Inst       *wInstallation `json:"installation,omitempty"`
	Created    bool           `json:"created"`
	Deleted    bool           `json:"deleted"`
	Forced     bool           `json:"forced"`
	BaseRef    *string        `json:"base_ref"`
	Compare    string         `json:"compare"`
	Commits    []*wPushCommit `json:"commits"`
	HeadCommit *wPushCommit   `json:"head_commit"`
}

type wCheckRunEvent struct {
	Action   string     `json:"action"`
	CheckRun *wCheckRun `json:"check_run"`
	wEnvelope
}

// actorLocked looks up the repository and the acting user.
func (s *Sim) actorLocked(fullName, login string) (*repo, *user, error) {
	r, err := s.repoLocked(fullName)
	if err != nil {
		return nil, nil, err
	}
	if login == "" {
		// Acting as the owner, which may be an organization (pushes
		// by "the repository" in tests that do not care who pushed).
		return r, s.users[r.owner], nil
	}
	u, err := s.knownUserLocked(login)
	if err != nil {
		return nil, nil, err
	}
	return r, u, nil
}

func (s *Sim) issueLocked(r *repo, number int) (*issue, error) {
	if number < 1 || number > len(r.issues) {
		return nil, fmt.Errorf("%w: issue #%d in %s", ErrNotFound, number, r.fullName())
	}
	return r.issues[number-1], nil
}

func (s *Sim) prLocked(r *repo, number int) (*issue, error) {
	is, err := s.issueLocked(r, number)
	if err != nil {
		return nil, err
	}
	if is.pr == nil {
		return nil, fmt.Errorf("%w: pull request #%d in %s (it is an issue)", ErrNotFound, number, r.fullName())
	}
	return is, nil
}

func (s *Sim) addEventLocked(r *repo, is *issue, actor *user, event string, l *label, commit string) {
	r.events = append(r.events, &issueEvent{id: s.newID(), issue: is, actor: actor, event: event, label: l, commitID: commit, created: s.opts.Now()})
}

// Push commits files to branch (creating it from nothing if it does not
// exist) as the repository owner and returns the new commit's SHA. It
// sends a push event, and pull_request synchronize for open pull requests
// whose head is branch.
func (s *Sim) Push(ctx context.Context, fullName, branch string, files map[string]string) (string, error) {
	return s.PushCommit(ctx, fullName, branch, "", Commit{Files: files, Message: "Update " + branch})
}

// PushCommit is Push with full control: a base to start a new branch from
// ("" means an orphan commit), deletions, a message and an author.
func (s *Sim) PushCommit(ctx context.Context, fullName, branch, from string, c Commit) (string, error) {
	sha, ds, err := s.push(ctx, fullName, branch, from, c)
	if err != nil {
		return "", fmt.Errorf("githubsim: push to %s %s: %w", fullName, branch, err)
	}
	return sha, s.send(ctx, ds)
}

func (s *Sim) push(ctx context.Context, fullName, branch, from string, c Commit) (string, []*delivery, error) {
	if err := checkBranch(branch); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s.mu.Lock()
	r, author, err := s.actorLocked(fullName, c.Author)
	s.mu.Unlock()
	if err != nil {
		return "", nil, err
	}
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	ref := "refs/heads/" + branch
	old, err := resolve(ctx, s.gitPath, r.dir, ref)
	if err != nil {
		return "", nil, err
	}
	var parents []string
	switch {
	case old != "":
		parents = []string{old}
	case from != "":
		p, err := resolve(ctx, s.gitPath, r.dir, "refs/heads/"+from)
		if err != nil {
			return "", nil, err
		}
		if p == "" {
			return "", nil, fmt.Errorf("%w: base branch %q does not exist", ErrNotFound, from)
		}
		parents = []string{p}
	}
	sha, err := writeCommit(ctx, s.gitPath, r.dir, parents, c, s.ident(author.login))
	if err != nil {
		return "", nil, err
	}
	if err := updateRef(ctx, s.gitPath, r.dir, ref, sha, old); err != nil {
		return "", nil, err
	}
	ds, err := s.afterRefUpdate(ctx, r, author, branch, old, sha)
	return sha, ds, err
}

// afterRefUpdate runs with r.gitMu held once branch moved from old to
// sha. For open pull requests whose head is branch it moves
// refs/pull/N/head (and sends synchronize); for those whose head or base
// is branch it recomputes refs/pull/N/merge, mergeability and the diff
// stats, as GitHub does. It queues the push event too.
func (s *Sim) afterRefUpdate(ctx context.Context, r *repo, pusher *user, branch, old, sha string) ([]*delivery, error) {
	type prUpd struct {
		is                      *issue
		sync                    bool
		head, base              string
		commits, adds, dels, nf int
		mergeable               bool
	}
	var upd []*prUpd
	s.mu.Lock()
	for _, is := range r.issues {
		if is.pr == nil || is.state != "open" {
			continue
		}
		if is.pr.headRef == branch || is.pr.baseRef == branch {
			upd = append(upd, &prUpd{is: is, sync: is.pr.headRef == branch, head: is.pr.headSHA})
		}
	}
	s.mu.Unlock()
	for _, u := range upd {
		is := u.is
		if u.sync {
			if err := updateRef(ctx, s.gitPath, r.dir, fmt.Sprintf("refs/pull/%d/head", is.number), sha, is.pr.headSHA); err != nil {
				return nil, err
			}
			u.head = sha
		}
		base, err := resolve(ctx, s.gitPath, r.dir, "refs/heads/"+is.pr.baseRef)
		if err != nil {
			return nil, err
		}
		if base == "" {
			base = is.pr.baseSHA
		}
		u.base = base
		if u.commits, u.adds, u.dels, u.nf, err = diffStats(ctx, s.gitPath, r.dir, base, u.head); err != nil {
			return nil, err
		}
		if u.mergeable, err = s.updateMergeRef(ctx, r, is.number, base, u.head); err != nil {
			return nil, err
		}
	}
	commits, err := commitsBetween(ctx, s.gitPath, r.dir, branch, old, sha)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	r.pushed = now
	ds := s.emitLocked(r, "push", "", nil, false, func(inst *wInstallation) any {
		return s.pushPayloadLocked(r, pusher, branch, old, sha, commits, inst)
	})
	if len(commits) > 0 && commits[len(commits)-1].sha == sha {
		before := old
		if before == "" {
			before = zeroSHA
		}
		ds = append(ds, s.requestSuitesLocked(r, pusher, branch, before, commits[len(commits)-1])...)
	}
	for _, u := range upd {
		is := u.is
		before := is.pr.headSHA
		is.pr.headSHA, is.pr.baseSHA, is.pr.mergeable = u.head, u.base, u.mergeable
		is.pr.commits, is.pr.adds, is.pr.dels, is.pr.nf = u.commits, u.adds, u.dels, u.nf
		if !u.sync {
			continue
		}
		is.updated = now
		ds = append(ds, s.emitLocked(r, "pull_request", "synchronize", nil, false, func(inst *wInstallation) any {
			return &wPREvent{Action: "synchronize", Number: is.number, Before: before, After: sha,
				PullRequest: s.wPullOf(r, is), wEnvelope: s.envelope(r, pusher, inst)}
		})...)
	}
	return ds, nil
}

// updateMergeRef points refs/pull/N/merge at a test merge of head into
// base, as GitHub keeps it, or deletes it when they conflict. It reports
// whether the pull request is mergeable. Call with r.gitMu held.
func (s *Sim) updateMergeRef(ctx context.Context, r *repo, number int, base, head string) (bool, error) {
	ref := fmt.Sprintf("refs/pull/%d/merge", number)
	id := gitIdent{name: "GitHub", email: "noreply@github.com", when: s.opts.Now()}
	sha, err := mergeCommit(ctx, s.gitPath, r.dir, base, head, fmt.Sprintf("Merge %s into %s", head, base), id)
	if errors.Is(err, errConflict) {
		if exists, rerr := resolve(ctx, s.gitPath, r.dir, ref); rerr == nil && exists != "" {
			return false, setRef(ctx, s.gitPath, r.dir, ref, "")
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, setRef(ctx, s.gitPath, r.dir, ref, sha)
}

func (s *Sim) pushPayloadLocked(r *repo, pusher *user, branch, old, sha string, commits []gitCommitInfo, inst *wInstallation) *wPushEvent {
	web := s.base + "/" + r.fullName()
	created := old == ""
	if created {
		old = zeroSHA
	}
	p := &wPushEvent{
		Ref: "refs/heads/" + branch, Before: old, After: sha, Repository: s.wPushRepoOf(r),
		Pusher: wNameEmail{Name: pusher.login, Email: s.ident(pusher.login).email},
		Sender: s.wUserOf(pusher), Inst: inst, Created: created,
		Commits: []*wPushCommit{},
	}
	if created {
		p.Compare = web + "/commit/" + sha[:12]
	} else {
		p.Compare = web + "/compare/" + old[:12] + "..." + sha[:12]
	}
	for _, c := range commits {
		gu := wGitUser{Name: c.name, Email: c.email, Username: strings.TrimSuffix(c.email, "@users.noreply.github.com")}
		wc := &wPushCommit{ID: c.sha, TreeID: c.tree, Distinct: true, Message: c.message,
			Timestamp: c.when.Format("2006-01-02T15:04:05Z07:00"), URL: web + "/commit/" + c.sha,
			Author: gu, Committer: gu, Added: c.added, Removed: c.removed, Modified: c.changed}
		p.Commits = append(p.Commits, wc)
		if c.sha == sha {
			p.HeadCommit = wc
		}
	}
	return p
}

// PROptions describes a pull request to open.
type PROptions struct {
	// Head is the branch with the changes (in the same repository).
	Head string
	// Files, if not nil, are first committed to Head by the author (the
	// branch is created from Base if needed).
	Files map[string]string
	// Base is the branch to merge into (default: the default branch).
	Base string
	// Title (required) and Body of the pull request.
	Title, Body string
	// Draft opens a draft pull request.
	Draft bool
}

// OpenPR opens a pull request by author and returns its number. It sends
// a push event for the head branch (when Files are committed) and
// pull_request opened.
func (s *Sim) OpenPR(ctx context.Context, fullName, author string, o PROptions) (int, error) {
	n, err := s.openPR(ctx, fullName, author, o)
	if err != nil {
		return 0, fmt.Errorf("githubsim: open pull request in %s: %w", fullName, err)
	}
	return n, nil
}

func (s *Sim) openPR(ctx context.Context, fullName, author string, o PROptions) (int, error) {
	if o.Title == "" {
		return 0, fmt.Errorf("%w: empty title", ErrInvalid)
	}
	if err := checkBranch(o.Head); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, author)
	if err == nil && o.Base == "" {
		o.Base = r.defaultBranch
	}
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if o.Files != nil {
		_, ds, err := s.push(ctx, fullName, o.Head, o.Base, Commit{Files: o.Files, Message: o.Title, Author: u.login})
		if err != nil {
			return 0, err
		}
		if err := s.send(ctx, ds); err != nil {
			return 0, err
		}
	}
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	head, err := resolve(ctx, s.gitPath, r.dir, "refs/heads/"+o.Head)
	if err != nil {
		return 0, err
	}
	base, err := resolve(ctx, s.gitPath, r.dir, "refs/heads/"+o.Base)
	if err != nil {
		return 0, err
	}
	if head == "" || base == "" {
		return 0, fmt.Errorf("%w: head %q or base %q branch does not exist", ErrInvalid, o.Head, o.Base)
	}
	commits, adds, dels, nf, err := diffStats(ctx, s.gitPath, r.dir, base, head)
	if err != nil {
		return 0, err
	}
	if commits == 0 {
		return 0, fmt.Errorf("%w: no commits between %s and %s", ErrInvalid, o.Base, o.Head)
	}
	s.mu.Lock()
	number := len(r.issues) + 1
	s.mu.Unlock()
	if err := updateRef(ctx, s.gitPath, r.dir, fmt.Sprintf("refs/pull/%d/head", number), head, ""); err != nil {
		return 0, err
	}
	mergeable, err := s.updateMergeRef(ctx, r, number, base, head)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	now := s.opts.Now()
	is := &issue{id: s.newID(), number: number, title: o.Title, body: o.Body, author: u, state: "open", created: now, updated: now,
		pr: &pull{id: s.newID(), headRef: o.Head, baseRef: o.Base, headSHA: head, baseSHA: base, draft: o.Draft, mergeable: mergeable,
			commits: commits, adds: adds, dels: dels, nf: nf}}
	r.issues = append(r.issues, is)
	ds := s.emitLocked(r, "pull_request", "opened", nil, false, func(inst *wInstallation) any {
		return &wPREvent{Action: "opened", Number: number, PullRequest: s.wPullOf(r, is), wEnvelope: s.envelope(r, u, inst)}
	})
	s.mu.Unlock()
	return number, s.send(ctx, ds)
}

// PushToPR commits files to the head branch of pull request number as its
// author and returns the new head SHA (push and pull_request synchronize
// events follow).
func (s *Sim) PushToPR(ctx context.Context, fullName string, number int, files map[string]string) (string, error) {
	s.mu.Lock()
	r, err := s.repoLocked(fullName)
	var is *issue
	if err == nil {
		is, err = s.prLocked(r, number)
	}
	var head, author string
	if err == nil {
		head, author = is.pr.headRef, is.author.login
		if is.state != "open" {
			err = fmt.Errorf("%w: pull request #%d is closed", ErrInvalid, number)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("githubsim: push to pull request %s#%d: %w", fullName, number, err)
	}
	return s.PushCommit(ctx, fullName, head, "", Commit{Files: files, Message: "Update pull request", Author: author})
}

// OpenIssue opens an issue by author and returns its number (issues
// opened follows).
func (s *Sim) OpenIssue(ctx context.Context, fullName, author, title, body string) (int, error) {
	if title == "" {
		return 0, fmt.Errorf("githubsim: open issue in %s: %w: empty title", fullName, ErrInvalid)
	}
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, author)
	s.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("githubsim: open issue: %w", err)
	}
	// Issues and pull requests share numbers; OpenPR reserves its number
	// under gitMu, so take it here too.
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	s.mu.Lock()
	now := s.opts.Now()
	is := &issue{id: s.newID(), number: len(r.issues) + 1, title: title, body: body, author: u, state: "open", created: now, updated: now}
	r.issues = append(r.issues, is)
	ds := s.emitLocked(r, "issues", "opened", nil, false, func(inst *wInstallation) any {
		return &wIssuesEvent{Action: "opened", Issue: s.wIssueOf(r, is), wEnvelope: s.envelope(r, u, inst)}
	})
	s.mu.Unlock()
	return is.number, s.send(ctx, ds)
}

// issueEventLocked queues the webhook for an action on an issue or pull
// request: pull_request <action> for pull requests, issues <action> for
// issues.
func (s *Sim) issueEventLocked(r *repo, is *issue, actor *user, action string, l *label) []*delivery {
	if is.pr != nil {
		return s.emitLocked(r, "pull_request", action, nil, false, func(inst *wInstallation) any {
			p := &wPREvent{Action: action, Number: is.number, PullRequest: s.wPullOf(r, is), wEnvelope: s.envelope(r, actor, inst)}
			if l != nil {
				p.Label = s.wLabelOf(r, l)
			}
			return p
		})
	}
	return s.emitLocked(r, "issues", action, nil, false, func(inst *wInstallation) any {
		p := &wIssuesEvent{Action: action, Issue: s.wIssueOf(r, is), wEnvelope: s.envelope(r, actor, inst)}
		if l != nil {
			p.Label = s.wLabelOf(r, l)
		}
		return p
	})
}

// labelLocked returns the repository label with this name (compared
// case-insensitively, as GitHub), creating it if create is set (as
// GitHub's add-labels endpoint does) or returning nil.
func (s *Sim) labelLocked(r *repo, name string, create bool) *label {
	for _, l := range r.labels {
		if strings.EqualFold(l.name, name) {
			return l
		}
	}
	if !create {
		return nil
	}
	l := &label{id: s.newID(), name: name, color: "ededed"}
	r.labels = append(r.labels, l)
	return l
}

// CreateLabel adds a label to the repository's label set.
func (s *Sim) CreateLabel(fullName, name, color, description string) error {
	if name == "" || len(name) > 50 {
		return fmt.Errorf("githubsim: create label in %s: %w: name %q", fullName, ErrInvalid, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(fullName)
	if err != nil {
		return fmt.Errorf("githubsim: create label: %w", err)
	}
	if s.labelLocked(r, name, false) != nil {
		return fmt.Errorf("githubsim: create label %q in %s: %w: exists", name, fullName, ErrInvalid)
	}
	if color == "" {
		color = "ededed"
	}
	r.labels = append(r.labels, &label{id: s.newID(), name: name, color: strings.TrimPrefix(color, "#"), descr: description})
	return nil
}

// addLabelsLocked adds labels by name to an issue, recording events and
// queueing webhooks for those not already present.
func (s *Sim) addLabelsLocked(r *repo, is *issue, u *user, names []string) []*delivery {
	var ds []*delivery
	for _, name := range names {
		l := s.labelLocked(r, name, true)
		has := false
		for _, x := range is.labels {
			has = has || x == l
		}
		if has {
			continue
		}
		is.labels = append(is.labels, l)
		is.updated = s.opts.Now()
		s.addEventLocked(r, is, u, "labeled", l, "")
		ds = append(ds, s.issueEventLocked(r, is, u, "labeled", l)...)
	}
	return ds
}

func (s *Sim) removeLabelLocked(r *repo, is *issue, u *user, name string) ([]*delivery, bool) {
	for i, l := range is.labels {
		if strings.EqualFold(l.name, name) {
			is.labels = append(is.labels[:i:i], is.labels[i+1:]...)
			is.updated = s.opts.Now()
			s.addEventLocked(r, is, u, "unlabeled", l, "")
			return s.issueEventLocked(r, is, u, "unlabeled", l), true
		}
	}
	return nil, false
}

// AddLabel labels issue or pull request number as login (who needs write
// permission, as on GitHub), creating the label if the repository lacks
// it. Adding a label already present does nothing.
func (s *Sim) AddLabel(ctx context.Context, fullName string, number int, login, name string) error {
	if name == "" {
		return fmt.Errorf("githubsim: add label to %s#%d: %w: empty name", fullName, number, ErrInvalid)
	}
	s.mu.Lock()
	r, u, is, err := s.writeTargetLocked(fullName, number, login)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: add label to %s#%d: %w", fullName, number, err)
	}
	ds := s.addLabelsLocked(r, is, u, []string{name})
	s.mu.Unlock()
	return s.send(ctx, ds)
}

// RemoveLabel removes a label from issue or pull request number as login.
func (s *Sim) RemoveLabel(ctx context.Context, fullName string, number int, login, name string) error {
	s.mu.Lock()
	r, u, is, err := s.writeTargetLocked(fullName, number, login)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: remove label from %s#%d: %w", fullName, number, err)
	}
	ds, ok := s.removeLabelLocked(r, is, u, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("githubsim: remove label %q from %s#%d: %w", name, fullName, number, ErrNotFound)
	}
	return s.send(ctx, ds)
}

// writeTargetLocked resolves an issue and an actor who must have write
// permission.
func (s *Sim) writeTargetLocked(fullName string, number int, login string) (*repo, *user, *issue, error) {
	r, u, err := s.actorLocked(fullName, login)
	if err != nil {
		return nil, nil, nil, err
	}
	if !s.permLocked(r, u).canWrite() {
		return nil, nil, nil, fmt.Errorf("%w: %s has %s permission, needs write", ErrForbidden, u.login, s.permLocked(r, u))
	}
	is, err := s.issueLocked(r, number)
	return r, u, is, err
}

// Comment adds a comment by login to issue or pull request number and
// returns the comment's ID (issue_comment created follows). Anyone may
// comment on a public repository.
func (s *Sim) Comment(ctx context.Context, fullName string, number int, login, body string) (int64, error) {
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, login)
	var is *issue
	if err == nil {
		is, err = s.issueLocked(r, number)
	}
	if err == nil && strings.TrimSpace(body) == "" {
		err = fmt.Errorf("%w: empty body", ErrInvalid)
	}
	if err != nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("githubsim: comment on %s#%d: %w", fullName, number, err)
	}
	c, ds := s.commentLocked(r, is, u, body)
	s.mu.Unlock()
	return c.id, s.send(ctx, ds)
}

func (s *Sim) commentLocked(r *repo, is *issue, u *user, body string) (*comment, []*delivery) {
	now := s.opts.Now()
	c := &comment{id: s.newID(), issue: is, author: u, body: body, created: now, updated: now}
	r.comments = append(r.comments, c)
	is.comments++
	is.updated = now
	ds := s.emitLocked(r, "issue_comment", "created", nil, false, func(inst *wInstallation) any {
		return &wIssueCommentEvent{Action: "created", Issue: s.wIssueOf(r, is), Comment: s.wCommentOf(r, c), wEnvelope: s.envelope(r, u, inst)}
	})
	return c, ds
}

// CloseIssue closes an issue or pull request (without merging) as login,
// who must be its author or have write permission.
func (s *Sim) CloseIssue(ctx context.Context, fullName string, number int, login string) error {
	return s.setState(ctx, fullName, number, login, "closed")
}

// ClosePR closes pull request number without merging it.
func (s *Sim) ClosePR(ctx context.Context, fullName string, number int, login string) error {
	return s.setState(ctx, fullName, number, login, "closed")
}

// Reopen reopens a closed (not merged) issue or pull request.
func (s *Sim) Reopen(ctx context.Context, fullName string, number int, login string) error {
	return s.setState(ctx, fullName, number, login, "open")
}

func (s *Sim) setState(ctx context.Context, fullName string, number int, login, state string) error {
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, login)
	var is *issue
	if err == nil {
		is, err = s.issueLocked(r, number)
	}
	if err == nil && is.author != u && !s.permLocked(r, u).canWrite() {
		err = fmt.Errorf("%w: %s may not change the state of #%d", ErrForbidden, u.login, number)
	}
	if err == nil && is.state == state {
		err = fmt.Errorf("%w: #%d is already %s", ErrInvalid, number, state)
	}
	if err == nil && is.pr != nil && is.pr.merged {
		err = fmt.Errorf("%w: pull request #%d is merged", ErrInvalid, number)
	}
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: set %s#%d %s: %w", fullName, number, state, err)
	}
	now := s.opts.Now()
	is.state, is.updated = state, now
	action := "reopened"
	if state == "closed" {
		is.closed = now
		action = "closed"
	} else {
		is.closed = time.Time{}
	}
	s.addEventLocked(r, is, u, action, nil, "")
	ds := s.issueEventLocked(r, is, u, action, nil)
	s.mu.Unlock()
	return s.send(ctx, ds)
}

// MergePR merges pull request number into its base branch with a merge
// commit, as login (write permission), and returns the merge commit. A
// push to the base branch and pull_request closed (merged) follow.
func (s *Sim) MergePR(ctx context.Context, fullName string, number int, login string) (string, error) {
	sha, err := s.mergePR(ctx, fullName, number, login)
	if err != nil {
		return "", fmt.Errorf("githubsim: merge %s#%d: %w", fullName, number, err)
	}
	return sha, nil
}

func (s *Sim) mergePR(ctx context.Context, fullName string, number int, login string) (string, error) {
	s.mu.Lock()
	r, u, is, err := s.writeTargetLocked(fullName, number, login)
	if err == nil && is.pr == nil {
		err = fmt.Errorf("%w: #%d is not a pull request", ErrNotFound, number)
	}
	if err == nil && is.state != "open" {
		err = fmt.Errorf("%w: pull request #%d is not open", ErrInvalid, number)
	}
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	baseRef := "refs/heads/" + is.pr.baseRef
	base, err := resolve(ctx, s.gitPath, r.dir, baseRef)
	if err != nil {
		return "", err
	}
	if base == "" {
		return "", fmt.Errorf("%w: base branch %s is gone", ErrInvalid, is.pr.baseRef)
	}
	msg := fmt.Sprintf("Merge pull request #%d from %s/%s\n\n%s", number, r.owner, is.pr.headRef, is.title)
	sha, err := mergeCommit(ctx, s.gitPath, r.dir, base, is.pr.headSHA, msg, s.ident(u.login))
	if errors.Is(err, errConflict) {
		return "", fmt.Errorf("%w: pull request #%d is not mergeable: %v", ErrInvalid, number, err)
	}
	if err != nil {
		return "", err
	}
	if err := updateRef(ctx, s.gitPath, r.dir, baseRef, sha, base); err != nil {
		return "", err
	}
	s.mu.Lock()
	now := s.opts.Now()
	is.state, is.updated, is.closed = "closed", now, now
	is.pr.merged, is.pr.mergedAt, is.pr.mergeSHA, is.pr.mergedBy = true, now, sha, u
	s.addEventLocked(r, is, u, "merged", nil, sha)
	s.addEventLocked(r, is, u, "closed", nil, "")
	s.mu.Unlock()
	ds, err := s.afterRefUpdate(ctx, r, u, is.pr.baseRef, base, sha)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	ds = append(ds, s.issueEventLocked(r, is, u, "closed", nil)...)
	s.mu.Unlock()
	return sha, s.send(ctx, ds)
}

// AddReview records a pull request review by login with state APPROVED,
// CHANGES_REQUESTED or COMMENTED on the current head and returns its ID
// (pull_request_review submitted follows).
func (s *Sim) AddReview(ctx context.Context, fullName string, number int, login, state, body string) (int64, error) {
	switch state {
	case "APPROVED", "CHANGES_REQUESTED", "COMMENTED":
	default:
		return 0, fmt.Errorf("githubsim: review %s#%d: %w: state %q", fullName, number, ErrInvalid, state)
	}
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, login)
	var is *issue
	if err == nil {
		is, err = s.prLocked(r, number)
	}
	if err != nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("githubsim: review %s#%d: %w", fullName, number, err)
	}
	rv := &review{id: s.newID(), issue: is, author: u, body: body, state: state, commitID: is.pr.headSHA, submitted: s.opts.Now()}
	r.reviews = append(r.reviews, rv)
	ds := s.emitLocked(r, "pull_request_review", "submitted", nil, false, func(inst *wInstallation) any {
		w := s.wReviewOf(r, rv)
		w.State = strings.ToLower(w.State) // webhooks spell the state in lower case
		return &wReviewEvent{Action: "submitted", Review: w, PullRequest: s.wSimplePullOf(r, is), wEnvelope: s.envelope(r, u, inst)}
	})
	s.mu.Unlock()
	return rv.id, s.send(ctx, ds)
}

type wReviewEvent struct {
	Action      string                     `json:"action"`
	Review      *wReview                   `json:"review"`
	PullRequest map[string]json.RawMessage `json:"pull_request"`
	wEnvelope
}

// wSimplePullOf renders a pull request as review events carry it: the
// full object without the merge state and counters.
func (s *Sim) wSimplePullOf(r *repo, is *issue) map[string]json.RawMessage {
	b, err := json.Marshal(s.wPullOf(r, is))
	if err != nil {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	for _, k := range []string{"merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments",
		"review_comments", "maintainer_can_modify", "commits", "additions", "deletions", "changed_files"} {
		delete(m, k)
	}
	return m
}

// CreateMilestone adds an open milestone and returns its number.
func (s *Sim) CreateMilestone(fullName, title, description string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(fullName)
	if err != nil || title == "" {
		return 0, fmt.Errorf("githubsim: create milestone %q in %s: %w", title, fullName, errors.Join(err, ErrInvalid))
	}
	now := s.opts.Now()
	m := &milestone{id: s.newID(), number: len(r.milestones) + 1, title: title, descr: description, state: "open", creator: s.users[r.owner], created: now, updated: now}
	r.milestones = append(r.milestones, m)
	return m.number, nil
}

// SetMilestone puts issue or pull request number in milestone ms (0
// clears it) as login.
func (s *Sim) SetMilestone(fullName string, number, ms int, login string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, u, is, err := s.writeTargetLocked(fullName, number, login)
	if err != nil {
		return fmt.Errorf("githubsim: set milestone of %s#%d: %w", fullName, number, err)
	}
	if ms < 0 || ms > len(r.milestones) {
		return fmt.Errorf("githubsim: set milestone of %s#%d: %w: milestone %d", fullName, number, ErrNotFound, ms)
	}
	ev := &issueEvent{id: s.newID(), issue: is, actor: u, created: s.opts.Now()}
	if ms == 0 {
		if is.milestone == nil {
			return nil
		}
		ev.event, ev.ms = "demilestoned", is.milestone.title
		is.milestone = nil
	} else {
		is.milestone = r.milestones[ms-1]
		ev.event, ev.ms = "milestoned", is.milestone.title
	}
	is.updated = ev.created
	r.events = append(r.events, ev)
	return nil
}

// RequestCheckRunRerun does what clicking "Re-run" on a check run does:
// a check_run rerequested delivery to the app that created the run (only
// that app is told, as on GitHub). login needs write permission.
func (s *Sim) RequestCheckRunRerun(ctx context.Context, fullName string, checkRunID int64, login string) error {
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, login)
	var cr *checkRun
	if err == nil {
		if !s.permLocked(r, u).canWrite() {
			err = fmt.Errorf("%w: %s needs write permission", ErrForbidden, u.login)
		}
		for _, c := range r.checkRuns {
			if c.id == checkRunID {
				cr = c
			}
		}
		if err == nil && cr == nil {
			err = fmt.Errorf("%w: check run %d", ErrNotFound, checkRunID)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: rerequest check run in %s: %w", fullName, err)
	}
	ds := s.emitLocked(r, "check_run", "rerequested", cr.suite.app, true, func(inst *wInstallation) any {
		return &wCheckRunEvent{Action: "rerequested", CheckRun: s.wCheckRunOf(r, cr), wEnvelope: s.envelope(r, u, inst)}
	})
	s.mu.Unlock()
	return s.send(ctx, ds)
}
