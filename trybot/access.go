package trybot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-github/v60/github"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/ghapp"
	"github.com/tryd-ci/tryd/trybot/client"
)

// Lost access to a GitHub repository
//
// GitHub answers 404 both for what does not exist (a deleted pull
// request) and for a private repository the credentials cannot see: a
// GitHub App uninstalled, or the repository taken out of its
// installation, and briefly an installation token that does not cover it
// yet. For a public repository outside the installation it answers
// writes with 403 "Resource not accessible by integration" instead, the
// status it also gives for a permission the App lacks and, with
// X-RateLimit-Remaining: 0 or a Retry-After, for a rate limit. A
// suspended installation gets 403 "This installation has been
// suspended", from minting a token as from using one; an uninstalled
// one's tokens get 401 and minting its tokens 404.
//
// So a GitHub 404, a 403 that is not a rate limit (rate limits are
// retried after the delay GitHub gives, see retryAfter), a 401 and a
// failure to mint an installation token are checked (access): with App
// credentials, the App's JWT asks for the repository's installation
// (GET /repos/{owner}/{repo}/installation), which is there, suspended,
// or not found, and then whether the App is installed on the owner's
// account at all (GET /app/installations); with a token, GET
// /repos/{owner}/{repo} answers or not.
//
//   - The installation is there under another ID (the App was installed
//     again): the trybot uses it from now on, and the post is retried.
//   - It is there: a 404 was about the post itself and is a refusal; a
//     403 or 401 is retried (a permission an operator grants).
//   - It is not (or suspended): the post is recorded as not reported for
//     want of access (extNoAccess), shown on the run ("not reported: the
//     GitHub App has no access to owner/repo" when it is installed on
//     the owner's account without the repository, "... is not installed
//     on owner's account" when it has no installation there and the
//     trybot never found one, "... was uninstalled from owner's
//     account" when the installation the trybot found there is gone,
//     "... installation for owner/repo is suspended") and logged once
//     per repository, not retried one by one.
//
// When access comes back (the App's installation_repositories "added"
// or installation "created" or "unsuspend" webhook, or the next post to
// the repository that succeeds) every post not reported that way is made
// again, in order, and its entry leaves the run's report errors. The
// installation webhook's "deleted" and "suspend" mark the account's
// repositories out of reach at once, and "created" switches to the new
// installation ID before any post fails for want of it.

// access is what the trybot's credentials may do in a repository.
type access int

const (
	accessOK access = iota
	// accessNone: the repository is not visible (a token), or not in
	// the App's installation.
	accessNone
	// accessUninstalled: the installation the trybot found and used on
	// the owner's account is gone (the App was uninstalled there, its
	// tokens revoked).
	accessUninstalled
	// accessNotInstalled: the App has no installation on the owner's
	// account and the trybot never found one there: never installed
	// (or removed before the trybot could see it), which is not an
	// uninstallation to report.
	accessNotInstalled
	// accessSuspended: the App's installation is suspended.
	accessSuspended
)

// noAccessError is a post refused because the credentials lost access to
// the repository.
type noAccessError struct {
	slug   string
	app    bool // the credentials are a GitHub App's
	access access
	status int // GitHub's answer to the post
	err    error
}

func (e *noAccessError) Error() string { return e.err.Error() }
func (e *noAccessError) Unwrap() error { return e.err }

// message is what the run's report error says.
func (e *noAccessError) message() string {
	owner, _, _ := strings.Cut(e.slug, "/")
	switch {
	case !e.app:
		return fmt.Sprintf("not reported: the GitHub token has no access to %s", e.slug)
	case e.access == accessSuspended:
		return fmt.Sprintf("not reported: the GitHub App's installation for %s is suspended", e.slug)
	case e.access == accessUninstalled:
		return fmt.Sprintf("not reported: the GitHub App was uninstalled from %s's account (its installation there is gone)", owner)
	case e.access == accessNotInstalled:
		return fmt.Sprintf("not reported: the GitHub App is not installed on %s's account", owner)
	}
	return fmt.Sprintf("not reported: the GitHub App has no access to %s", e.slug)
}

