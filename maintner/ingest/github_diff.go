package ingest

import (
	"sort"
	"time"

	"github.com/google/go-github/v60/github"
	"golang.org/x/build/maintner/maintpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/trydpb"
)

// This file compares what GitHub says with what the corpus holds and
// builds mutations carrying only the differences, field by field as
// golang.org/x/build/maintner's GitHub sync does, so that replaying the
// same state logs nothing. The caller holds the corpus read lock.

type (
	issueMut = maintpb.GithubIssueMutation
	prExt    = trydpb.GithubPullRequest
)

func basePB(m *issueMut) *maintpb.Mutation { return &maintpb.Mutation{GithubIssue: m} }

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func userPB(u *github.User) *maintpb.GithubUser {
	if u == nil || u.GetID() == 0 {
		return nil
	}
	return &maintpb.GithubUser{Id: u.GetID(), Login: u.GetLogin()}
}

func sameUser(cu *maintner.GitHubUser, u *github.User) bool {
	if u == nil || u.GetID() == 0 {
		return true // GitHub said nothing: nothing to change
	}
	return cu != nil && cu.ID == u.GetID() && cu.Login == u.GetLogin()
}

// emptyIssueMutation reports whether m changes nothing (only names the
// issue).
func emptyIssueMutation(c *issueMut) bool {
	return c.Id == 0 && c.User == nil && len(c.Assignees) == 0 && len(c.DeletedAssignees) == 0 && c.Created == nil &&
		c.Updated == nil && c.Title == "" && c.BodyChange == nil && c.Body == "" && !c.NoMilestone && c.MilestoneId == 0 &&
		c.Closed == nil && c.Locked == nil && !c.PullRequest && c.ClosedAt == nil && c.ClosedBy == nil &&
		len(c.RemoveLabel) == 0 && len(c.AddLabel) == 0 && !c.NotExist
}

// issueMutation returns the mutation that brings ci (nil for an issue
// the corpus does not have) to gi's state; it changes nothing when
// emptyIssueMutation says so.
func (g *GitHub) issueMutation(ci *maintner.GitHubIssue, owner, repo string, gi *github.Issue) *issueMut {
	m := &issueMut{Owner: owner, Repo: repo, Number: int32(gi.GetNumber())}
	closed := gi.GetState() == "closed"
	if ci == nil {
		m.Id = gi.GetID()
		m.User = userPB(gi.GetUser())
		m.Created = ts(gi.GetCreatedAt().Time)
		m.Updated = ts(gi.GetUpdatedAt().Time)
		m.Title = gi.GetTitle()
		m.Body = gi.GetBody()
		m.Closed = &maintpb.BoolChange{Val: closed}
		m.Locked = &maintpb.BoolChange{Val: gi.GetLocked()}
		m.PullRequest = gi.IsPullRequest()
		if t := gi.GetClosedAt(); !t.IsZero() {
			m.ClosedAt = ts(t.Time)
		}
		m.ClosedBy = userPB(gi.GetClosedBy())
		for _, a := range gi.Assignees {
			if u := userPB(a); u != nil {
				m.Assignees = append(m.Assignees, u)
			}
		}
		for _, l := range gi.Labels {
			if l.GetID() != 0 {
				m.AddLabel = append(m.AddLabel, &maintpb.GithubLabel{Id: l.GetID(), Name: l.GetName()})
			}
		}
		if ms := gi.GetMilestone(); ms != nil && ms.GetID() != 0 {
			m.MilestoneId, m.MilestoneNum, m.MilestoneTitle = ms.GetID(), int64(ms.GetNumber()), ms.GetTitle()
		}
		return m
	}
	if id := gi.GetID(); id != 0 && id != ci.ID {
		m.Id = id
	}
	if !sameUser(ci.User, gi.GetUser()) {
		m.User = userPB(gi.GetUser())
	}
	if t := gi.GetUpdatedAt(); !t.IsZero() && maintner.TimeOf(t.Time) != ci.Updated {
		m.Updated = ts(t.Time)
	}
	if t := gi.GetTitle(); t != "" && t != ci.Title {
		m.Title = t
	}
	if body, err := g.c.Text(ci.Body); err == nil && body != gi.GetBody() {
		m.BodyChange = &maintpb.StringChange{Val: gi.GetBody()}
	}
	if closed != ci.Closed {
		m.Closed = &maintpb.BoolChange{Val: closed}
	}
	if gi.Locked != nil && gi.GetLocked() != ci.Locked {
		m.Locked = &maintpb.BoolChange{Val: gi.GetLocked()}
	}
	if gi.IsPullRequest() && !ci.PullRequest {
		m.PullRequest = true
	}
	if t := gi.GetClosedAt(); !t.IsZero() && maintner.TimeOf(t.Time) != ci.ClosedAt {
		m.ClosedAt = ts(t.Time)
	}
	if u := gi.GetClosedBy(); u != nil && !sameUser(ci.ClosedBy, u) {
		m.ClosedBy = userPB(u)
	}
	// Assignees.
	want := map[int64]bool{}
	for _, a := range gi.Assignees {
		if a.GetID() == 0 {
			continue
		}
		want[a.GetID()] = true
		found := false
		for _, cu := range ci.Assignees {
			if cu.ID == a.GetID() {
				found = true
			}
		}
		if !found {
			m.Assignees = append(m.Assignees, userPB(a))
		}
	}
	for _, cu := range ci.Assignees {
		if !want[cu.ID] {
			m.DeletedAssignees = append(m.DeletedAssignees, cu.ID)
		}
	}
	// Labels.
	wantL := map[int64]bool{}
	for _, l := range gi.Labels {
		if l.GetID() == 0 {
			continue
		}
		wantL[l.GetID()] = true
		found := false
		for _, cl := range ci.Labels {
			if cl.ID == l.GetID() && cl.Name == l.GetName() {
				found = true
			}
		}
		if !found {
			m.AddLabel = append(m.AddLabel, &maintpb.GithubLabel{Id: l.GetID(), Name: l.GetName()})
		}
	}
	for _, cl := range ci.Labels {
		if !wantL[cl.ID] {
			m.RemoveLabel = append(m.RemoveLabel, cl.ID)
		}
	}
	// Milestone.
	switch ms := gi.GetMilestone(); {
	case (ms == nil || ms.GetID() == 0) && ci.Milestone != nil:
		m.NoMilestone = true
	case ms != nil && ms.GetID() != 0 && (ci.Milestone == nil || ci.Milestone.ID != ms.GetID() || ci.Milestone.Title != ms.GetTitle() || ci.Milestone.Number != int32(ms.GetNumber())):
		m.MilestoneId, m.MilestoneNum, m.MilestoneTitle = ms.GetID(), int64(ms.GetNumber()), ms.GetTitle()
	}
	return m
}

