package githubsim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"time"
)

// Installation access, as GitHub models it: an App is installed on
// accounts (users and organizations), once on each; an installation
// covers every repository of its account ("repository_selection": "all")
// until the account's owner narrows it to selected repositories. The
// simulator installs each app on the account of every repository there
// is (AddApp, CreateRepo), in the order the accounts' first repositories
// were created; the installation's account is that owner, with its type
// ("User" or "Organization", AddOrg). A repository outside the
// installation its token belongs to does not exist for that token:
// every /repos/{owner}/{repo}/... call answers 404 {"message": "Not
// Found"}, exactly as for a repository that does not exist (GitHub's
// answer for a private repository; the simulator's repositories are
// private), and GET /repos/{owner}/{repo}/installation answers the app's
// JWT 404 too. The repository's events are no longer delivered to the
// app's webhook. Each change is announced to the app's webhook with an
// installation_repositories event ("removed" or "added"), which GitHub
// sends to every App whatever events it subscribed to.
//
// GET /app/installations (the app's JWT) lists the installations by ID
// and GET /installation/repositories (an installation token) the
// repositories an installation covers, by name; both page as every list
// endpoint (per_page default 30, at most 100; a Link header with
// rel="next", "last", "first", "prev").

// instLocked returns app a's installation on the account of repository
// r, installing it there if it is not yet.
func (s *Sim) instLocked(a *app, r *repo) *installation {
	if in := a.insts[r.owner]; in != nil {
		return in
	}
	in := &installation{id: s.newID(), app: a, account: s.userLocked(r.owner), created: s.opts.Now()}
	a.insts[r.owner] = in
	return in
}

