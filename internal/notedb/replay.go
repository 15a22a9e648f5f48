package notedb

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Change is the state of a change derived from its meta history, as
// Gerrit's ChangeNotesParser computes it.
type Change struct {
	ChangeID string
	Subject  string
	Branch   string
	// Status is StatusNew, StatusMerged, StatusAbandoned or StatusDraft.
	Status   string
	Topic    string
	Hashtags []string
	// Owner is the account that created the change (the root commit's
	// actor).
	Owner   int
	Created time.Time
	Updated time.Time
	// MetaSHA is the SHA of the last applied meta commit.
	MetaSHA        string
	Private        bool
	WorkInProgress bool
	SubmissionID   string
	// Submitted and Submitter are set by the update that made the change
	// merged (zero otherwise).
	Submitted    time.Time
	Submitter    int
	RevertOf     int
	CherryPickOf string
	// PatchSets maps patch set number to patch set.
	PatchSets map[int]*PatchSet
	// Messages are the change messages, oldest first.
	Messages []Message
	// Reviewers holds each account's latest reviewer state.
	Reviewers map[int]ReviewerState
	// Approvals maps patch set → account → label → approval, including
	// zeros (explicit 0 votes and removals).
	Approvals map[int]map[int]map[string]Approval

	// currents lists, oldest first, the patch sets made current by a
	// Commit: or Current: true footer.
	currents []int
	applied  int
}

// PatchSet is one patch set of a change.
type PatchSet struct {
	Number int
	// Commit is the patch set's commit SHA.
	Commit      string
	Uploader    int
	Created     time.Time
	Groups      []string
	Description string
	State       PatchSetState
}

// Approval is one vote.
type Approval struct {
	Label       string
	Value       int
	Account     int
	RealAccount int
	PatchSet    int
	Granted     time.Time
	Tag         string
	UUID        string
	// Copied marks a vote copied from an earlier patch set.
	Copied bool
	// PostSubmit marks a vote cast after the change was merged.
	PostSubmit bool
}

// Message is one change message; its ID is the meta commit SHA.
type Message struct {
	ID          string
	Author      int
	RealAuthor  int
	Time        time.Time
	PatchSet    int
	Tag         string
	Body        string
	MetaCommit  string
	ServerWrote bool
}

// NewChange returns an empty change ready for Apply.
func NewChange() *Change {
	return &Change{
		PatchSets: map[int]*PatchSet{},
		Reviewers: map[int]ReviewerState{},
		Approvals: map[int]map[int]map[string]Approval{},
	}
}