// checkAccess asks GitHub what the trybot's credentials may do in ri's
// repository (see above); changed reports that the App's installation ID
// changed to the one GitHub gave. An error means GitHub could not tell
// (the caller retries).
func (t *Trybot) checkAccess(ctx context.Context, ri *repoInfo) (a access, changed bool, err error) {
	g := ri.github
	if g.app == nil {
		_, resp, err := g.c.Repositories.Get(ctx, ri.owner, ri.name)
		switch {
		case err == nil:
			return accessOK, false, nil
		case resp != nil && resp.StatusCode == http.StatusNotFound:
			return accessNone, false, nil
		}
		return 0, false, fmt.Errorf("github: check access to %s: %w", ri.cfg.Slug, err)
	}
	it := g.insts.Account(ri.owner)
	inst, resp, err := g.app.Apps.FindRepositoryInstallation(ctx, ri.owner, ri.name)
	switch {
	case err == nil && inst.SuspendedAt != nil:
		return accessSuspended, false, nil
	case err == nil:
		old := it.ID()
		if changed = it.Use(inst.GetID()); changed {
			t.log.WithFields(logrus.Fields{"repo": ri.cfg.Slug, "old": old, "new": inst.GetID()}).
				Warn("trybot: the GitHub App's installation changed (installed again); using the new one")
		}
		return accessOK, changed, nil
	case resp == nil || resp.StatusCode != http.StatusNotFound:
		return 0, false, fmt.Errorf("github: installation of %s: %w", ri.cfg.Slug, err)
	}
	// Not installed on the repository: is the App installed on the
	// owner's account at all? Only an installation the trybot found
	// there and that is gone now was uninstalled: with none known (ID 0,
	// or the configured one, which may be another account's) the App is
	// merely not installed there.
	onAccount, err := accountInstallation(ctx, g.app, ri.owner)
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("github: installation of %s: %w", ri.cfg.Slug, err)
	case onAccount != nil && onAccount.SuspendedAt != nil:
		return accessSuspended, false, nil
	case onAccount != nil:
		return accessNone, false, nil
	case it.ID() != 0 && it.Found(it.ID()):
		return accessUninstalled, false, nil
	}
	return accessNotInstalled, false, nil
}

// accountInstallation returns the App's installation on owner's account,
// or nil when it has none, from the App's list of installations (GET
// /app/installations, the one way to ask that GitHub documents for
// users and organizations alike). It is only asked when a repository's
// own installation was not found, so the listing is rare.
func accountInstallation(ctx context.Context, app *github.Client, owner string) (*github.Installation, error) {
	opts := &github.ListOptions{PerPage: 100}
	for {
		list, resp, err := app.Apps.ListInstallations(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list the GitHub App's installations: %w", err)
		}
		for _, in := range list {
			if strings.EqualFold(in.GetAccount().GetLogin(), owner) {
				return in, nil
			}
		}
		if resp.NextPage == 0 {
			return nil, nil
		}
		opts.Page = resp.NextPage
	}
}

// classifyPostError decides what a failed post to ri means: a *refusal
// (not retried), a *noAccessError (recorded as not reported until access
// comes back), or an error to retry (err itself, or with why GitHub
// could not tell).
func (t *Trybot) classifyPostError(ctx context.Context, ri *repoInfo, err error) error {
	rf := asRefusal(err)
	if ri.review != client.ReviewGitHub {
		if rf != nil {
			return rf
		}
		return err
	}
	app := ri.github.app != nil
	status := githubStatus(err)
	var te *ghapp.TokenError
	switch {
	case rateLimited(err):
		// Retried after GitHub's delay (retryAfter), also when it was
		// minting the token that was limited.
		return err
	case errors.As(err, &te):
		// Minting the token failed: its 404 or 403 is about the
		// installation, not a refusal of the post.
		rf = nil
	case status == http.StatusNotFound:
	case app && (status == http.StatusUnauthorized || status == http.StatusForbidden):
		// 401: the token was revoked (the App uninstalled; the next
		// request mints another, see forgetRevoked).
	default:
		if rf != nil {
			return rf
		}
		return err
	}
	a, changed, cerr := t.checkAccess(ctx, ri)
	switch {
	case cerr != nil:
		return fmt.Errorf("%w (access unknown: %v)", err, cerr)
	case a != accessOK:
		return &noAccessError{slug: ri.cfg.Slug, app: ri.github.checks, access: a, status: status, err: err}
	case !changed && rf != nil:
		return rf
	}
	return err
}