// sortedInsts returns a's installations by ID.
func sortedInsts(a *app) []*installation {
	out := make([]*installation, 0, len(a.insts))
	for _, in := range a.insts {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// InstallationID returns the ID of app slug's installation on account
// (a user or an organization that owns a repository).
func (s *Sim) InstallationID(slug, account string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.installationLocked(slug, account)
	if err != nil {
		return 0, fmt.Errorf("githubsim: %w", err)
	}
	return in.id, nil
}

func (s *Sim) installationLocked(slug, account string) (*installation, error) {
	a := s.apps[slug]
	if a == nil {
		return nil, fmt.Errorf("installation of app %q: %w", slug, ErrNotFound)
	}
	in := a.insts[account]
	if in == nil {
		return nil, fmt.Errorf("installation of app %s on %q (no repository of that account): %w", slug, account, ErrNotFound)
	}
	return in, nil
}

// RemoveFromInstallation takes repository fullName out of app slug's
// installation on the repository's account (as its owner unticking it in the
// installation's settings, or removing the App from the repository), and
// delivers installation_repositories "removed".
func (s *Sim) RemoveFromInstallation(ctx context.Context, slug, fullName string) error {
	return s.setInstalled(ctx, slug, fullName, false)
}

// AddToInstallation gives app slug's installation on the account of
// repository fullName access to it again and delivers installation_repositories
// "added".
func (s *Sim) AddToInstallation(ctx context.Context, slug, fullName string) error {
	return s.setInstalled(ctx, slug, fullName, true)
}

func (s *Sim) setInstalled(ctx context.Context, slug, fullName string, in bool) error {
	s.mu.Lock()
	a, r := s.apps[slug], s.repos[fullName]
	switch {
	case a == nil:
		s.mu.Unlock()
		return fmt.Errorf("githubsim: installation of app %q: %w", slug, ErrNotFound)
	case r == nil:
		s.mu.Unlock()
		return fmt.Errorf("githubsim: installation of app %s: repository %q: %w", slug, fullName, ErrNotFound)
	}
	inst := s.instLocked(a, r)
	if inst.excluded[r] == !in {
		s.mu.Unlock()
		return nil // already so: GitHub sends nothing either
	}
	if inst.excluded == nil {
		inst.excluded = map[*repo]bool{}
	}
	if in {
		delete(inst.excluded, r)
	} else {
		inst.excluded[r] = true
	}
	var ds []*delivery
	if a.hook != nil {
		ev := &wInstallationRepositoriesEvent{
			Action: "added", Installation: s.wInstallationOf(inst), RepositorySelection: selection(inst),
			RepositoriesAdded: []*wInstallationRepo{}, RepositoriesRemoved: []*wInstallationRepo{},
			Sender: s.wUserOf(s.adminLocked(inst)),
		}
		ir := wInstallationRepoOf(r)
		if in {
			ev.RepositoriesAdded = append(ev.RepositoriesAdded, ir)
		} else {
			ev.Action = "removed"
			ev.RepositoriesRemoved = append(ev.RepositoriesRemoved, ir)
		}
		body, err := json.Marshal(ev)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("githubsim: installation_repositories payload: %w", err)
		}
		ds = append(ds, s.newDeliveryLocked(a.hook, r, "installation_repositories", ev.Action, newGUID(), body, false))
	}
	s.mu.Unlock()
	return s.send(ctx, ds)
}

// adminLocked is who manages installation in on GitHub, the sender of
// its events: the account itself for a user, an organization's first
// member (by login) for an organization (or the app's owner when it has
// none).
func (s *Sim) adminLocked(in *installation) *user {
	if in.account.typ != "Organization" {
		return in.account
	}
	members := slices.Sorted(maps.Keys(s.orgs[in.account.login]))
	if len(members) == 0 {
		return in.app.owner
	}
	return s.users[members[0]]
}

// selection is the installation's repository_selection.
func selection(in *installation) string {
	if len(in.excluded) > 0 {
		return "selected"
	}
	return "all"
}

// installGateLocked answers, in an endpoint's stead, a call the caller's
// installation does not allow (code and body; body nil: allowed), as
// GitHub does:
//
//   - a suspended installation's tokens get 403 "This installation has
//     been suspended" everywhere;
//   - a repository outside the installation (another account's,
//     RemoveFromInstallation, or any after DeleteInstallation) does not
//     exist for the installation's token (404 "Not Found") when it is
//     private; when it is public (SetPublic) it can be read like by
//     anyone, and writes get 403 "Resource not accessible by
//     integration";
//   - the app's JWT finds no installation for such a repository (404).
//
// u is the caller (nil: anonymous), ti the installation of its token
// (nil: AddApp's token, which acts for the installation on the
// repository's account), jwtApp the app whose JWT authenticated it, r
// the repository of the path (nil: none).
func (s *Sim) installGateLocked(u *user, ti *installation, jwtApp *app, r *repo, method string) (int, *errorBody) {
	switch {
	case jwtApp != nil:
		if r != nil {
			if in := s.instLocked(jwtApp, r); in.uninstalled || in.excluded[r] {
				return notFoundBody()
			}
		}
	case u != nil && u.app != nil:
		in := ti
		if in == nil && r != nil {
			in = s.instLocked(u.app, r)
		}
		if in != nil && !in.suspended.IsZero() {
			return http.StatusForbidden, &errorBody{Message: "This installation has been suspended", DocumentationURL: docsURL, Status: "403"}
		}
		if r == nil || (in.account.login == r.owner && !in.uninstalled && !in.excluded[r]) {
			return 0, nil
		}
		if !r.public {
			return notFoundBody()
		}
		if method != http.MethodGet && method != http.MethodHead {
			return http.StatusForbidden, &errorBody{Message: "Resource not accessible by integration", DocumentationURL: docsURL, Status: "403"}
		}
	}
	return 0, nil
}

func notFoundBody() (int, *errorBody) { return http.StatusNotFound, errBody("Not Found") }

// SetPublic makes repository fullName public (or private again, the
// default). It matters for installations (see installGateLocked): a
// public repository outside an App's installation stays readable by the
// installation's token, and GitHub refuses writes to it with 403, not
// 404.
func (s *Sim) SetPublic(fullName string, public bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(fullName)
	if err != nil {
		return fmt.Errorf("githubsim: set visibility: %w", err)
	}
	r.public = public
	return nil
}

// Installation lifecycle, of an app's installation on one account.
// GitHub sends the App's webhook an "installation" event for each step,
// whatever events the App subscribed to:
//
//   - "deleted" (DeleteInstallation): the App is uninstalled from the
//     account; the installation's tokens (and AddApp's) are revoked (401
//     "Bad credentials"), the installation is gone for the JWT (404 on
//     /app/installations/{id}, its access_tokens and
//     /repos/{owner}/{repo}/installation of the account's
//     repositories), and no more of the account's events are sent;
//   - "created" (CreateInstallation): installed again, under a new
//     installation ID, covering every repository of the account; tokens
//     are minted for the new ID only;
//   - "suspend" (SuspendInstallation): the installation stays listed
//     (with suspended_at), but minting a token and every call with one
//     answers 403 "This installation has been suspended", and no events
//     are sent;
//   - "unsuspend" (UnsuspendInstallation): back to normal.

// DeleteInstallation uninstalls app slug from account and delivers
// installation "deleted".
func (s *Sim) DeleteInstallation(ctx context.Context, slug, account string) error {
	return s.installStep(ctx, slug, account, "deleted", func(in *installation) bool {
		if in.uninstalled {
			return false
		}
		in.uninstalled, in.suspended = true, time.Time{}
		for tok, u := range s.tokens {
			if ti, minted := s.tokenInst[tok]; u == in.app.bot && (ti == in || !minted) {
				delete(s.tokens, tok)
				delete(s.tokenExp, tok)
				delete(s.tokenInst, tok)
			}
		}
		return true
	})
}

// CreateInstallation installs app slug on account again (after
// DeleteInstallation) under a new installation ID, which it returns,
// and delivers installation "created".
func (s *Sim) CreateInstallation(ctx context.Context, slug, account string) (int64, error) {
	var id int64
	err := s.installStep(ctx, slug, account, "created", func(in *installation) bool {
		if !in.uninstalled {
			return false
		}
		in.uninstalled, in.excluded = false, nil
		in.id, in.created = s.newID(), s.opts.Now()
		id = in.id
		return true
	})
	return id, err
}

// SuspendInstallation suspends app slug's installation on account and
// delivers installation "suspend".
func (s *Sim) SuspendInstallation(ctx context.Context, slug, account string) error {
	return s.installStep(ctx, slug, account, "suspend", func(in *installation) bool {
		if in.uninstalled || !in.suspended.IsZero() {
			return false
		}
		in.suspended = s.opts.Now()
		return true
	})
}

// UnsuspendInstallation lifts the suspension and delivers installation
// "unsuspend".
func (s *Sim) UnsuspendInstallation(ctx context.Context, slug, account string) error {
	return s.installStep(ctx, slug, account, "unsuspend", func(in *installation) bool {
		if in.uninstalled || in.suspended.IsZero() {
			return false
		}
		in.suspended = time.Time{}
		return true
	})
}

// installStep applies step to app slug's installation on account and,
// when it changed anything, delivers the installation event action to
// the app's webhook.
func (s *Sim) installStep(ctx context.Context, slug, account, action string, step func(in *installation) bool) error {
	s.mu.Lock()
	in, err := s.installationLocked(slug, account)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: %w", err)
	}
	a := in.app
	inst := s.wInstallationOf(in) // "deleted" describes the installation that was
	if !step(in) {
		s.mu.Unlock()
		return nil // already so: GitHub sends nothing either
	}
	if action != "deleted" {
		inst = s.wInstallationOf(in)
	}
	var ds []*delivery
	if a.hook != nil {
		ev := &wInstallationEvent{Action: action, Installation: hookInstallation{inst, inst.CreatedAt.unix(), inst.UpdatedAt.unix()},
			Repositories: wireAll(s.installedReposLocked(in), wInstallationRepoOf), Sender: s.wUserOf(s.adminLocked(in))}
		body, err := json.Marshal(ev)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("githubsim: installation payload: %w", err)
		}
		d := s.newDeliveryLocked(a.hook, nil, "installation", action, newGUID(), body, false)
		d.instID = inst.ID
		ds = append(ds, d)
	}
	s.mu.Unlock()
	return s.send(ctx, ds)
}

