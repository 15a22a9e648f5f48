package githubsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// Installation access, as GitHub models it: an App's installation covers
// every repository of its account ("repository_selection": "all") until
// the account's owner narrows it to selected repositories. A repository
// outside the installation does not exist for the installation's token:
// every /repos/{owner}/{repo}/... call answers 404 {"message": "Not
// Found"}, exactly as for a repository that does not exist (GitHub's
// answer for a private repository; the simulator's repositories are
// private), and GET /repos/{owner}/{repo}/installation answers the app's
// JWT 404 too. The repository's events are no longer delivered to the
// app's webhook. Each change is announced to the app's webhook with an
// installation_repositories event ("removed" or "added"), which GitHub
// sends to every App whatever events it subscribed to.

// RemoveFromInstallation takes repository fullName out of the
// installation of app slug (as its owner unticking it in the
// installation's settings, or removing the App from the repository), and
// delivers installation_repositories "removed".
func (s *Sim) RemoveFromInstallation(ctx context.Context, slug, fullName string) error {
	return s.setInstalled(ctx, slug, fullName, false)
}

// AddToInstallation gives the installation of app slug access to
// repository fullName again and delivers installation_repositories
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
	case a.excluded[r] == !in:
		s.mu.Unlock()
		return nil // already so: GitHub sends nothing either
	}
	if a.excluded == nil {
		a.excluded = map[*repo]bool{}
	}
	if in {
		delete(a.excluded, r)
	} else {
		a.excluded[r] = true
	}
	var ds []*delivery
	if a.hook != nil {
		ev := &wInstallationRepositoriesEvent{
			Action: "added", Installation: s.wInstallationOf(a), RepositorySelection: selection(a),
			RepositoriesAdded: []*wInstallationRepo{}, RepositoriesRemoved: []*wInstallationRepo{},
			Sender: s.wUserOf(a.owner),
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

// selection is the installation's repository_selection.
func selection(a *app) string {
	if len(a.excluded) > 0 {
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
//   - a repository outside the installation (RemoveFromInstallation, or
//     any after DeleteInstallation) does not exist for the installation's
//     token (404 "Not Found") when it is private; when it is public
//     (SetPublic) it can be read like by anyone, and writes get 403
//     "Resource not accessible by integration";
//   - the app's JWT finds no installation for such a repository (404).
//
// u is the caller (nil: anonymous), jwtApp the app whose JWT
// authenticated it, r the repository of the path (nil: none).
func installGateLocked(u *user, jwtApp *app, r *repo, method string) (int, *errorBody) {
	switch {
	case jwtApp != nil:
		if r != nil && (jwtApp.uninstalled || jwtApp.excluded[r]) {
			return notFoundBody()
		}
	case u != nil && u.app != nil:
		a := u.app
		if !a.suspended.IsZero() {
			return http.StatusForbidden, &errorBody{Message: "This installation has been suspended", DocumentationURL: docsURL, Status: "403"}
		}
		if r == nil || (!a.uninstalled && !a.excluded[r]) {
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

// Installation lifecycle. GitHub sends the App's webhook an
// "installation" event for each step, whatever events the App
// subscribed to:
//
//   - "deleted" (DeleteInstallation): the App is uninstalled; its
//     installation tokens are revoked (401 "Bad credentials"), the
//     installation is gone for the JWT (404 on
//     /app/installations/{id}, its access_tokens and
//     /repos/{owner}/{repo}/installation), and no more events are sent;
//   - "created" (CreateInstallation): installed again, under a new
//     installation ID, covering every repository; tokens are minted for
//     the new ID only;
//   - "suspend" (SuspendInstallation): the installation stays listed
//     (with suspended_at), but minting a token and every call with one
//     answers 403 "This installation has been suspended", and no events
//     are sent;
//   - "unsuspend" (UnsuspendInstallation): back to normal.

// DeleteInstallation uninstalls app slug and delivers installation
// "deleted".
func (s *Sim) DeleteInstallation(ctx context.Context, slug string) error {
	return s.installStep(ctx, slug, "deleted", func(a *app) bool {
		if a.uninstalled {
			return false
		}
		a.uninstalled, a.suspended = true, time.Time{}
		for tok, u := range s.tokens {
			if u == a.bot {
				delete(s.tokens, tok)
				delete(s.tokenExp, tok)
			}
		}
		return true
	})
}

// CreateInstallation installs app slug again (after
// DeleteInstallation) under a new installation ID, which it returns,
// and delivers installation "created".
func (s *Sim) CreateInstallation(ctx context.Context, slug string) (int64, error) {
	var id int64
	err := s.installStep(ctx, slug, "created", func(a *app) bool {
		if !a.uninstalled {
			return false
		}
		a.uninstalled, a.excluded = false, nil
		a.installationID = s.newID()
		id = a.installationID
		return true
	})
	return id, err
}

// SuspendInstallation suspends app slug's installation and delivers
// installation "suspend".
func (s *Sim) SuspendInstallation(ctx context.Context, slug string) error {
	return s.installStep(ctx, slug, "suspend", func(a *app) bool {
		if a.uninstalled || !a.suspended.IsZero() {
			return false
		}
		a.suspended = s.opts.Now()
		return true
	})
}

// UnsuspendInstallation lifts the suspension and delivers installation
// "unsuspend".
func (s *Sim) UnsuspendInstallation(ctx context.Context, slug string) error {
	return s.installStep(ctx, slug, "unsuspend", func(a *app) bool {
		if a.uninstalled || a.suspended.IsZero() {
			return false
		}
		a.suspended = time.Time{}
		return true
	})
}

// installStep applies step to app slug and, when it changed anything,
// delivers the installation event action to the app's webhook.
func (s *Sim) installStep(ctx context.Context, slug, action string, step func(a *app) bool) error {
	s.mu.Lock()
	a := s.apps[slug]
	if a == nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: installation of app %q: %w", slug, ErrNotFound)
	}
	inst := s.wInstallationOf(a) // "deleted" describes the installation that was
	if !step(a) {
		s.mu.Unlock()
		return nil // already so: GitHub sends nothing either
	}
	if action != "deleted" {
		inst = s.wInstallationOf(a)
	}
	var ds []*delivery
	if a.hook != nil {
		ev := &wInstallationEvent{Action: action, Installation: hookInstallation{inst, inst.CreatedAt.unix(), inst.UpdatedAt.unix()},
			Repositories: s.installedReposLocked(a), Sender: s.wUserOf(a.owner)}
		body, err := json.Marshal(ev)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("githubsim: installation payload: %w", err)
		}
		ds = append(ds, s.newDeliveryLocked(a.hook, nil, "installation", action, newGUID(), body, false))
	}
	s.mu.Unlock()
	return s.send(ctx, ds)
}

// installedReposLocked lists the repositories the installation covers,
// by name.
func (s *Sim) installedReposLocked(a *app) []*wInstallationRepo {
	out := []*wInstallationRepo{}
	names := make([]string, 0, len(s.repos))
	for n := range s.repos {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if r := s.repos[n]; !a.excluded[r] {
			out = append(out, wInstallationRepoOf(r))
		}
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
