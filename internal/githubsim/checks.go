package githubsim

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// validCheckStatus and validCheckConclusion list the values GitHub's
// checks API accepts.
func validCheckStatus(v string) bool {
	switch v {
	case "queued", "in_progress", "completed", "waiting", "requested", "pending":
		return true
	}
	return false
}

func validCheckConclusion(v string) bool {
	switch v {
	case "action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out":
		return true
	}
	return false
}

type checkRunInput struct {
	Name        *string    `json:"name"`
	HeadSHA     *string    `json:"head_sha"`
	DetailsURL  *string    `json:"details_url"`
	ExternalID  *string    `json:"external_id"`
	Status      *string    `json:"status"`
	Conclusion  *string    `json:"conclusion"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Output      *struct {
		Title       *string `json:"title"`
		Summary     *string `json:"summary"`
		Text        *string `json:"text"`
		Annotations []any   `json:"annotations"`
	} `json:"output"`
}

// needApp allows only GitHub App installation tokens, as GitHub does for
// the checks API.
func (c *call) needApp() (int, any) {
	if code, v := c.needAuth(); code != 0 {
		return code, v
	}
	if c.u.app == nil {
		return http.StatusForbidden, errBody("You must authenticate via a GitHub App.")
	}
	return 0, nil
}

func invalidRequest(msg string) (int, any) {
	return http.StatusUnprocessableEntity, errBody("Invalid request.\n\n" + msg)
}

// apply validates in and applies it to cr (which may be new). It returns
// whether the run became completed.
func (in *checkRunInput) apply(cr *checkRun, now time.Time) (completed bool, code int, body any) {
	was := cr.status
	if in.Name != nil {
		if *in.Name == "" {
			return false, http.StatusUnprocessableEntity, errBody("Invalid request.\n\n\"name\" wasn't supplied.")
		}
		cr.name = *in.Name
	}
	if in.DetailsURL != nil {
		cr.detailsURL = *in.DetailsURL
	}
	if in.ExternalID != nil {
		cr.externalID = *in.ExternalID
	}
	if in.Status != nil {
		if !validCheckStatus(*in.Status) {
			code, body := invalidRequest("For 'properties/status', \"" + *in.Status + "\" is not a valid value.")
			return false, code, body
		}
		cr.status = *in.Status
	}
	if in.Conclusion != nil {
		if !validCheckConclusion(*in.Conclusion) {
			code, body := invalidRequest("For 'properties/conclusion', \"" + *in.Conclusion + "\" is not a valid value.")
			return false, code, body
		}
		cr.conclusion = *in.Conclusion
		// Giving a conclusion completes the run, as on GitHub.
		cr.status = "completed"
	}
	if cr.status == "completed" && cr.conclusion == "" {
		code, body := invalidRequest("No subschema in \"anyOf\" matched. \"conclusion\" is required when \"status\" is \"completed\".")
		return false, code, body
	}
	if cr.status != "completed" && cr.conclusion != "" {
		code, body := invalidRequest("\"conclusion\" can only be given when \"status\" is \"completed\".")
		return false, code, body
	}
	if in.StartedAt != nil {
		cr.started = *in.StartedAt
	}
	if cr.started.IsZero() {
		cr.started = now
	}
	if in.CompletedAt != nil {
		cr.completed = *in.CompletedAt
	}
	if cr.status == "completed" && cr.completed.IsZero() {
		cr.completed = now
	}
	if o := in.Output; o != nil {
		if o.Title != nil {
			cr.title = *o.Title
		}
		if o.Summary != nil {
			cr.summary = *o.Summary
		}
		if o.Text != nil {
			cr.text = *o.Text
		}
		cr.annotations += len(o.Annotations)
	}
	return cr.status == "completed" && was != "completed", 0, nil
}

func (s *Sim) createCheckRun(c *call) (int, any) {
	var in checkRunInput
	if code, v := c.decode(&in); code != 0 {
		return code, v
	}
	if in.Name == nil || *in.Name == "" {
		return validation("CheckRun", "name", "missing_field", "")
	}
	if in.HeadSHA == nil || *in.HeadSHA == "" {
		return validation("CheckRun", "head_sha", "missing_field", "")
	}
	sha, ok := s.resolveRef(c, *in.HeadSHA)
	if !ok || !strings.HasPrefix(sha, strings.ToLower(*in.HeadSHA)) {
		return noCommit(*in.HeadSHA)
	}
	branch := s.branchAt(c, sha)
	head, err := commitInfo(c.r.Context(), s.gitPath, c.repo.dir, sha)
	if err != nil {
		return http.StatusInternalServerError, errBody("Server Error")
	}
	s.mu.Lock()
	now := s.opts.Now()
	cr := &checkRun{headSHA: sha, status: "queued"}
	completed, code, body := in.apply(cr, now)
	if code != 0 {
		s.mu.Unlock()
		return code, body
	}
	a := c.u.app
	suite := s.suiteForLocked(c.repo, a, sha)
	if suite == nil {
		suite = &checkSuite{id: s.newID(), app: a, headSHA: sha, headBranch: branch, head: head, created: now}
		c.repo.suites = append(c.repo.suites, suite)
	}
	suite.completed = false
	suite.updated = now
	cr.id = s.newID()
	cr.suite = suite
	c.repo.checkRuns = append(c.repo.checkRuns, cr)
	ds := s.checkRunEventLocked(c.repo, cr, c.u, "created")
	if completed {
		ds = append(ds, s.checkRunEventLocked(c.repo, cr, c.u, "completed")...)
		ds = append(ds, s.suiteCompletedLocked(c.repo, suite, c.u)...)
	}
	out := s.wCheckRunOf(c.repo, cr)
	s.mu.Unlock()
	s.q.push(ds...)
	return http.StatusCreated, out
}

func (s *Sim) checkRunEventLocked(r *repo, cr *checkRun, sender *user, action string) []*delivery {
	return s.emitLocked(r, "check_run", action, cr.suite.app, false, func(inst *wInstallation) any {
		return &wCheckRunEvent{Action: action, CheckRun: s.wCheckRunOf(r, cr), wEnvelope: s.envelope(r, sender, inst)}
	})
}

// branchAt names a branch whose tip is sha ("" if none), for check
// suites' head_branch.
func (s *Sim) branchAt(c *call, sha string) string {
	out, err := runGit(c.r.Context(), s.gitPath, c.repo.dir, nil, nil, "for-each-ref", "--format=%(refname:strip=2)", "--points-at", sha, "refs/heads/")
	if err != nil || out == "" {
		return ""
	}
	first, _, _ := strings.Cut(out, "\n")
	return first
}

func (s *Sim) checkRunFromPath(c *call) *checkRun {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	for _, cr := range c.repo.checkRuns {
		if cr.id == id {
			return cr
		}
	}
	return nil
}

func (s *Sim) updateCheckRun(c *call) (int, any) {
	var in checkRunInput
	if code, v := c.decode(&in); code != 0 {
		return code, v
	}
	s.mu.Lock()
	cr := s.checkRunFromPath(c)
	if cr == nil {
		s.mu.Unlock()
		return notFound()
	}
	if cr.suite.app != c.u.app {
		s.mu.Unlock()
		return http.StatusForbidden, errBody("Invalid app_id `" + strconv.FormatInt(c.u.app.id, 10) + "` - check run can only be modified by the GitHub App that created it.")
	}
	in.HeadSHA = nil // head_sha cannot change
	copyRun := *cr
	completed, code, body := in.apply(&copyRun, s.opts.Now())
	if code != 0 {
		s.mu.Unlock()
		return code, body
	}
	*cr = copyRun
	cr.suite.updated = s.opts.Now()
	var ds []*delivery
	if completed {
		ds = s.checkRunEventLocked(c.repo, cr, c.u, "completed")
		ds = append(ds, s.suiteCompletedLocked(c.repo, cr.suite, c.u)...)
	}
	out := s.wCheckRunOf(c.repo, cr)
	s.mu.Unlock()
	s.q.push(ds...)
	return http.StatusOK, out
}

func (s *Sim) getCheckRun(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cr := s.checkRunFromPath(c)
	if cr == nil {
		return notFound()
	}
	return http.StatusOK, s.wCheckRunOf(c.repo, cr)
}

func (s *Sim) listCheckRuns(c *call, sha string) (int, any) {
	name := c.query("check_name")
	filter, ok := c.param("filter", "latest", "all")
	if !ok {
		return invalidParam("CheckRun", "filter", filter)
	}
	st, ok := c.param("status", "", "queued", "in_progress", "completed")
	if !ok {
		return invalidParam("CheckRun", "status", st)
	}
	appID, _ := strconv.ParseInt(c.query("app_id"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*checkRun
	seen := map[string]bool{}
	for i := len(c.repo.checkRuns) - 1; i >= 0; i-- { // newest first
		cr := c.repo.checkRuns[i]
		if cr.headSHA != sha || name != "" && cr.name != name || st != "" && cr.status != st || appID != 0 && cr.suite.app.id != appID {
			continue
		}
		key := strconv.FormatInt(cr.suite.app.id, 10) + "/" + cr.name
		if filter == "latest" && seen[key] {
			continue
		}
		seen[key] = true
		list = append(list, cr)
	}
	return http.StatusOK, &struct {
		TotalCount int          `json:"total_count"`
		CheckRuns  []*wCheckRun `json:"check_runs"`
	}{len(list), pageOf(c, list, func(cr *checkRun) *wCheckRun { return s.wCheckRunOf(c.repo, cr) })}
}

func (s *Sim) listCheckSuites(c *call, sha string) (int, any) {
	appID, _ := strconv.ParseInt(c.query("app_id"), 10, 64)
	name := c.query("check_name")
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*checkSuite
	for _, cs := range c.repo.suites {
		if cs.headSHA != sha || appID != 0 && cs.app.id != appID {
			continue
		}
		if name != "" {
			has := false
			for _, cr := range c.repo.checkRuns {
				has = has || cr.suite == cs && cr.name == name
			}
			if !has {
				continue
			}
		}
		list = append(list, cs)
	}
	return http.StatusOK, &struct {
		TotalCount  int            `json:"total_count"`
		CheckSuites []*wCheckSuite `json:"check_suites"`
	}{len(list), pageOf(c, list, func(cs *checkSuite) *wCheckSuite { return s.wCheckSuiteOf(c.repo, cs, true) })}
}

func (s *Sim) wCheckSuiteHookOf(r *repo, cs *checkSuite) *wCheckSuiteHook {
	w := s.wCheckSuiteOf(r, cs, true)
	h := &wCheckSuiteHook{wCheckSuite: w, LatestCheckRunsCount: *w.LatestCheckRunsCount, CheckRunsURL: w.CheckRunsURL}
	if c := cs.head; c.sha != "" {
		who := wNameEmail{Name: c.name, Email: c.email}
		h.HeadCommit = &wSuiteCommit{ID: c.sha, TreeID: c.tree, Message: c.message,
			Timestamp: c.when.Format(time.RFC3339), Author: who, Committer: who}
	}
	return h
}

// suiteEventLocked queues a check_suite event for the suite's app only
// (GitHub sends check_suite events to the app that owns the suite).
func (s *Sim) suiteEventLocked(r *repo, cs *checkSuite, sender *user, action string) []*delivery {
	return s.emitLocked(r, "check_suite", action, cs.app, true, func(inst *wInstallation) any {
		return &wCheckSuiteEvent{Action: action, CheckSuite: s.wCheckSuiteHookOf(r, cs), wEnvelope: s.envelope(r, sender, inst)}
	})
}

// suiteCompletedLocked sends check_suite completed once every run of the
// suite has completed.
func (s *Sim) suiteCompletedLocked(r *repo, cs *checkSuite, sender *user) []*delivery {
	if st, _, n := s.suiteState(r, cs); st != "completed" || n == 0 || cs.completed {
		return nil
	}
	cs.completed = true
	return s.suiteEventLocked(r, cs, sender, "completed")
}

// requestSuitesLocked does what GitHub does on a push: it creates a check
// suite for the new head for every app subscribed to check_suite and
// sends it check_suite requested.
func (s *Sim) requestSuitesLocked(r *repo, pusher *user, branch, before string, head gitCommitInfo) []*delivery {
	var ds []*delivery
	for _, a := range s.sortedApps() {
		if in := s.instLocked(a, r); a.hook == nil || in.uninstalled || !in.suspended.IsZero() || !a.hook.wants("check_suite") || s.suiteForLocked(r, a, head.sha) != nil {
			continue
		}
		now := s.opts.Now()
		cs := &checkSuite{id: s.newID(), app: a, headSHA: head.sha, headBranch: branch, before: before, head: head, created: now, updated: now}
		r.suites = append(r.suites, cs)
		ds = append(ds, s.suiteEventLocked(r, cs, pusher, "requested")...)
	}
	return ds
}

func (s *Sim) suiteForLocked(r *repo, a *app, sha string) *checkSuite {
	for _, cs := range r.suites {
		if cs.app == a && cs.headSHA == sha {
			return cs
		}
	}
	return nil
}

// RequestCheckSuiteRerun does what "Re-run all checks" does: check_suite
// rerequested to the app that owns the suite. login needs write
// permission.
func (s *Sim) RequestCheckSuiteRerun(ctx context.Context, fullName string, suiteID int64, login string) error {
	s.mu.Lock()
	r, u, err := s.actorLocked(fullName, login)
	var cs *checkSuite
	if err == nil {
		if !s.permLocked(r, u).canWrite() {
			err = fmt.Errorf("%w: %s needs write permission", ErrForbidden, u.login)
		}
		for _, c := range r.suites {
			if c.id == suiteID {
				cs = c
			}
		}
		if err == nil && cs == nil {
			err = fmt.Errorf("%w: check suite %d", ErrNotFound, suiteID)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: rerequest check suite in %s: %w", fullName, err)
	}
	cs.completed = false
	ds := s.suiteEventLocked(r, cs, u, "rerequested")
	s.mu.Unlock()
	return s.send(ctx, ds)
}