// installedReposLocked lists the repositories the installation covers,
// by name.
func (s *Sim) installedReposLocked(in *installation) []*repo {
	names := make([]string, 0, len(s.repos))
	for n, r := range s.repos {
		if r.owner == in.account.login && !in.excluded[r] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([]*repo, 0, len(names))
	for _, n := range names {
		out = append(out, s.repos[n])
	}
	return out
}

func wInstallationRepoOf(r *repo) *wInstallationRepo {
	return &wInstallationRepo{ID: r.id, NodeID: nodeID("Repository", r.id), Name: r.name, FullName: r.fullName(), Private: !r.public}
}

// wInstallationEvent is the installation webhook payload.
type wInstallationEvent struct {
	Action       string               `json:"action"`
	Installation hookInstallation     `json:"installation"`
	Repositories []*wInstallationRepo `json:"repositories"`
	Requester    *wUser               `json:"requester,omitempty"`
	Sender       *wUser               `json:"sender"`
}

// hookInstallation is the installation as the installation event
// carries it: with its times in Unix seconds (the REST API's are RFC
// 3339 strings).
type hookInstallation struct {
	*wAppInstallation
	CreatedAt int64 `json:"created_at"`
	UpdatedAt int64 `json:"updated_at"`
}

func (t ghTime) unix() int64 { return time.Time(t).Unix() }

// wInstallationRepositoriesEvent is the installation_repositories
// webhook payload.
type wInstallationRepositoriesEvent struct {
	Action              string               `json:"action"`
	Installation        *wAppInstallation    `json:"installation"`
	RepositorySelection string               `json:"repository_selection"`
	RepositoriesAdded   []*wInstallationRepo `json:"repositories_added"`
	RepositoriesRemoved []*wInstallationRepo `json:"repositories_removed"`
	Requester           *wUser               `json:"requester"`
	Sender              *wUser               `json:"sender"`
}

// wInstallationRepo is a repository as installation events list it.
type wInstallationRepo struct {
	ID       int64  `json:"id"`
	NodeID   string `json:"node_id"`
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	Private  bool   `json:"private"`
}