// githubStatus is the HTTP status of GitHub's answer in err, or 0.
func githubStatus(err error) int {
	var ge *github.ErrorResponse
	if errors.As(err, &ge) && ge.Response != nil {
		return ge.Response.StatusCode
	}
	return 0
}

// rateLimited reports whether err is GitHub saying to slow down: a
// primary rate limit (403 or 429 with X-RateLimit-Remaining: 0) or a
// secondary one (403 or 429 with Retry-After, or saying so), whether or
// not go-github recognised it.
func rateLimited(err error) bool {
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	if errors.As(err, &rl) || errors.As(err, &ab) {
		return true
	}
	var ge *github.ErrorResponse
	if !errors.As(err, &ge) || ge.Response == nil {
		return false
	}
	switch ge.Response.StatusCode {
	case http.StatusForbidden, http.StatusTooManyRequests:
	default:
		return false
	}
	h := ge.Response.Header
	return h.Get("Retry-After") != "" || h.Get("X-RateLimit-Remaining") == "0" ||
		strings.Contains(strings.ToLower(ge.Message), "rate limit")
}

// recordNoAccess records a post not made for want of access: in the
// run's report errors and as posted (extNoAccess), logging at error level
// only the first time the repository is found out of reach.
func (t *Trybot) recordNoAccess(ctx context.Context, ar *activeRun, what string, na *noAccessError) error {
	t.mu.Lock()
	first := t.noAccess[ar.repo.cfg.Name] != na.message()
	t.noAccess[ar.repo.cfg.Name] = na.message()
	t.mu.Unlock()
	log := t.log.WithFields(logrus.Fields{"repo": ar.repo.cfg.Slug, "run": ar.run.ID, "what": what})
	if first {
		log.WithError(na.err).Error("trybot: " + strings.TrimPrefix(na.message(), "not reported: ") + ": results are not reported there until it has access again")
	} else {
		log.Debug("trybot: no access to the repository; post recorded as not reported")
	}
	now := t.opts.Now().UTC()
	if err := t.save(ctx, ar, func(r *client.Run) {
		r.ReportErrors = append(r.ReportErrors, client.ReportError{What: what, Status: na.status, Error: na.message(), At: now, AwaitingAccess: true})
	}); err != nil {
		return err
	}
	return t.store.recordPost(ctx, ar.run.ID, what, extNoAccess)
}

// accessBack is called when ri's repository may be reachable again (a
// post to it succeeded, which may not have needed GitHub, or the App
// was given access); if it was out of reach, access is checked and the
// posts not reported meanwhile are made again, in the background.
//
// The repository stays marked until a check finds access, and only the
// check that clears the mark resumes: a webhook arriving while an
// earlier check is still answering 404 is not lost.
func (t *Trybot) accessBack(ri *repoInfo, why string) {
	t.mu.Lock()
	marked := t.noAccess[ri.cfg.Name] != ""
	ctx := t.runCtx
	running := ctx != nil && ctx.Err() == nil
	if marked && running {
		t.wg.Add(1)
	}
	t.mu.Unlock()
	if !marked || !running {
		return
	}
	log := t.log.WithFields(logrus.Fields{"repo": ri.cfg.Slug, "why": why})
	go func() {
		defer t.wg.Done()
		a, _, err := t.checkAccess(ctx, ri)
		if err != nil || a != accessOK {
			log.WithError(err).Debug("trybot: still no access to the repository")
			return
		}
		t.mu.Lock()
		claimed := t.noAccess[ri.cfg.Name] != ""
		delete(t.noAccess, ri.cfg.Name)
		t.mu.Unlock()
		if !claimed {
			return // another check resumes
		}
		log.Info("trybot: access to the repository is back; reporting what was not reported")
		if err := t.resumeReports(ctx, ri); err != nil && ctx.Err() == nil {
			log.WithError(err).Error("trybot: reporting what was not reported failed")
		}
	}()
}

