// Package corpusgen generates synthetic mutation logs shaped like a real
// project's history, for benchmarks and load tests: a GitHub repository
// with labels, milestones, issues that gather many comments and events,
// pull requests with reviews, head/base commits, statuses and check runs;
// and a Gerrit project whose changes get several patch sets, votes
// (Run-TryBot, TryBot-Result, Code-Review), messages, and are merged or
// abandoned, all as git commits and refs with NoteDb meta history written
// by internal/notedb exactly as Gerrit writes it.
//
// Output is a stream of record payloads (maintner.Mutation encodings);
// DirWriter frames them into sealed segment files as a disk store lays
// them out. Generation is deterministic for a given Options.
package corpusgen

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"golang.org/x/build/maintner/maintpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tryd-ci/tryd/internal/notedb"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/trydpb"
)

// Options configures Generate.
type Options struct {
	// Size is roughly how many payload bytes to generate (required).
	Size int64
	// Seed makes different but reproducible histories (default 1).
	Seed uint64
	// Owner and Repo name the GitHub repository (default golang/go).
	Owner, Repo string
	// GerritProject is "server/project" (default
	// go.googlesource.com/go).
	GerritProject string
	// GerritShare is the fraction of activity that is Gerrit (default
	// 0.5; 0 < share < 1).
	GerritShare float64
	// Start is the time of the first event (default 2020-01-01 UTC).
	Start time.Time
	// Progress, if set, is called now and then with the bytes generated
	// so far.
	Progress func(done int64)
}

// ServerID is the Gerrit serverId used in generated NoteDb idents.
const ServerID = "62eb7196-b449-3ce5-99f1-c037f21e1705"

// BotAccount is the Gerrit account that casts TryBot-Result votes.
const BotAccount = 5976

func (o *Options) setDefaults() error {
	if o.Size <= 0 {
		return errors.New("corpusgen: Options.Size must be positive")
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Owner == "" {
		o.Owner = "golang"
	}
	if o.Repo == "" {
		o.Repo = "go"
	}
	if o.GerritProject == "" {
		o.GerritProject = "go.googlesource.com/go"
	}
	if o.GerritShare == 0 {
		o.GerritShare = 0.5
	}
	if o.GerritShare < 0 || o.GerritShare >= 1 {
		return fmt.Errorf("corpusgen: GerritShare %v outside (0, 1)", o.GerritShare)
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return nil
}

type gen struct {
	o    Options
	r    *rand.Rand
	emit func([]byte) error
	done int64
	now  time.Time

	// GitHub
	labels     []*maintpb.GithubLabel
	milestones []*maintpb.GithubMilestone
	issues     []*issue // open ones are revisited
	nextIssue  int32
	nextID     int64

	// Gerrit
	changes   []*change
	nextCL    int32
	head      string // refs/heads/master
	gerritIdx int
}

type issue struct {
	number int32
	pr     bool
	closed bool
	head   string
}

type change struct {
	number   int32
	changeID string
	owner    int
	ps       int
	commits  []string
	meta     string
	done     bool
}

// Generate writes a synthetic history of about opts.Size payload bytes,
// calling emit with each record payload in log order.
func Generate(ctx context.Context, opts Options, emit func(payload []byte) error) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	g := &gen{o: opts, r: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)), emit: emit, now: opts.Start, nextIssue: 1, nextID: 1000, nextCL: 1000}
	if err := g.setup(); err != nil {
		return err
	}
	lastProgress := int64(0)
	for g.done < opts.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		g.now = g.now.Add(time.Duration(g.r.IntN(600)+1) * time.Second)
		var err error
		if g.r.Float64() < opts.GerritShare {
			err = g.gerritStep()
		} else {
			err = g.githubStep()
		}
		if err != nil {
			return err
		}
		if opts.Progress != nil && g.done-lastProgress > 8<<20 {
			lastProgress = g.done
			opts.Progress(g.done)
		}
	}
	if opts.Progress != nil {
		opts.Progress(g.done)
	}
	return nil
}

