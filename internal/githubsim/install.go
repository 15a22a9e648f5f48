package githubsim

import (
	"context"
	"encoding/json"
	"fmt"
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
		ir := &wInstallationRepo{ID: r.id, NodeID: nodeID("Repository", r.id), Name: r.name, FullName: r.fullName(), Private: true}
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

// installedLocked reports whether a call authenticated as u (an app's
// installation token when u is an app's bot) may see repository r.
func installedLocked(u *user, r *repo) bool {
	return u == nil || u.app == nil || !u.app.excluded[r]
}

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
