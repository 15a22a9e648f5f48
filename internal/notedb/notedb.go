// Package notedb owns Gerrit's NoteDb change-metadata format: the commit
// messages of the refs/changes/NN/CL/meta chain, from which a change's
// patch sets, votes, messages and status are derived. It parses one meta
// commit into an Update (ParseCommit), replays a chain of updates into a
// Change the way Gerrit's ChangeNotesParser does (Replay, Change.Apply),
// and writes Updates back as commit messages laid out exactly as Gerrit's
// ChangeUpdate does (Format, FormatWith). ParseRawCommit reads a git commit
// object (git cat-file output, maintner's GitCommit.Raw) into a Commit, and
// PatchSetRef, MetaRef and ParseChangeRef name the refs/changes/ refs.
//
// Wire format (see ../shared/docs/gerrit-notedb.md):
//
//	<subject line>
//
//	[<change message>
//
//	]<Key>: <value>
//	...
//
// The footers are the last paragraph of the message, read like JGit's footer
// parser (keys of letters, digits and '-', case-insensitive). The commit
// author is "Gerrit User <id> <<id>@<serverId>>"; an author equal to the
// committer (the server identity) means no account acted. The package is
// pure Go: it never runs git, so both the Gerrit simulator (writing) and
// maintner (reading mirrored meta refs) use it.
package notedb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error about a malformed meta commit, so that
// callers can tell bad data (skip the change, report it) from I/O failures.
var ErrInvalid = errors.New("invalid NoteDb commit")

// Footer keys, as Gerrit's ChangeNoteFooters spells them when writing.
// Parsing compares keys case-insensitively.
const (
	KeyPatchSet            = "Patch-set"
	KeyCurrent             = "Current"
	KeyPatchSetDescription = "Patch-set-description"
	KeyChangeID            = "Change-id"
	KeySubject             = "Subject"
	KeyBranch              = "Branch"
	KeyStatus              = "Status"
	KeyTopic               = "Topic"
	KeyCommit              = "Commit"
	KeyHashtags            = "Hashtags"
	KeyCustomKeyedValue    = "Custom-Keyed-Value"
	KeyTag                 = "Tag"
	KeyGroups              = "Groups"
	KeyReviewer            = "Reviewer"
	KeyCC                  = "CC"
	KeyRemoved             = "Removed"
	KeyReviewerEmail       = "Reviewer-email"
	KeyCCEmail             = "CC-email"
	KeyRemovedEmail        = "Removed-email"
	KeyLabel               = "Label"
	KeyCopiedLabel         = "Copied-Label"
	KeySubmissionID        = "Submission-id"
	KeySubmittedWith       = "Submitted-with"
	KeyRealUser            = "Real-user"
	KeyPrivate             = "Private"
	KeyWorkInProgress      = "Work-in-progress"
	KeyRevertOf            = "Revert-of"
	KeyCherryPickOf        = "Cherry-pick-of"
	KeyAttention           = "Attention"
)

// Status values of the Status footer (lower case on the wire).
const (
	StatusNew       = "new"
	StatusMerged    = "merged"
	StatusAbandoned = "abandoned"
	// StatusDraft appears only in old history.
	StatusDraft = "draft"
)

// EmptyTree is the SHA-1 of git's empty tree, the tree of a meta commit that
// carries no inline comments.
const EmptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// Ident is a git person identity (name and email, no time).
type Ident struct {
	Name  string
	Email string
}

// AccountIdent returns the ident Gerrit writes for an account:
// "Gerrit User <id> <<id>@<serverId>>".
func AccountIdent(account int, serverID string) Ident {
	return Ident{Name: fmt.Sprintf("Gerrit User %d", account), Email: fmt.Sprintf("%d@%s", account, serverID)}
}

// String formats the ident as "Name <email>".
func (id Ident) String() string { return id.Name + " <" + id.Email + ">" }