func (g *gen) put(m *maintner.Mutation) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	g.done += int64(len(b))
	return g.emit(b)
}

func (g *gen) id() int64 { g.nextID++; return g.nextID }

func (g *gen) ts() *timestamppb.Timestamp { return timestamppb.New(g.now) }

var words = strings.Fields(`the a to of and in is that for it with as on be this not are by
an or if at from we can but when which go function type value error return package
runtime compiler linker test build fails panic goroutine channel slice map pointer
interface method struct field memory garbage collector scheduler windows linux darwin
arm64 amd64 race detector benchmark performance regression issue fix change commit
review trybot bot please merge rebase patch set file line code debug module version
proxy checksum vendor toolchain cgo assembly inline escape analysis allocation heap
stack frame trace profile mutex lock atomic timer network http server client request
response header body json encoding decoding reflect unsafe syscall os exec signal`)

func (g *gen) text(minWords, maxWords int) string {
	n := minWords + g.r.IntN(maxWords-minWords+1)
	var b strings.Builder
	b.Grow(n * 7)
	for i := 0; i < n; i++ {
		if i > 0 {
			if g.r.IntN(14) == 0 {
				b.WriteString(".\n\n")
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(words[g.r.IntN(len(words))])
	}
	b.WriteByte('.')
	return b.String()
}

func (g *gen) title() string {
	return words[g.r.IntN(len(words))] + ": " + g.text(4, 10)
}

func (g *gen) user() *maintpb.GithubUser {
	n := g.r.IntN(400)
	return &maintpb.GithubUser{Id: int64(1000 + n), Login: "user" + strconv.Itoa(n)}
}

func (g *gen) hexHash() string {
	var b [20]byte
	for i := 0; i < 20; i += 8 {
		v := g.r.Uint64()
		for j := 0; j < 8 && i+j < 20; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

func (g *gen) setup() error {
	names := []string{"NeedsFix", "NeedsInvestigation", "NeedsDecision", "WaitingForInfo", "Documentation",
		"FrozenDueToAge", "help wanted", "release-blocker", "Testing", "Performance", "compiler/runtime",
		"Tools", "OS-Windows", "OS-Darwin", "arch-arm64", "Proposal", "run-trybot", "okay-after-beta1"}
	for i, n := range names {
		g.labels = append(g.labels, &maintpb.GithubLabel{Id: int64(100 + i), Name: n})
	}
	for i := 0; i < 12; i++ {
		g.milestones = append(g.milestones, &maintpb.GithubMilestone{Id: int64(500 + i), Title: fmt.Sprintf("Go1.%d", 14+i), Number: int64(i + 1), Closed: &maintpb.BoolChange{Val: i < 6}})
	}
	if err := g.put(&maintner.Mutation{Base: &maintpb.Mutation{Github: &maintpb.GithubMutation{Owner: g.o.Owner, Repo: g.o.Repo, Labels: g.labels, Milestones: g.milestones}},
		Ext: &trydpb.Ext{GithubRepo: &trydpb.GithubRepo{Owner: g.o.Owner, Repo: g.o.Repo, Id: 23096959, DefaultBranch: "master"}}}); err != nil {
		return err
	}
	// The branch head the changes are based on.
	raw := fmt.Sprintf("tree %s\nauthor Gopher <gopher@golang.org> %d +0000\ncommitter Gopher <gopher@golang.org> %d +0000\n\ninitial commit\n",
		g.hexHash(), g.now.Unix(), g.now.Unix())
	h := commitHash(raw)
	g.head = h
	return g.put(&maintner.Mutation{Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{
		Project: g.o.GerritProject,
		Commits: []*maintpb.GitCommit{{Sha1: h, Raw: []byte(raw)}},
		Refs:    []*maintpb.GitRef{{Ref: "refs/heads/master", Sha1: h}, {Ref: "HEAD", Sha1: h}},
	}}})
}

// commitHash returns git's object id of a commit with this raw content.
func commitHash(raw string) string {
	h := sha1.New()
	fmt.Fprintf(h, "commit %d\x00", len(raw))
	h.Write([]byte(raw))
	return hex.EncodeToString(h.Sum(nil))
}

func (g *gen) issueBase(is *issue) *maintpb.GithubIssueMutation {
	return &maintpb.GithubIssueMutation{Owner: g.o.Owner, Repo: g.o.Repo, Number: is.number}
}

func (g *gen) githubStep() error {
	open := g.openIssue()
	switch k := g.r.IntN(100); {
	case open == nil || k < 12:
		return g.newIssue()
	case k < 62:
		return g.comments(open)
	case k < 80:
		return g.events(open)
	case k < 90 && open.pr:
		return g.review(open)
	default:
		return g.closeIssue(open)
	}
}

func (g *gen) openIssue() *issue {
	for tries := 0; tries < 4 && len(g.issues) > 0; tries++ {
		// Prefer recent issues, as real activity does.
		n := len(g.issues)
		i := n - 1 - min(n-1, int(g.r.ExpFloat64()*40))
		if is := g.issues[i]; !is.closed {
			return is
		}
	}
	return nil
}

func (g *gen) newIssue() error {
	is := &issue{number: g.nextIssue, pr: g.r.IntN(4) == 0}
	g.nextIssue++
	g.issues = append(g.issues, is)
	m := g.issueBase(is)
	m.Id = g.id()
	m.User = g.user()
	m.Created, m.Updated = g.ts(), g.ts()
	m.Title = g.title()
	m.BodyChange = &maintpb.StringChange{Val: g.text(30, 300)}
	m.PullRequest = is.pr
	m.Closed = &maintpb.BoolChange{}
	m.Locked = &maintpb.BoolChange{}
	m.MilestoneId = g.milestones[g.r.IntN(len(g.milestones))].Id
	m.MilestoneNum = 0
	for i := g.r.IntN(3); i > 0; i-- {
		m.AddLabel = append(m.AddLabel, g.labels[g.r.IntN(len(g.labels))])
	}
	if g.r.IntN(3) == 0 {
		m.Assignees = []*maintpb.GithubUser{g.user()}
	}
	mut := &maintner.Mutation{Base: &maintpb.Mutation{GithubIssue: m}}
	if is.pr {
		is.head = g.hexHash()
		mut.Ext = &trydpb.Ext{GithubPullRequest: &trydpb.GithubPullRequest{
			Owner: g.o.Owner, Repo: g.o.Repo, Number: is.number,
			HeadSha: is.head, HeadRef: "fix-" + strconv.Itoa(int(is.number)), HeadRepo: "user/go",
			BaseSha: g.hexHash(), BaseRef: "master", Draft: &trydpb.BoolWrap{Val: g.r.IntN(5) == 0}, Updated: g.ts(),
		}}
	}
	return g.put(mut)
}

func (g *gen) comments(is *issue) error {
	m := g.issueBase(is)
	m.Updated = g.ts()
	for i := 1 + g.r.IntN(3); i > 0; i-- {
		m.Comment = append(m.Comment, &maintpb.GithubIssueCommentMutation{
			Id: g.id(), User: g.user(), Body: g.text(10, 250), Created: g.ts(), Updated: g.ts(),
		})
	}
	m.CommentStatus = &maintpb.GithubIssueSyncStatus{ServerDate: g.ts()}
	return g.put(&maintner.Mutation{Base: &maintpb.Mutation{GithubIssue: m}})
}

func (g *gen) events(is *issue) error {
	m := g.issueBase(is)
	for i := 1 + g.r.IntN(3); i > 0; i-- {
		e := &maintpb.GithubIssueEvent{Id: g.id(), ActorId: g.user().Id, Created: g.ts()}
		switch g.r.IntN(5) {
		case 0, 1:
			l := g.labels[g.r.IntN(len(g.labels))]
			e.EventType = "labeled"
			e.Label = &maintpb.GithubLabel{Name: l.Name}
			m.AddLabel = append(m.AddLabel, l)
		case 2:
			e.EventType = "mentioned"
		case 3:
			e.EventType = "referenced"
			e.Commit = &maintpb.GithubCommit{Owner: g.o.Owner, Repo: g.o.Repo, CommitId: g.hexHash()}
		default:
			ms := g.milestones[g.r.IntN(len(g.milestones))]
			e.EventType = "milestoned"
			e.Milestone = &maintpb.GithubMilestone{Title: ms.Title}
		}
		m.Event = append(m.Event, e)
	}
	m.EventStatus = &maintpb.GithubIssueSyncStatus{ServerDate: g.ts()}
	return g.put(&maintner.Mutation{Base: &maintpb.Mutation{GithubIssue: m}})
}

func (g *gen) review(is *issue) error {
	m := g.issueBase(is)
	states := []string{"COMMENTED", "APPROVED", "CHANGES_REQUESTED"}
	m.Review = []*maintpb.GithubReview{{Id: g.id(), ActorId: g.user().Id, Created: g.ts(), Body: g.text(5, 80), State: states[g.r.IntN(3)], CommitId: is.head, ActorAssociation: "MEMBER"}}
	m.ReviewStatus = &maintpb.GithubIssueSyncStatus{ServerDate: g.ts()}
	conclusion := []string{"success", "failure", "success", "neutral"}[g.r.IntN(4)]
	ext := &trydpb.Ext{
		GithubStatus: []*trydpb.GithubStatus{{Owner: g.o.Owner, Repo: g.o.Repo, Sha: is.head, Context: "tryd/linux-amd64", State: map[string]string{"success": "success", "failure": "failure", "neutral": "success"}[conclusion],
			Description: "build finished", TargetUrl: "https://tryd.example/run/" + strconv.FormatInt(g.nextID, 10), Id: g.id(), Created: g.ts(), Updated: g.ts()}},
		GithubCheckRun: []*trydpb.GithubCheckRun{{Owner: g.o.Owner, Repo: g.o.Repo, Id: g.id(), HeadSha: is.head, Name: "tryd", Status: "completed", Conclusion: conclusion, Started: g.ts(), Completed: g.ts()}},
	}
	return g.put(&maintner.Mutation{Base: &maintpb.Mutation{GithubIssue: m}, Ext: ext})
}

func (g *gen) closeIssue(is *issue) error {
	is.closed = true
	m := g.issueBase(is)
	m.Closed = &maintpb.BoolChange{Val: true}
	m.ClosedAt, m.Updated = g.ts(), g.ts()
	m.ClosedBy = g.user()
	m.Event = []*maintpb.GithubIssueEvent{{Id: g.id(), EventType: "closed", ActorId: m.ClosedBy.Id, Created: g.ts()}}
	mut := &maintner.Mutation{Base: &maintpb.Mutation{GithubIssue: m}}
	if is.pr {
		mut.Ext = &trydpb.Ext{GithubPullRequest: &trydpb.GithubPullRequest{Owner: g.o.Owner, Repo: g.o.Repo, Number: is.number,
			Merged: &trydpb.BoolWrap{Val: true}, MergeCommitSha: g.hexHash(), MergedAt: g.ts()}}
	}
	return g.put(mut)
}

// Gerrit

func (g *gen) ident(acct int) notedb.Ident { return notedb.AccountIdent(acct, ServerID) }

var serverIdent = notedb.Ident{Name: "Gerrit Code Review", Email: "noreply-gerritcodereview@google.com"}

func (g *gen) metaCommit(ch *change, acct int, u *notedb.Update) (sha, raw string) {
	u.Author = g.ident(acct)
	msg := notedb.FormatWith(u, notedb.FormatOptions{Legacy: g.r.IntN(2) == 0})
	var b strings.Builder
	b.Grow(len(msg) + 300)
	b.WriteString("tree " + notedb.EmptyTree + "\n")
	if ch.meta != "" {
		b.WriteString("parent " + ch.meta + "\n")
	}
	t := g.now.Unix()
	fmt.Fprintf(&b, "author %s %d +0000\ncommitter %s %d +0000\n\n", u.Author, t, serverIdent, t)
	b.WriteString(msg)
	raw = b.String()
	sha = commitHash(raw)
	ch.meta = sha
	return sha, raw
}

func (g *gen) psCommit(ch *change) (sha, raw string, files *maintpb.GitDiffTree) {
	t := g.now.Unix()
	name := "Gopher " + strconv.Itoa(ch.owner)
	raw = fmt.Sprintf("tree %s\nparent %s\nauthor %s <%d@golang.org> %d -0700\ncommitter %s <%d@golang.org> %d -0700\n\n%s\n\n%s\n\nChange-Id: %s\n",
		g.hexHash(), g.head, name, ch.owner, t, name, ch.owner, t, g.title(), g.text(20, 120), ch.changeID)
	files = &maintpb.GitDiffTree{}
	for i := 1 + g.r.IntN(4); i > 0; i-- {
		files.File = append(files.File, &maintpb.GitDiffTreeFile{File: "src/" + words[g.r.IntN(len(words))] + "/" + words[g.r.IntN(len(words))] + ".go", Added: int64(g.r.IntN(200)), Deleted: int64(g.r.IntN(50))})
	}
	return commitHash(raw), raw, files
}

func changeRef(cl int32, ps string) string {
	return fmt.Sprintf("refs/changes/%02d/%d/%s", cl%100, cl, ps)
}

func (g *gen) gerritStep() error {
	var open *change
	for tries := 0; tries < 4 && len(g.changes) > 0; tries++ {
		n := len(g.changes)
		i := n - 1 - min(n-1, int(g.r.ExpFloat64()*30))
		if ch := g.changes[i]; !ch.done {
			open = ch
			break
		}
	}
	switch k := g.r.IntN(100); {
	case open == nil || k < 15:
		return g.newChange()
	case k < 35:
		return g.newPatchSet(open)
	case k < 88:
		return g.vote(open)
	default:
		return g.finish(open)
	}
}

func (g *gen) gerritMut(commits []*maintpb.GitCommit, refs ...*maintpb.GitRef) error {
	return g.put(&maintner.Mutation{Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{Project: g.o.GerritProject, Commits: commits, Refs: refs}}})
}

func (g *gen) newChange() error {
	ch := &change{number: g.nextCL, owner: 1000 + g.r.IntN(300), ps: 1}
	g.nextCL += int32(1 + g.r.IntN(3))
	ch.changeID = "I" + g.hexHash()
	g.changes = append(g.changes, ch)
	psSHA, psRaw, files := g.psCommit(ch)
	ch.commits = append(ch.commits, psSHA)
	subject := strings.SplitN(psRaw[strings.Index(psRaw, "\n\n")+2:], "\n", 2)[0]
	metaSHA, metaRaw := g.metaCommit(ch, ch.owner, &notedb.Update{
		Body: "Uploaded patch set 1.", PatchSet: 1, ChangeID: ch.changeID, Subject: &subject,
		Branch: notedb.Ptr("refs/heads/master"), Status: notedb.Ptr("new"), Topic: notedb.Ptr(""),
		Commit: psSHA, Tag: notedb.Ptr("autogenerated:gerrit:newPatchSet"), Groups: []string{psSHA},
		Private: notedb.Ptr(false), WorkInProgress: notedb.Ptr(false),
	})
	return g.gerritMut([]*maintpb.GitCommit{{Sha1: psSHA, Raw: []byte(psRaw), DiffTree: files}, {Sha1: metaSHA, Raw: []byte(metaRaw)}},
		&maintpb.GitRef{Ref: changeRef(ch.number, "1"), Sha1: psSHA}, &maintpb.GitRef{Ref: changeRef(ch.number, "meta"), Sha1: metaSHA})
}

func (g *gen) newPatchSet(ch *change) error {
	ch.ps++
	psSHA, psRaw, files := g.psCommit(ch)
	ch.commits = append(ch.commits, psSHA)
	subject := strings.SplitN(psRaw[strings.Index(psRaw, "\n\n")+2:], "\n", 2)[0]
	metaSHA, metaRaw := g.metaCommit(ch, ch.owner, &notedb.Update{
		Body: fmt.Sprintf("Uploaded patch set %d.", ch.ps), PatchSet: ch.ps, Subject: &subject,
		Commit: psSHA, Tag: notedb.Ptr("autogenerated:gerrit:newPatchSet"), Groups: []string{psSHA},
	})
	return g.gerritMut([]*maintpb.GitCommit{{Sha1: psSHA, Raw: []byte(psRaw), DiffTree: files}, {Sha1: metaSHA, Raw: []byte(metaRaw)}},
		&maintpb.GitRef{Ref: changeRef(ch.number, strconv.Itoa(ch.ps)), Sha1: psSHA}, &maintpb.GitRef{Ref: changeRef(ch.number, "meta"), Sha1: metaSHA})
}

func (g *gen) vote(ch *change) error {
	acct := 1000 + g.r.IntN(300)
	label, value := "Code-Review", []int{-1, 1, 2}[g.r.IntN(3)]
	switch g.r.IntN(3) {
	case 0:
		label, value = "Run-TryBot", 1
	case 1:
		acct, label, value = BotAccount, "TryBot-Result", []int{-1, 1}[g.r.IntN(2)]
	}
	body := fmt.Sprintf("Patch Set %d: %s\n\n%s", ch.ps, voteText(label, value), g.text(3, 60))
	u := &notedb.Update{Body: body, PatchSet: ch.ps,
		Reviewers: []notedb.ReviewerUpdate{{State: notedb.StateReviewer, Ident: g.ident(acct)}},
		Labels:    []notedb.Vote{{Label: label, Value: value, UUID: g.hexHash()}}}
	if acct == BotAccount {
		u.Tag = notedb.Ptr("autogenerated:trybot")
	}
	sha, raw := g.metaCommit(ch, acct, u)
	return g.gerritMut([]*maintpb.GitCommit{{Sha1: sha, Raw: []byte(raw)}}, &maintpb.GitRef{Ref: changeRef(ch.number, "meta"), Sha1: sha})
}

func (g *gen) finish(ch *change) error {
	ch.done = true
	if g.r.IntN(4) == 0 {
		sha, raw := g.metaCommit(ch, ch.owner, &notedb.Update{Body: "Abandoned", PatchSet: ch.ps, Status: notedb.Ptr("abandoned"), Tag: notedb.Ptr("autogenerated:gerrit:abandon")})
		return g.gerritMut([]*maintpb.GitCommit{{Sha1: sha, Raw: []byte(raw)}}, &maintpb.GitRef{Ref: changeRef(ch.number, "meta"), Sha1: sha})
	}
	sha, raw := g.metaCommit(ch, 1000+g.r.IntN(300), &notedb.Update{Body: "Change has been successfully merged", PatchSet: ch.ps, Status: notedb.Ptr("merged"),
		Tag: notedb.Ptr("autogenerated:gerrit:merged"), SubmissionID: notedb.Ptr(strconv.Itoa(int(ch.number)))})
	g.head = ch.commits[len(ch.commits)-1]
	return g.gerritMut([]*maintpb.GitCommit{{Sha1: sha, Raw: []byte(raw)}},
		&maintpb.GitRef{Ref: changeRef(ch.number, "meta"), Sha1: sha}, &maintpb.GitRef{Ref: "refs/heads/master", Sha1: g.head})
}