// Replay applies updates oldest first to a new Change.
func Replay(updates []*Update) (*Change, error) {
	c := NewChange()
	for _, u := range updates {
		if err := c.Apply(u); err != nil {
			return nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks that the history so far names a Change-id, branch and
// subject and has a current patch set, as Gerrit requires of a complete
// history.
func (c *Change) Validate() error {
	var missing []string
	if c.ChangeID == "" {
		missing = append(missing, KeyChangeID)
	}
	if c.Branch == "" {
		missing = append(missing, KeyBranch)
	}
	if c.CurrentPatchSet() == 0 {
		missing = append(missing, "a patch set ("+KeyCommit+")")
	}
	if len(missing) > 0 {
		return fmt.Errorf("notedb: change %s: %w: history lacks %s", c.MetaSHA, ErrInvalid, strings.Join(missing, ", "))
	}
	return nil
}

// Apply applies one update, the next newer commit of the chain, so a
// follower can maintain a Change incrementally. Replaying oldest first with
// "last write wins" is equivalent to Gerrit's newest-first "first seen
// wins".
func (c *Change) Apply(u *Update) error {
	if u == nil {
		return errors.New("notedb: apply: nil update")
	}
	if u.PatchSet <= 0 {
		return fmt.Errorf("notedb: apply %s: %w: no patch set", u.SHA, ErrInvalid)
	}
	if c.applied == 0 {
		c.Owner = u.Account
		c.Created = u.Time
	}
	c.applied++
	c.MetaSHA = u.SHA
	if u.Time.After(c.Updated) {
		c.Updated = u.Time
	}
	ps := u.PatchSet

	if u.ChangeID != "" {
		c.ChangeID = u.ChangeID
	}
	if u.Subject != nil {
		c.Subject = *u.Subject
	}
	if u.Branch != nil {
		c.Branch = *u.Branch
	}
	if u.Status != nil {
		if *u.Status == StatusMerged && c.Status != StatusMerged {
			c.Submitted, c.Submitter = u.Time, u.Account
		}
		c.Status = *u.Status
	} else if c.Status == "" {
		c.Status = StatusNew
	}
	if u.Topic != nil {
		c.Topic = *u.Topic
	}
	if u.HasHashtags {
		c.Hashtags = append([]string{}, u.Hashtags...)
	}
	if u.Private != nil {
		c.Private = *u.Private
	}
	if u.WorkInProgress != nil {
		c.WorkInProgress = *u.WorkInProgress
	}
	if u.SubmissionID != nil {
		c.SubmissionID = *u.SubmissionID
	}
	if u.RevertOf != 0 {
		c.RevertOf = u.RevertOf
	}
	if u.CherryPickOf != nil {
		c.CherryPickOf = *u.CherryPickOf
	}

	p := c.PatchSets[ps]
	if u.Commit != "" {
		if p == nil {
			p = &PatchSet{Number: ps}
			c.PatchSets[ps] = p
		}
		p.Commit = u.Commit
		p.Uploader = u.Account
		p.Created = u.Time
		c.currents = append(c.currents, ps)
	} else if u.Current {
		c.currents = append(c.currents, ps)
	}
	if p != nil {
		if u.Groups != nil {
			p.Groups = append([]string(nil), u.Groups...)
		}
		if u.PatchSetDescription != nil {
			p.Description = *u.PatchSetDescription
		}
	}
	if u.PatchSetState != PatchSetPublished {
		if p == nil {
			p = &PatchSet{Number: ps}
			c.PatchSets[ps] = p
		}
		p.State = u.PatchSetState
	}

	for _, r := range u.Reviewers {
		if r.Address != "" {
			continue
		}
		id, ok := r.Ident.Account()
		if !ok {
			continue
		}
		c.Reviewers[id] = r.State
		if r.State == StateRemoved {
			// Earlier votes of a removed reviewer count as 0.
			for _, byAcct := range c.Approvals {
				for label, a := range byAcct[id] {
					a.Value = 0
					byAcct[id][label] = a
				}
			}
		}
	}

	tag := ""
	if u.Tag != nil {
		tag = *u.Tag
	}
	real := 0
	if u.RealUser != nil {
		real, _ = u.RealUser.Account()
	}
	for _, v := range u.Labels {
		voter := u.Account
		if v.Voter != nil {
			voter, _ = v.Voter.Account()
		}
		if voter == 0 {
			return fmt.Errorf("notedb: apply %s: %w: vote %s has no voter", u.SHA, ErrInvalid, v.Label)
		}
		c.setApproval(ps, Approval{
			Label: v.Label, Value: v.Value, Account: voter, RealAccount: real,
			PatchSet: ps, Granted: u.Time, Tag: tag, UUID: v.UUID,
			PostSubmit: c.Status == StatusMerged && (u.Status == nil || *u.Status != StatusMerged),
		})
	}
	for _, v := range u.CopiedLabels {
		voter, _ := v.Voter.Account()
		ra := 0
		if v.RealVoter != nil {
			ra, _ = v.RealVoter.Account()
		}
		c.setApproval(ps, Approval{
			Label: v.Label, Value: v.Value, Account: voter, RealAccount: ra,
			PatchSet: ps, Granted: u.Time, Tag: v.Tag, UUID: v.UUID, Copied: true,
		})
	}

	if u.Body != "" {
		c.Messages = append(c.Messages, Message{
			ID: u.SHA, Author: u.Account, RealAuthor: real, Time: u.Time,
			PatchSet: ps, Tag: tag, Body: u.Body, MetaCommit: u.SHA,
			ServerWrote: u.Account == 0,
		})
	}
	return nil
}

func (c *Change) setApproval(ps int, a Approval) {
	byAcct := c.Approvals[ps]
	if byAcct == nil {
		byAcct = map[int]map[string]Approval{}
		c.Approvals[ps] = byAcct
	}
	labels := byAcct[a.Account]
	if labels == nil {
		labels = map[string]Approval{}
		byAcct[a.Account] = labels
	}
	labels[a.Label] = a
}

// CurrentPatchSet returns the number of the current patch set: the newest
// one made current by Commit: or Current: true that is not deleted; 0 if
// none.
func (c *Change) CurrentPatchSet() int {
	for i := len(c.currents) - 1; i >= 0; i-- {
		ps := c.currents[i]
		if p := c.PatchSets[ps]; p != nil && p.State == PatchSetDeleted {
			continue
		}
		return ps
	}
	return 0
}

// Current returns the current patch set, or nil.
func (c *Change) Current() *PatchSet { return c.PatchSets[c.CurrentPatchSet()] }

// Votes returns the non-zero votes on patch set ps, sorted by label then
// account, leaving out accounts whose final reviewer state is removed.
func (c *Change) Votes(ps int) []Approval {
	var out []Approval
	for acct, labels := range c.Approvals[ps] {
		if c.Reviewers[acct] == StateRemoved {
			continue
		}
		for _, a := range labels {
			if a.Value != 0 {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b Approval) int {
		if c := strings.Compare(a.Label, b.Label); c != 0 {
			return c
		}
		return cmp.Compare(a.Account, b.Account)
	})
	return out
}

// CurrentVotes returns the non-zero votes on the current patch set.
func (c *Change) CurrentVotes() []Approval { return c.Votes(c.CurrentPatchSet()) }

// PatchSetNumbers returns the existing (not deleted) patch set numbers in
// ascending order.
func (c *Change) PatchSetNumbers() []int {
	var out []int
	for n, p := range c.PatchSets {
		if p.State != PatchSetDeleted && p.Commit != "" {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}
