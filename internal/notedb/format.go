package notedb

import (
	"fmt"
	"strconv"
	"strings"
)

// FormatOptions select how Format lays out a commit message.
type FormatOptions struct {
	// Legacy writes go-review-style history from before late 2021: no
	// approval UUIDs and no Copied-Label footers.
	Legacy bool
}

// Format returns u as a meta commit message laid out like Gerrit's
// ChangeUpdate: heading, optional change message, a blank line, then the
// footers in ChangeUpdate's order. Only fields of the update are written,
// not Footers (the raw parse result). The heading defaults to
// "Create change" (Change-id set), "Create patch set N" (Commit set) or
// "Update patch set N".
func Format(u *Update) string { return FormatWith(u, FormatOptions{}) }

// FormatWith is Format with options.
func FormatWith(u *Update, opts FormatOptions) string {
	var b strings.Builder
	heading := u.Heading
	if heading == "" {
		switch {
		case u.ChangeID != "":
			heading = "Create change"
		case u.Commit != "":
			heading = "Create patch set " + strconv.Itoa(u.PatchSet)
		default:
			heading = "Update patch set " + strconv.Itoa(u.PatchSet)
		}
	}
	b.WriteString(strings.ReplaceAll(sanitize(heading), "\r", " "))
	if u.Body != "" {
		b.WriteString("\n\n")
		b.WriteString(u.Body)
	}
	b.WriteString("\n\n")

	footer := func(key, value string) {
		b.WriteString(key)
		b.WriteString(": ")
		b.WriteString(sanitize(value))
		b.WriteByte('\n')
	}
	ps := strconv.Itoa(u.PatchSet)
	if u.PatchSetState != PatchSetPublished {
		ps += " (" + string(u.PatchSetState) + ")"
	}
	footer(KeyPatchSet, ps)
	if u.Current {
		footer(KeyCurrent, "true")
	}
	if u.PatchSetDescription != nil {
		footer(KeyPatchSetDescription, *u.PatchSetDescription)
	}
	if u.ChangeID != "" {
		footer(KeyChangeID, u.ChangeID)
	}
	if u.Subject != nil {
		footer(KeySubject, *u.Subject)
	}
	if u.Branch != nil {
		footer(KeyBranch, *u.Branch)
	}
	if u.Status != nil {
		footer(KeyStatus, *u.Status)
	}
	if u.Topic != nil {
		footer(KeyTopic, *u.Topic)
	}
	if u.Commit != "" {
		footer(KeyCommit, u.Commit)
	}
	if u.HasHashtags {
		footer(KeyHashtags, strings.Join(u.Hashtags, ","))
	}
	for _, kv := range u.CustomKeyedValues {
		footer(KeyCustomKeyedValue, kv)
	}
	if u.Tag != nil {
		footer(KeyTag, *u.Tag)
	}
	if u.Groups != nil {
		footer(KeyGroups, strings.Join(u.Groups, ","))
	}
	for _, r := range u.Reviewers {
		if r.Address == "" {
			footer(reviewerKey(r.State), r.Ident.String())
		}
	}
	for _, r := range u.Reviewers {
		if r.Address != "" {
			footer(emailKey(r.State), r.Address)
		}
	}
	for _, v := range u.Labels {
		footer(KeyLabel, formatVote(u, v, opts))
	}
	if !opts.Legacy {
		for _, v := range u.CopiedLabels {
			footer(KeyCopiedLabel, formatCopied(v))
		}
	}
	if u.SubmissionID != nil {
		footer(KeySubmissionID, *u.SubmissionID)
	}
	for _, s := range u.SubmittedWith {
		footer(KeySubmittedWith, s)
	}
	if u.RealUser != nil {
		footer(KeyRealUser, u.RealUser.String())
	}
	if u.Private != nil {
		footer(KeyPrivate, strconv.FormatBool(*u.Private))
	}
	if u.WorkInProgress != nil {
		footer(KeyWorkInProgress, strconv.FormatBool(*u.WorkInProgress))
	}
	if u.RevertOf != 0 {
		footer(KeyRevertOf, strconv.Itoa(u.RevertOf))
	}
	if u.CherryPickOf != nil {
		footer(KeyCherryPickOf, *u.CherryPickOf)
	}
	for _, a := range u.Attention {
		footer(KeyAttention, a)
	}
	return b.String()
}

// sanitize collapses CR, LF and NUL to a space, as Gerrit does for footer
// values (ChangeNoteUtil.sanitizeFooter).
func sanitize(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ", "\x00", " ").Replace(s)
}

func reviewerKey(s ReviewerState) string {
	switch s {
	case StateCC:
		return KeyCC
	case StateRemoved:
		return KeyRemoved
	}
	return KeyReviewer
}

func emailKey(s ReviewerState) string { return reviewerKey(s) + "-email" }

// FormatVoteValue writes a vote as Gerrit's LabelVote.formatWithEquals
// does: "=+N" for positive values, "=0", "=-N".
func FormatVoteValue(label string, value int) string {
	if value > 0 {
		return fmt.Sprintf("%s=+%d", label, value)
	}
	return fmt.Sprintf("%s=%d", label, value)
}

func formatVote(u *Update, v Vote, opts FormatOptions) string {
	var s string
	if v.Removed {
		s = "-" + v.Label
	} else {
		s = FormatVoteValue(v.Label, v.Value)
		if v.UUID != "" && !opts.Legacy {
			s += ", " + v.UUID
		}
	}
	if v.Voter != nil && v.Voter.Email != u.Author.Email {
		s += " " + v.Voter.String()
	}
	return s
}

func formatCopied(v Vote) string {
	var s string
	if v.Removed {
		s = "-" + v.Label
	} else {
		s = FormatVoteValue(v.Label, v.Value)
		if v.UUID != "" {
			s += ", " + v.UUID
		}
	}
	if v.Voter != nil {
		s += " " + v.Voter.String()
	}
	if v.RealVoter != nil {
		s += "," + v.RealVoter.String()
	}
	if v.HasTag && !v.Removed {
		s += ":\"" + v.Tag + "\""
	}
	return s
}