// commentMutations returns new comments in full and edited ones (update
// time or body changed) as edits. Comments are sorted by ID.
func (g *GitHub) commentMutations(ci *maintner.GitHubIssue, comments []*github.IssueComment) []*maintpb.GithubIssueCommentMutation {
	var out []*maintpb.GithubIssueCommentMutation
	for _, c := range comments {
		id := c.GetID()
		if id == 0 {
			continue
		}
		var cc *maintner.GitHubComment
		if ci != nil {
			i := sort.Search(len(ci.Comments), func(i int) bool { return ci.Comments[i].ID >= id })
			if i < len(ci.Comments) && ci.Comments[i].ID == id {
				cc = &ci.Comments[i]
			}
		}
		if cc == nil {
			out = append(out, &maintpb.GithubIssueCommentMutation{Id: id, User: userPB(c.GetUser()), Body: c.GetBody(),
				Created: ts(c.GetCreatedAt().Time), Updated: ts(c.GetUpdatedAt().Time)})
			continue
		}
		body, err := g.c.Text(cc.Body)
		upd := c.GetUpdatedAt()
		if err == nil && body == c.GetBody() && (upd.IsZero() || maintner.TimeOf(upd.Time) == cc.Updated) {
			continue
		}
		e := &maintpb.GithubIssueCommentMutation{Id: id, Body: c.GetBody()}
		if !upd.IsZero() {
			e.Updated = ts(upd.Time)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// eventMutations returns the events the corpus does not have (events
// never change).
func eventMutations(ci *maintner.GitHubIssue, owner, repo string, events []*github.IssueEvent) []*maintpb.GithubIssueEvent {
	var out []*maintpb.GithubIssueEvent
	for _, e := range events {
		id := e.GetID()
		if id == 0 {
			continue
		}
		if ci != nil {
			i := sort.Search(len(ci.Events), func(i int) bool { return ci.Events[i].ID >= id })
			if i < len(ci.Events) && ci.Events[i].ID == id {
				continue
			}
		}
		pe := &maintpb.GithubIssueEvent{Id: id, EventType: e.GetEvent(), ActorId: e.GetActor().GetID()}
		if t := e.GetCreatedAt(); !t.IsZero() {
			pe.Created = ts(t.Time)
		}
		if l := e.GetLabel(); l != nil {
			pe.Label = &maintpb.GithubLabel{Name: l.GetName()}
		}
		if ms := e.GetMilestone(); ms != nil {
			pe.Milestone = &maintpb.GithubMilestone{Title: ms.GetTitle()}
		}
		if a := e.GetAssignee(); a != nil {
			pe.AssigneeId = a.GetID()
		}
		if a := e.GetAssigner(); a != nil {
			pe.AssignerId = a.GetID()
		}
		if c := e.GetCommitID(); c != "" {
			pe.Commit = &maintpb.GithubCommit{Owner: owner, Repo: repo, CommitId: c}
		}
		if rn := e.GetRename(); rn != nil {
			pe.RenameFrom, pe.RenameTo = rn.GetFrom(), rn.GetTo()
		}
		if u := e.GetRequestedReviewer(); u != nil {
			pe.ReviewerId = u.GetID()
		}
		if u := e.GetReviewRequester(); u != nil {
			pe.ReviewRequesterId = u.GetID()
		}
		out = append(out, pe)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// reviewMutations returns new reviews and reviews whose state or body
// changed (dismissed, edited), in full: the corpus replaces a review.
func (g *GitHub) reviewMutations(ci *maintner.GitHubIssue, reviews []*github.PullRequestReview) []*maintpb.GithubReview {
	var out []*maintpb.GithubReview
	for _, rv := range reviews {
		id := rv.GetID()
		if id == 0 {
			continue
		}
		if ci != nil {
			i := sort.Search(len(ci.Reviews), func(i int) bool { return ci.Reviews[i].ID >= id })
			if i < len(ci.Reviews) && ci.Reviews[i].ID == id {
				cr := &ci.Reviews[i]
				body, err := g.c.Text(cr.Body)
				if err == nil && body == rv.GetBody() && cr.State == rv.GetState() && cr.CommitID == rv.GetCommitID() &&
					(cr.Actor == nil) == (rv.GetUser().GetID() == 0) {
					continue
				}
			}
		}
		pr := &maintpb.GithubReview{Id: id, ActorId: rv.GetUser().GetID(), Body: rv.GetBody(), State: rv.GetState(),
			CommitId: rv.GetCommitID(), ActorAssociation: rv.GetAuthorAssociation()}
		if t := rv.GetSubmittedAt(); !t.IsZero() {
			pr.Created = ts(t.Time)
		}
		out = append(out, pr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// prMutation returns tryd's pull request extension with the fields that
// differ from the corpus, or nil.
func prMutation(ci *maintner.GitHubIssue, owner, repo string, pr *github.PullRequest) *prExt {
	var cp *maintner.GitHubPullRequest
	if ci != nil {
		cp = ci.PR
	}
	if cp == nil {
		cp = &maintner.GitHubPullRequest{}
	}
	p := &prExt{Owner: owner, Repo: repo, Number: int32(pr.GetNumber())}
	changed := false
	setHash := func(dst *string, have maintner.GitHash, s string) {
		if h, err := maintner.ParseGitHash(s); err == nil && h != have {
			*dst, changed = s, true
		}
	}
	setStr := func(dst *string, have, s string) {
		if s != "" && s != have {
			*dst, changed = s, true
		}
	}
	setHash(&p.HeadSha, cp.HeadSHA, pr.GetHead().GetSHA())
	setStr(&p.HeadRef, cp.HeadRef, pr.GetHead().GetRef())
	setStr(&p.HeadRepo, cp.HeadRepo, pr.GetHead().GetRepo().GetFullName())
	setHash(&p.BaseSha, cp.BaseSHA, pr.GetBase().GetSHA())
	setStr(&p.BaseRef, cp.BaseRef, pr.GetBase().GetRef())
	setHash(&p.MergeCommitSha, cp.MergeCommitSHA, pr.GetMergeCommitSHA())
	if ci == nil || ci.PR == nil || pr.GetMerged() != cp.Merged {
		p.Merged, changed = &trydpb.BoolWrap{Val: pr.GetMerged()}, true
	}
	if ci == nil || ci.PR == nil || pr.GetDraft() != cp.Draft {
		p.Draft, changed = &trydpb.BoolWrap{Val: pr.GetDraft()}, true
	}
	if t := pr.GetMergedAt(); !t.IsZero() && maintner.TimeOf(t.Time) != cp.MergedAt {
		p.MergedAt, changed = ts(t.Time), true
	}
	if !changed {
		return nil
	}
	if t := pr.GetUpdatedAt(); !t.IsZero() {
		p.Updated = ts(t.Time)
	}
	return p
}

// repoMutation returns the changes to a repository's metadata, labels
// and milestones, or nil.
func repoMutation(cr *maintner.GitHubRepo, owner, repo string, gr *github.Repository, labels []*github.Label, milestones []*github.Milestone) *maintner.Mutation {
	out := &maintner.Mutation{}
	if cr == nil || cr.ID != gr.GetID() || cr.DefaultBranch != gr.GetDefaultBranch() || cr.Private != gr.GetPrivate() {
		out.Ext = &trydpb.Ext{GithubRepo: &trydpb.GithubRepo{Owner: owner, Repo: repo, Id: gr.GetID(),
			DefaultBranch: gr.GetDefaultBranch(), Private: gr.GetPrivate()}}
	}
	gm := &maintpb.GithubMutation{Owner: owner, Repo: repo}
	have := map[int64]*maintner.GitHubLabel{}
	haveM := map[int64]*maintner.GitHubMilestone{}
	if cr != nil {
		for _, l := range cr.Labels() {
			have[l.ID] = l
		}
		for _, m := range cr.Milestones() {
			haveM[m.ID] = m
		}
	}
	for _, l := range labels {
		if l.GetID() == 0 {
			continue
		}
		if h := have[l.GetID()]; h == nil || h.Name != l.GetName() {
			gm.Labels = append(gm.Labels, &maintpb.GithubLabel{Id: l.GetID(), Name: l.GetName()})
		}
	}
	for _, m := range milestones {
		if m.GetID() == 0 {
			continue
		}
		closed := m.GetState() == "closed"
		if h := haveM[m.GetID()]; h == nil || h.Title != m.GetTitle() || h.Closed != closed || h.Number != int32(m.GetNumber()) {
			gm.Milestones = append(gm.Milestones, &maintpb.GithubMilestone{Id: m.GetID(), Title: m.GetTitle(),
				Closed: &maintpb.BoolChange{Val: closed}, Number: int64(m.GetNumber())})
		}
	}
	if len(gm.Labels) > 0 || len(gm.Milestones) > 0 {
		out.Base = &maintpb.Mutation{Github: gm}
	}
	if out.Base == nil && out.Ext == nil {
		return nil
	}
	return out
}

// statusMutations returns the commit statuses on sha (latest per
// context) that differ from the corpus's.
func statusMutations(cr *maintner.GitHubRepo, owner, repo, sha string, statuses []*github.RepoStatus) []*trydpb.GithubStatus {
	h, err := maintner.ParseGitHash(sha)
	if err != nil {
		return nil
	}
	var have []*maintner.GitHubStatus
	if cr != nil {
		have = cr.Statuses(h)
	}
	var out []*trydpb.GithubStatus
	for _, st := range statuses {
		if st.GetContext() == "" {
			continue
		}
		var cs *maintner.GitHubStatus
		for _, x := range have {
			if x.Context == st.GetContext() {
				cs = x
			}
		}
		if cs != nil && cs.ID == st.GetID() && cs.State == st.GetState() && cs.Description == st.GetDescription() &&
			cs.TargetURL == st.GetTargetURL() && cs.Updated == maintner.TimeOf(st.GetUpdatedAt().Time) {
			continue
		}
		ps := &trydpb.GithubStatus{Owner: owner, Repo: repo, Sha: sha, Context: st.GetContext(), State: st.GetState(),
			Description: st.GetDescription(), TargetUrl: st.GetTargetURL(), Id: st.GetID(), CreatorId: st.GetCreator().GetID()}
		if t := st.GetCreatedAt(); !t.IsZero() {
			ps.Created = ts(t.Time)
		}
		if t := st.GetUpdatedAt(); !t.IsZero() {
			ps.Updated = ts(t.Time)
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Context < out[j].Context })
	return out
}

// checkRunMutations returns the check runs that differ from the
// corpus's.
func checkRunMutations(cr *maintner.GitHubRepo, owner, repo string, runs []*github.CheckRun) []*trydpb.GithubCheckRun {
	var out []*trydpb.GithubCheckRun
	for _, run := range runs {
		if run.GetID() == 0 {
			continue
		}
		h, err := maintner.ParseGitHash(run.GetHeadSHA())
		if err != nil {
			continue
		}
		var have *maintner.GitHubCheckRun
		if cr != nil {
			for _, x := range cr.CheckRuns(h) {
				if x.ID == run.GetID() {
					have = x
				}
			}
		}
		if have != nil && have.Name == run.GetName() && have.Status == run.GetStatus() && have.Conclusion == run.GetConclusion() &&
			have.DetailsURL == run.GetDetailsURL() && have.ExternalID == run.GetExternalID() &&
			have.Started == maintner.TimeOf(run.GetStartedAt().Time) && have.Completed == maintner.TimeOf(run.GetCompletedAt().Time) {
			continue
		}
		pc := &trydpb.GithubCheckRun{Owner: owner, Repo: repo, Id: run.GetID(), HeadSha: run.GetHeadSHA(), Name: run.GetName(),
			Status: run.GetStatus(), Conclusion: run.GetConclusion(), DetailsUrl: run.GetDetailsURL(), ExternalId: run.GetExternalID(),
			AppId: run.GetApp().GetID()}
		if t := run.GetStartedAt(); !t.IsZero() {
			pc.Started = ts(t.Time)
		}
		if t := run.GetCompletedAt(); !t.IsZero() {
			pc.Completed = ts(t.Time)
		}
		out = append(out, pc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}
