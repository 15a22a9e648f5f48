package trybot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/trybot/client"
)

// Lost access to a GitHub repository
//
// GitHub answers 404 both for what does not exist (a deleted pull
// request) and for a repository the credentials cannot see: a GitHub App
// uninstalled, or the repository taken out of its installation, and
// briefly an installation token that does not cover it yet. Only the
// first is a refusal retrying cannot change. So a 404 from GitHub is
// checked with the same credentials (GET /repos/{owner}/{repo}): when the
// repository answers, the 404 was about the post and is a refusal as
// before; when it is not found either, the post is recorded as not
// reported for want of access (extNoAccess), shown on the run ("not
// reported: the GitHub App has no access to owner/repo") and logged
// once per repository, not retried one by one. When access comes back
// (the App's installation_repositories "added" webhook, or the next post
// to the repository that succeeds) every post not reported that way is
// made again, in order, and its entry leaves the run's report errors.

// noAccessError is a GitHub 404 for a repository the credentials do
// not see.
type noAccessError struct {
	slug string
	app  bool // the credentials are a GitHub App's
	err  error
}

func (e *noAccessError) Error() string { return e.err.Error() }
func (e *noAccessError) Unwrap() error { return e.err }

// message is what the run's report error says.
func (e *noAccessError) message() string {
	who := "the GitHub token"
	if e.app {
		who = "the GitHub App"
	}
	return fmt.Sprintf("not reported: %s has no access to %s", who, e.slug)
}

// hasAccess asks GitHub, with the trybot's credentials, whether they see
// ri's repository: false after a 404, an error when GitHub could not
// tell (the caller retries).
func (t *Trybot) hasAccess(ctx context.Context, ri *repoInfo) (bool, error) {
	_, resp, err := ri.github.c.Repositories.Get(ctx, ri.owner, ri.name)
	switch {
	case err == nil:
		return true, nil
	case resp != nil && resp.StatusCode == http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("github: check access to %s: %w", ri.cfg.Slug, err)
}

// classifyNotFound turns a 404 refusal of a post to ri into a
// *noAccessError when the repository is gone for the credentials; it
// returns rf itself when the repository is there, and an error to retry
// when GitHub could not say.
func (t *Trybot) classifyNotFound(ctx context.Context, ri *repoInfo, rf *refusal) error {
	if rf.status != http.StatusNotFound || ri.review != client.ReviewGitHub {
		return rf
	}
	ok, err := t.hasAccess(ctx, ri)
	switch {
	case err != nil:
		return err
	case ok:
		return rf
	}
	return &noAccessError{slug: ri.cfg.Slug, app: ri.github.checks, err: rf.err}
}

// recordNoAccess records a post not made for want of access: in the
// run's report errors and as posted (extNoAccess), logging at error level
// only the first time the repository is found out of reach.
func (t *Trybot) recordNoAccess(ctx context.Context, ar *activeRun, what string, na *noAccessError) error {
	t.mu.Lock()
	first := !t.noAccess[ar.repo.cfg.Name]
	t.noAccess[ar.repo.cfg.Name] = true
	t.mu.Unlock()
	log := t.log.WithFields(logrus.Fields{"repo": ar.repo.cfg.Slug, "run": ar.run.ID, "what": what})
	if first {
		log.WithError(na.err).Error("trybot: " + strings.TrimPrefix(na.message(), "not reported: ") + ": results are not reported there until it has access again")
	} else {
		log.Debug("trybot: no access to the repository; post recorded as not reported")
	}
	now := t.opts.Now().UTC()
	if err := t.save(ctx, ar, func(r *client.Run) {
		r.ReportErrors = append(r.ReportErrors, client.ReportError{What: what, Status: http.StatusNotFound, Error: na.message(), At: now, AwaitingAccess: true})
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
	marked := t.noAccess[ri.cfg.Name]
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
		ok, err := t.hasAccess(ctx, ri)
		if err != nil || !ok {
			log.WithError(err).Debug("trybot: still no access to the repository")
			return
		}
		t.mu.Lock()
		claimed := t.noAccess[ri.cfg.Name]
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
			t.noAccess[ri.cfg.Name] = true
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