// markNoAccessFromStore marks the repositories with posts not reported
// for want of access (by an earlier process), so that the next success
// or webhook reports them.
func (t *Trybot) markNoAccessFromStore(ctx context.Context) error {
	for _, ri := range t.repos {
		if ri.review != client.ReviewGitHub {
			continue
		}
		ps, err := t.store.noAccessPosts(ctx, ri.cfg.Name)
		if err != nil {
			return err
		}
		if len(ps) > 0 {
			t.mu.Lock()
			t.noAccess[ri.cfg.Name] = "posts not reported for want of access (earlier process)"
			t.mu.Unlock()
		}
	}
	return nil
}

// postOrder sorts a run's posts as they are first made: begin, the
// builders' starts, their results, the run's result.
func postOrder(what string) int {
	kind, _, _ := strings.Cut(what, ":")
	return slices.Index([]string{"begin", "started", "done", "result"}, kind)
}

// resumeReports makes again the posts of ri's runs that were recorded as
// not reported for want of access.
func (t *Trybot) resumeReports(ctx context.Context, ri *repoInfo) error {
	posts, err := t.store.noAccessPosts(ctx, ri.cfg.Name)
	if err != nil {
		return err
	}
	byRun := map[int64][]string{}
	var order []int64
	for _, p := range posts {
		if byRun[p.run] == nil {
			order = append(order, p.run)
		}
		byRun[p.run] = append(byRun[p.run], p.what)
	}
	rep := t.reporter(ri)
	var errs []error
	for _, id := range order {
		whats := byRun[id]
		slices.SortStableFunc(whats, func(a, b string) int { return postOrder(a) - postOrder(b) })
		if err := t.repost(ctx, ri, rep, id, whats); err != nil {
			errs = append(errs, fmt.Errorf("run %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// repost makes whats again for run id: the active run's, or the stored
// one when it has finished.
func (t *Trybot) repost(ctx context.Context, ri *repoInfo, rep reporter, id int64, whats []string) error {
	r, err := t.store.get(ctx, id)
	if err != nil {
		return err
	}
	if r.State == client.StateSuperseded {
		return nil // nothing more is posted for a superseded run
	}
	t.mu.Lock()
	ar := t.active[runKeyOf(r)]
	t.mu.Unlock()
	if ar == nil || ar.run.ID != id {
		ar = &activeRun{run: r, repo: ri, key: runKeyOf(r)}
	}
	for _, what := range whats {
		if _, err := t.store.forgetNoAccess(ctx, postRef{run: id, what: what}); err != nil {
			return err
		}
	}
	if err := t.save(ctx, ar, func(r *client.Run) {
		r.ReportErrors = slices.DeleteFunc(r.ReportErrors, func(e client.ReportError) bool {
			return e.AwaitingAccess && slices.Contains(whats, e.What)
		})
	}); err != nil {
		return err
	}
	for _, what := range whats {
		kind, builder, _ := strings.Cut(what, ":")
		post := rep.begin
		switch kind {
		case "result":
			post = rep.result
		case "started", "done":
			i := slices.IndexFunc(ar.run.Builds, func(b client.Build) bool { return b.Builder == builder })
			if i < 0 {
				continue
			}
			post = func(ctx context.Context, r *client.Run) (string, error) {
				if kind == "started" {
					return rep.builderStarted(ctx, r, i)
				}
				return rep.builderDone(ctx, r, i)
			}
		}
		if err := t.postOnce(ctx, ar, what, post); err != nil {
			return err
		}
	}
	return nil
}