// Account returns the account id of an ident whose email is
// "<id>@<serverId>", and false for any other email (the server's own).
func (id Ident) Account() (int, bool) {
	n, _, ok := strings.Cut(id.Email, "@")
	if !ok || n == "" || len(n) > 10 {
		return 0, false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(n)
	if err != nil || v <= 0 {
		return 0, false
	}
	return v, true
}

// ServerID returns the part of the email after '@'.
func (id Ident) ServerID() string {
	_, s, _ := strings.Cut(id.Email, "@")
	return s
}

// Commit is one meta commit as read from git: what ParseCommit needs.
type Commit struct {
	// SHA is the commit's hex id; it becomes the change message id.
	SHA       string
	Message   string
	Author    Ident
	Committer Ident
	// Time is the commit time (Gerrit writes author time == commit time).
	Time time.Time
}

// PatchSetState is the optional state after a Patch-set number.
type PatchSetState string

// Patch-set states.
const (
	PatchSetPublished PatchSetState = ""
	PatchSetDeleted   PatchSetState = "deleted"
	PatchSetDraft     PatchSetState = "draft"
)

// ReviewerState is the state a Reviewer/CC/Removed footer gives an account.
type ReviewerState string

// Reviewer states, named like the footer keys.
const (
	StateReviewer ReviewerState = "REVIEWER"
	StateCC       ReviewerState = "CC"
	StateRemoved  ReviewerState = "REMOVED"
)

// ReviewerUpdate is one Reviewer, CC or Removed footer. For the *-email
// footers, Address is set and Ident is zero.
type ReviewerUpdate struct {
	State   ReviewerState
	Ident   Ident
	Address string
}

// Vote is one Label or Copied-Label footer.
type Vote struct {
	Label string
	// Value is the vote; 0 for a removal.
	Value int
	// Removed marks "-Name": the vote is deleted.
	Removed bool
	// UUID is the approval's 40-hex id (modern form), or "".
	UUID string
	// Voter is the account voting; nil means the commit author. Mandatory
	// for Copied-Label.
	Voter *Ident
	// RealVoter is the real user behind Voter (Copied-Label only).
	RealVoter *Ident
	// Tag is the copied approval's tag (Copied-Label only; HasTag tells an
	// empty tag from none).
	Tag    string
	HasTag bool
}

// Footer is one raw footer line.
type Footer struct {
	Key   string
	Value string
}

// Update is everything one meta commit says. Pointer and Has* fields tell
// "absent" from "set to the zero value", which matters for replay (an empty
// Topic clears the topic; an absent one leaves it).
type Update struct {
	// From the commit.
	SHA       string
	Author    Ident
	Committer Ident
	Time      time.Time
	// Account is the acting account (from the author email); 0 when the
	// author equals the committer, i.e. the server itself wrote the update.
	Account int
	// Heading is the subject line: "Create change", "Create patch set N",
	// "Update patch set N". Format derives it when empty.
	Heading string
	// Body is the change message; "" means the commit has none.
	Body string

	PatchSet            int
	PatchSetState       PatchSetState
	Current             bool
	PatchSetDescription *string
	ChangeID            string
	Subject             *string
	Branch              *string
	Status              *string
	Topic               *string
	Commit              string
	Hashtags            []string
	HasHashtags         bool
	CustomKeyedValues   []string
	Tag                 *string
	Groups              []string
	Reviewers           []ReviewerUpdate
	Labels              []Vote
	CopiedLabels        []Vote
	SubmissionID        *string
	SubmittedWith       []string
	RealUser            *Ident
	Private             *bool
	WorkInProgress      *bool
	RevertOf            int
	CherryPickOf        *string
	// Attention holds the raw JSON of each Attention footer.
	Attention []string

	// Footers is every footer line in order, known keys or not.
	Footers []Footer
}

// Ptr returns a pointer to v, for filling an Update's optional fields.
func Ptr[T any](v T) *T { return &v }

// ParseCommit parses one meta commit. Errors wrap ErrInvalid and name the
// commit and the offending footer.
func ParseCommit(c Commit) (*Update, error) {
	blk := &updateBlock{}
	if err := parse(c, blk, nil); err != nil {
		return nil, parseError(c, err)
	}
	return &blk.u, nil
}

func parseError(c Commit, err error) error {
	sha := c.SHA
	if len(sha) > 12 {
		sha = sha[:12]
	}
	return fmt.Errorf("notedb: commit %s: %w: %w", sha, ErrInvalid, err)
}

// Parser parses meta commits exactly like ParseCommit but reuses its
// memory from one call to the next: the Update that Parse returns, and
// the slices and pointers in it, are valid only until the next call.
// Change.Apply keeps nothing of an Update, so a replay loop (parse,
// apply, parse, apply, ...) can run a whole history through one Parser
// with almost no allocation per commit, which is what deriving many
// changes spends its time on otherwise. The zero Parser is ready to use;
// it is not safe for concurrent use.
type Parser struct {
	blk updateBlock
	sc  scratch
}

// scratch keeps the capacity of an Update's repeated fields between
// parses.
type scratch struct {
	footers   []Footer
	reviewers []ReviewerUpdate
	labels    []Vote
	copied    []Vote
}

// Parse parses one meta commit; see ParseCommit and Parser.
func (p *Parser) Parse(c Commit) (*Update, error) {
	if err := parse(c, &p.blk, &p.sc); err != nil {
		return nil, parseError(c, err)
	}
	return &p.blk.u, nil
}

// footerKey identifies a known footer key; parse matches keys to these
// without lower-casing them (which would allocate a string per footer).
type footerKey uint8

const (
	kUnknown footerKey = iota
	kPatchSet
	kCurrent
	kPatchSetDescription
	kChangeID
	kSubject
	kBranch
	kStatus
	kTopic
	kCommit
	kHashtags
	kCustomKeyedValue
	kTag
	kGroups
	kReviewer
	kCC
	kRemoved
	kReviewerEmail
	kCCEmail
	kRemovedEmail
	kLabel
	kCopiedLabel
	kSubmissionID
	kSubmittedWith
	kRealUser
	kPrivate
	kWorkInProgress
	kRevertOf
	kCherryPickOf
	kAttention
	numFooterKeys
)

// keyName returns the spelling of a known key, as errors name it.
func (k footerKey) name() string {
	switch k {
	case kPatchSet:
		return KeyPatchSet
	case kCurrent:
		return KeyCurrent
	case kPatchSetDescription:
		return KeyPatchSetDescription
	case kChangeID:
		return KeyChangeID
	case kSubject:
		return KeySubject
	case kBranch:
		return KeyBranch
	case kStatus:
		return KeyStatus
	case kTopic:
		return KeyTopic
	case kCommit:
		return KeyCommit
	case kHashtags:
		return KeyHashtags
	case kCustomKeyedValue:
		return KeyCustomKeyedValue
	case kTag:
		return KeyTag
	case kGroups:
		return KeyGroups
	case kReviewer:
		return KeyReviewer
	case kCC:
		return KeyCC
	case kRemoved:
		return KeyRemoved
	case kReviewerEmail:
		return KeyReviewerEmail
	case kCCEmail:
		return KeyCCEmail
	case kRemovedEmail:
		return KeyRemovedEmail
	case kLabel:
		return KeyLabel
	case kCopiedLabel:
		return KeyCopiedLabel
	case kSubmissionID:
		return KeySubmissionID
	case kSubmittedWith:
		return KeySubmittedWith
	case kRealUser:
		return KeyRealUser
	case kPrivate:
		return KeyPrivate
	case kWorkInProgress:
		return KeyWorkInProgress
	case kRevertOf:
		return KeyRevertOf
	case kCherryPickOf:
		return KeyCherryPickOf
	case kAttention:
		return KeyAttention
	}
	return ""
}

// lookupKey matches a footer key case-insensitively (keys are ASCII
// letters, digits and '-', see parseFooterLine).
func lookupKey(key string) footerKey {
	// Gerrit writes every key in its canonical spelling: a switch finds
	// those at once; other spellings take the case-insensitive scan.
	switch key {
	case KeyPatchSet:
		return kPatchSet
	case KeyCurrent:
		return kCurrent
	case KeyPatchSetDescription:
		return kPatchSetDescription
	case KeyChangeID:
		return kChangeID
	case KeySubject:
		return kSubject
	case KeyBranch:
		return kBranch
	case KeyStatus:
		return kStatus
	case KeyTopic:
		return kTopic
	case KeyCommit:
		return kCommit
	case KeyHashtags:
		return kHashtags
	case KeyCustomKeyedValue:
		return kCustomKeyedValue
	case KeyTag:
		return kTag
	case KeyGroups:
		return kGroups
	case KeyReviewer:
		return kReviewer
	case KeyCC:
		return kCC
	case KeyRemoved:
		return kRemoved
	case KeyReviewerEmail:
		return kReviewerEmail
	case KeyCCEmail:
		return kCCEmail
	case KeyRemovedEmail:
		return kRemovedEmail
	case KeyLabel:
		return kLabel
	case KeyCopiedLabel:
		return kCopiedLabel
	case KeySubmissionID:
		return kSubmissionID
	case KeySubmittedWith:
		return kSubmittedWith
	case KeyRealUser:
		return kRealUser
	case KeyPrivate:
		return kPrivate
	case KeyWorkInProgress:
		return kWorkInProgress
	case KeyRevertOf:
		return kRevertOf
	case KeyCherryPickOf:
		return kCherryPickOf
	case KeyAttention:
		return kAttention
	}
	for k := kPatchSet; k < numFooterKeys; k++ {
		if n := k.name(); len(n) == len(key) && strings.EqualFold(n, key) {
			return k
		}
	}
	return kUnknown
}

// updateBlock holds an Update and the targets of its optional fields, so
// that parsing a commit allocates them together rather than one by one.
type updateBlock struct {
	u     Update
	strs  [8]string
	bools [2]bool
	real  Ident
}

// parse parses c into blk. With sc, the repeated fields reuse (and
// keep) sc's capacity; empty ones are still nil, as without.
func parse(c Commit, blk *updateBlock, sc *scratch) (err error) {
	*blk = updateBlock{}
	u := &blk.u
	*u = Update{SHA: c.SHA, Author: c.Author, Committer: c.Committer, Time: c.Time}
	var footerBuf []Footer
	if sc != nil {
		footerBuf = sc.footers[:0]
		u.Reviewers, u.Labels, u.CopiedLabels = sc.reviewers[:0], sc.labels[:0], sc.copied[:0]
		defer func() {
			sc.footers = keep(sc.footers, u.Footers)
			sc.reviewers = keep(sc.reviewers, u.Reviewers)
			sc.labels = keep(sc.labels, u.Labels)
			sc.copied = keep(sc.copied, u.CopiedLabels)
			u.Footers, u.Reviewers, u.Labels, u.CopiedLabels = nilIfEmpty(u.Footers), nilIfEmpty(u.Reviewers), nilIfEmpty(u.Labels), nilIfEmpty(u.CopiedLabels)
		}()
	}
	if !(c.Author.Name == c.Committer.Name && c.Author.Email == c.Committer.Email) {
		id, ok := c.Author.Account()
		if !ok {
			return fmt.Errorf("author %q is not an account ident <id>@<serverId>", c.Author.Email)
		}
		u.Account = id
	}
	heading, body, footers := splitMessage(c.Message, footerBuf)
	u.Heading = heading
	u.Body = body
	u.Footers = footers

	// ptr returns a pointer to a copy of v in the block's slot i.
	ptr := func(i int, v string) *string {
		blk.strs[i] = v
		return &blk.strs[i]
	}
	var seen uint64 // bit k: footer key k seen
	one := func(k footerKey) error {
		if seen&(1<<k) != 0 {
			return fmt.Errorf("more than one %s footer", k.name())
		}
		seen |= 1 << k
		return nil
	}
	for _, f := range footers {
		var err error
		switch k := lookupKey(f.Key); k {
		case kPatchSet:
			if err = one(k); err == nil {
				u.PatchSet, u.PatchSetState, err = parsePatchSet(f.Value)
			}
		case kCurrent:
			if err = one(k); err == nil {
				var b bool
				b, err = parseBool(f.Value)
				u.Current = b
			}
		case kPatchSetDescription:
			if err = one(k); err == nil {
				u.PatchSetDescription = ptr(0, f.Value)
			}
		case kChangeID:
			if err = one(k); err == nil {
				u.ChangeID = f.Value
				if f.Value == "" {
					err = errors.New("empty Change-id")
				}
			}
		case kSubject:
			if err = one(k); err == nil {
				u.Subject = ptr(1, f.Value)
			}
		case kBranch:
			if err = one(k); err == nil {
				u.Branch = ptr(2, f.Value)
				if f.Value == "" {
					err = errors.New("empty Branch")
				}
			}
		case kStatus:
			if err = one(k); err == nil {
				st := ""
				for _, s := range [...]string{StatusNew, StatusMerged, StatusAbandoned, StatusDraft} {
					if strings.EqualFold(s, f.Value) && len(s) == len(f.Value) {
						st = s
					}
				}
				if st != "" {
					u.Status = ptr(3, st)
				} else {
					err = fmt.Errorf("unknown Status %q", f.Value)
				}
			}
		case kTopic:
			if err = one(k); err == nil {
				u.Topic = ptr(4, f.Value)
			}
		case kCommit:
			if err = one(k); err == nil {
				if !isHex(f.Value, 40) {
					err = fmt.Errorf("Commit %q is not a 40-hex SHA-1", f.Value)
				}
				u.Commit = strings.ToLower(f.Value) // no allocation when already lower case
			}
		case kHashtags:
			if err = one(k); err == nil {
				u.HasHashtags = true
				u.Hashtags = splitList(f.Value)
			}
		case kCustomKeyedValue:
			u.CustomKeyedValues = append(u.CustomKeyedValues, f.Value)
		case kTag:
			if err = one(k); err == nil {
				u.Tag = ptr(5, f.Value)
			}
		case kGroups:
			if err = one(k); err == nil {
				u.Groups = splitList(f.Value)
			}
		case kReviewer, kCC, kRemoved:
			var id Ident
			id, err = parseIdent(f.Value)
			if err == nil {
				if _, ok := id.Account(); !ok {
					err = fmt.Errorf("%s %q: not an account ident", f.Key, f.Value)
				}
			}
			u.Reviewers = append(u.Reviewers, ReviewerUpdate{State: stateForKey(k), Ident: id})
		case kReviewerEmail, kCCEmail, kRemovedEmail:
			addr := f.Value
			if i := strings.LastIndexByte(addr, '<'); i >= 0 {
				if id, e := parseIdent(addr); e == nil {
					addr = id.Email
				}
			}
			if addr == "" {
				err = fmt.Errorf("empty %s", f.Key)
			}
			u.Reviewers = append(u.Reviewers, ReviewerUpdate{State: stateForKey(k), Address: addr})
		case kLabel:
			var v Vote
			var skip bool
			v, skip, err = parseLabel(f.Value)
			if err == nil && !skip {
				u.Labels = append(u.Labels, v)
			}
		case kCopiedLabel:
			var v Vote
			v, err = parseCopiedLabel(f.Value)
			if err == nil {
				u.CopiedLabels = append(u.CopiedLabels, v)
			}
		case kSubmissionID:
			if err = one(k); err == nil {
				u.SubmissionID = ptr(6, f.Value)
			}
		case kSubmittedWith:
			u.SubmittedWith = append(u.SubmittedWith, f.Value)
		case kRealUser:
			if err = one(k); err == nil {
				blk.real, err = parseIdent(f.Value)
				u.RealUser = &blk.real
			}
		case kPrivate:
			if err = one(k); err == nil {
				blk.bools[0], err = parseBool(f.Value)
				u.Private = &blk.bools[0]
			}
		case kWorkInProgress:
			if err = one(k); err == nil {
				blk.bools[1], err = parseBool(f.Value)
				u.WorkInProgress = &blk.bools[1]
			}
		case kRevertOf:
			if err = one(k); err == nil {
				u.RevertOf, err = parsePositive(f.Value)
			}
		case kCherryPickOf:
			if err = one(k); err == nil {
				u.CherryPickOf = ptr(7, f.Value)
			}
		case kAttention:
			u.Attention = append(u.Attention, f.Value)
		}
		if err != nil {
			return fmt.Errorf("footer %s: %w", f.Key, err)
		}
	}
	if seen&(1<<kPatchSet) == 0 {
		return errors.New("missing Patch-set footer")
	}
	return nil
}

// keep returns whichever of two slices has the larger capacity, for
// reuse.
func keep[T any](old, cur []T) []T {
	if cap(cur) > cap(old) {
		return cur[:0]
	}
	return old[:0]
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func stateForKey(k footerKey) ReviewerState {
	switch k {
	case kCC, kCCEmail:
		return StateCC
	case kRemoved, kRemovedEmail:
		return StateRemoved
	}
	return StateReviewer
}

// splitMessage splits a commit message into its subject paragraph (joined
// to one line), the change message and the footers, like JGit's
// RevCommit.getFooterLines and Gerrit's ChangeNotesParser.parseChangeMessage.
// Footers are appended to buf (nil: a slice of the right size is
// made).
func splitMessage(msg string, buf []Footer) (heading, body string, footers []Footer) {
	subjEnd := strings.Index(msg, "\n\n")
	if subjEnd < 0 {
		return strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", " "), "", nil
	}
	heading = strings.ReplaceAll(msg[:subjEnd], "\n", " ")
	trimmed := strings.TrimRight(msg, "\n")
	// The footer paragraph starts after the last blank line.
	last := lastBlankLine(trimmed)
	if last < subjEnd {
		return heading, "", nil
	}
	par := trimmed[last+2:]
	footers = buf
	if footers == nil {
		footers = make([]Footer, 0, strings.Count(par, "\n")+1)
	}
	for par != "" {
		line, rest, _ := strings.Cut(par, "\n")
		if f, ok := parseFooterLine(line); ok {
			footers = append(footers, f)
		}
		par = rest
	}
	if len(footers) == 0 {
		footers = nil
	}
	if start := subjEnd + 2; last > start {
		body = msg[start:last]
	}
	return heading, body, footers
}

// lastBlankLine is strings.LastIndex(s, "\n\n"), which searches the
// whole message; this looks back from the end, a line at a time, and
// stops at the footer paragraph's start.
func lastBlankLine(s string) int {
	for i := len(s); ; {
		j := strings.LastIndexByte(s[:i], '\n')
		if j <= 0 {
			return -1
		}
		if s[j-1] == '\n' {
			return j - 1
		}
		i = j
	}
}

// parseFooterLine reads "Key: value" where Key is letters, digits and '-'
// (JGit's footerLineKeyChars). Spaces after the colon are skipped; a
// trailing CR is dropped.
func parseFooterLine(line string) (Footer, bool) {
	i := 0
	for i < len(line) {
		c := line[i]
		if c == ':' {
			break
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return Footer{}, false
		}
		i++
	}
	if i == 0 || i == len(line) {
		return Footer{}, false
	}
	v := strings.TrimLeft(line[i+1:], " ")
	v = strings.TrimSuffix(v, "\r")
	return Footer{Key: line[:i], Value: v}, true
}

func parsePatchSet(v string) (int, PatchSetState, error) {
	num, state, hasState := strings.Cut(v, " ")
	n, err := parsePositive(num)
	if err != nil {
		return 0, "", err
	}
	if !hasState {
		return n, PatchSetPublished, nil
	}
	switch state {
	case "(deleted)":
		return n, PatchSetDeleted, nil
	case "(draft)":
		return n, PatchSetDraft, nil
	case "(published)":
		return n, PatchSetPublished, nil
	}
	return 0, "", fmt.Errorf("unknown patch set state %q", state)
}

func parsePositive(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if n <= 0 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return n, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("bad boolean %q", s)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseIdent reads "Name <email>", taking the email from the last <…>
// because old names may contain anything.
func parseIdent(s string) (Ident, error) {
	lt := strings.LastIndexByte(s, '<')
	if lt < 0 {
		return Ident{}, fmt.Errorf("ident %q has no <email>", s)
	}
	gt := strings.IndexByte(s[lt:], '>')
	if gt < 0 {
		return Ident{}, fmt.Errorf("ident %q has no closing >", s)
	}
	email := s[lt+1 : lt+gt]
	if strings.ContainsAny(email, "<> \r\n\x00") {
		return Ident{}, fmt.Errorf("ident %q has a bad email", s)
	}
	name := strings.TrimSpace(s[:lt])
	if strings.ContainsAny(name, "<>\r\n\x00") {
		return Ident{}, fmt.Errorf("ident %q has a bad name", s)
	}
	return Ident{Name: name, Email: email}, nil
}

// validUUID accepts approval UUIDs: Gerrit writes 40 hex digits; any
// non-empty alphanumeric token is kept.
func validUUID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func parseVoteValue(s string) (int, error) {
	t := strings.TrimPrefix(s, "+")
	neg := false
	if t == s {
		if rest, ok := strings.CutPrefix(s, "-"); ok {
			t, neg = rest, true
		}
	}
	if t == "" || len(t) > 5 {
		return 0, fmt.Errorf("bad vote value %q", s)
	}
	n := 0
	for _, c := range t {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad vote value %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	if n < -32768 || n > 32767 {
		return 0, fmt.Errorf("vote value %q out of range", s)
	}
	return n, nil
}

// parseLabel parses a Label footer (§2.4). skip reports the legacy SUBM
// pseudo-label, which carries no vote.
func parseLabel(line string) (v Vote, skip bool, err error) {
	if rest, ok := strings.CutPrefix(line, "-"); ok {
		name, ident, hasIdent := strings.Cut(rest, " ")
		if !validLabelName(name) {
			return v, false, fmt.Errorf("bad label name in %q", line)
		}
		v = Vote{Label: name, Removed: true}
		if hasIdent {
			id, err := parseVoterIdent(ident)
			if err != nil {
				return v, false, err
			}
			v.Voter = &id
		}
		return v, name == "SUBM", nil
	}
	eq := strings.IndexByte(line, '=')
	if eq < 0 {
		return v, false, fmt.Errorf("label %q has no '='", line)
	}
	v.Label = line[:eq]
	if !validLabelName(v.Label) {
		return v, false, fmt.Errorf("bad label name in %q", line)
	}
	after := line[eq+1:]
	sp := strings.IndexByte(after, ' ')
	comma := strings.IndexByte(after, ',')
	var value, rest string
	hasRest := false
	if comma >= 0 && (sp < 0 || comma < sp) {
		value = after[:comma]
		u := strings.TrimPrefix(after[comma+1:], " ")
		uuid, r, hr := strings.Cut(u, " ")
		if !validUUID(uuid) {
			return v, false, fmt.Errorf("label %q has a bad UUID", line)
		}
		v.UUID, rest, hasRest = uuid, r, hr
	} else if sp >= 0 {
		value, rest, hasRest = after[:sp], after[sp+1:], true
	} else {
		value = after
	}
	if v.Value, err = parseVoteValue(value); err != nil {
		return v, false, fmt.Errorf("label %q: %w", line, err)
	}
	if hasRest {
		id, err := parseVoterIdent(rest)
		if err != nil {
			return v, false, err
		}
		v.Voter = &id
	}
	return v, v.Label == "SUBM", nil
}

func parseVoterIdent(s string) (Ident, error) {
	id, err := parseIdent(s)
	if err != nil {
		return id, err
	}
	if _, ok := id.Account(); !ok {
		return id, fmt.Errorf("voter %q is not an account ident", s)
	}
	return id, nil
}

// parseCopiedLabel parses "Name=V[, uuid] ident[,realIdent][:"tag"]" or
// "-Name ident[,realIdent]".
func parseCopiedLabel(line string) (Vote, error) {
	var v Vote
	var rest string
	if r, ok := strings.CutPrefix(line, "-"); ok {
		name, idents, ok := strings.Cut(r, " ")
		if !ok || !validLabelName(name) {
			return v, fmt.Errorf("bad copied label %q", line)
		}
		v = Vote{Label: name, Removed: true}
		rest = idents
	} else {
		eq := strings.IndexByte(line, '=')
		if eq < 0 || !validLabelName(line[:eq]) {
			return v, fmt.Errorf("bad copied label %q", line)
		}
		v.Label = line[:eq]
		after := line[eq+1:]
		sp := strings.IndexByte(after, ' ')
		comma := strings.IndexByte(after, ',')
		if sp < 0 {
			return v, fmt.Errorf("copied label %q has no voter", line)
		}
		value := after[:sp]
		rest = after[sp+1:]
		if comma >= 0 && comma < sp {
			value = after[:comma]
			u := strings.TrimPrefix(after[comma+1:], " ")
			uuid, r, ok := strings.Cut(u, " ")
			if !ok || !validUUID(uuid) {
				return v, fmt.Errorf("copied label %q has a bad UUID or no voter", line)
			}
			v.UUID, rest = uuid, r
		}
		var err error
		if v.Value, err = parseVoteValue(value); err != nil {
			return v, fmt.Errorf("copied label %q: %w", line, err)
		}
	}
	gt := strings.IndexByte(rest, '>')
	if gt < 0 {
		return v, fmt.Errorf("copied label %q has no voter", line)
	}
	voter, err := parseVoterIdent(rest[:gt+1])
	if err != nil {
		return v, err
	}
	v.Voter = &voter
	rest = rest[gt+1:]
	if r, ok := strings.CutPrefix(rest, ","); ok {
		gt := strings.IndexByte(r, '>')
		if gt < 0 {
			return v, fmt.Errorf("copied label %q: bad real voter", line)
		}
		real, err := parseVoterIdent(r[:gt+1])
		if err != nil {
			return v, err
		}
		v.RealVoter = &real
		rest = r[gt+1:]
	}
	if rest != "" {
		tag, ok := strings.CutPrefix(rest, ":\"")
		if !ok || !strings.HasSuffix(tag, "\"") || v.Removed {
			return v, fmt.Errorf("copied label %q: unexpected %q", line, rest)
		}
		v.Tag, v.HasTag = tag[:len(tag)-1], true
	}
	return v, nil
}
