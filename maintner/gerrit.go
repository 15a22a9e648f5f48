package maintner

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tryd-ci/tryd/internal/notedb"
)

// gitState holds commits of plain git repositories (maintpb.GitMutation).
type gitState struct {
	repos  map[string]*GitRepo
	people map[string]*GitPerson // by "Name <email>"
}

func (g *gitState) init() {
	g.repos = make(map[string]*GitRepo)
	g.people = make(map[string]*GitPerson)
}

// GitRepo is a git repository tracked through GitMutations.
type GitRepo struct {
	Name    string
	commits commitTable
}

// Commit returns the commit with hash h, or nil.
func (r *GitRepo) Commit(h GitHash) *GitCommit { return r.commits.Get(h) }

// NumCommits returns how many commits the repository holds.
func (r *GitRepo) NumCommits() int { return r.commits.Len() }

// GitRepo returns the git repository by name, or nil. The caller holds
// RLock.
func (c *Corpus) GitRepo(name string) *GitRepo { return c.git.repos[name] }

// gitPerson interns an identity; ident is the "Name <email>" it was
// parsed from.
func (c *Corpus) gitPerson(ident, name, email []byte) *GitPerson {
	if p, ok := c.git.people[string(ident)]; ok {
		return p
	}
	p := &GitPerson{Name: c.str(name), Email: c.str(email)}
	c.git.people[string(ident)] = p
	return p
}

// isMetaCommit reports whether a commit message looks like a NoteDb meta
// commit's: its last paragraph (after the last blank line) has a
// Patch-set footer. It runs on every commit while loading, so it reads
// only the last paragraph: it finds the last blank line searching
// backwards, a line at a time, and the footer with one forward search.
func isMetaCommit(msg []byte) bool {
	t := bytes.TrimRight(msg, "\n")
	// last is the start of the last "\n\n" in t (t[p-1] and t[p] are
	// both newlines for the last such p), -1 if there is none.
	last := -1
	for end := len(t); ; {
		p := lastIndexByte(t[:end], '\n')
		if p < 1 {
			break
		}
		if t[p-1] == '\n' {
			last = p - 1
			break
		}
		end = p - 1 // t[p-1] is not a newline either
	}
	if last < 0 {
		return false
	}
	para := t[last+2:]
	return bytes.HasPrefix(para, patchSetFooter) || bytes.Contains(para, nlPatchSetFooter)
}

var (
	patchSetFooter   = []byte("Patch-set: ")
	nlPatchSetFooter = []byte("\nPatch-set: ")
)

func (c *Corpus) applyGit(d *dGit) {
	if d.commit == nil {
		return
	}
	name := c.str(d.repo)
	r := c.git.repos[name]
	if r == nil {
		r = &GitRepo{Name: name}
		c.git.repos[name] = r
	}
	r.commits.Put(c.makeCommit(d.commit))
}

// gerritState is the Gerrit half of the corpus.
type gerritState struct {
	projects map[string]*GerritProject
}

func (g *gerritState) init() {
	g.projects = make(map[string]*GerritProject)
}

// GerritProject is a Gerrit project, named as maintpb names it:
// "server/project" without a scheme, e.g. "go.googlesource.com/go".
type GerritProject struct {
	Name    string
	c       *Corpus
	commits commitTable
	refs    map[string]GitHash
	changes map[int32]*GerritChange
}

// Server returns the server part of the name.
func (p *GerritProject) Server() string {
	s, _, _ := strings.Cut(p.Name, "/")
	return s
}

// Project returns the project part of the name.
func (p *GerritProject) Project() string {
	_, s, _ := strings.Cut(p.Name, "/")
	return s
}

// Change returns change number n, or nil. The change is derived from its
// meta history first if that moved since it was last derived.
func (p *GerritProject) Change(n int32) *GerritChange {
	ch := p.changes[n]
	if ch != nil {
		ch.ensure()
	}
	return ch
}

// NumChanges returns how many changes the project has, without deriving
// any.
func (p *GerritProject) NumChanges() int { return len(p.changes) }

// Changes returns the project's changes sorted by number, each derived
// from its meta history (in parallel, the first time).
func (p *GerritProject) Changes() []*GerritChange {
	out := make([]*GerritChange, 0, len(p.changes))
	var stale []*GerritChange
	for _, ch := range p.changes {
		out = append(out, ch)
		if !ch.clean.Load() {
			stale = append(stale, ch)
		}
	}
	deriveAll(stale, p.c.opts.LoadWorkers)
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

// deriveAll derives changes on up to workers goroutines. Deriving reads
// only the project's commits (immutable under the corpus read lock) and
// writes only its own change.
func deriveAll(chs []*GerritChange, workers int) {
	workers = min(workers, (len(chs)+255)/256)
	if workers <= 1 {
		for _, ch := range chs {
			ch.ensure()
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(chs); i += workers {
				chs[i].ensure()
			}
		}(w)
	}
	wg.Wait()
}

// Commit returns a commit of the project's repository, or nil.
func (p *GerritProject) Commit(h GitHash) *GitCommit { return p.commits.Get(h) }

// Ref returns the commit a non-change ref (refs/heads/..., refs/tags/...,
// HEAD) points to.
func (p *GerritProject) Ref(name string) (GitHash, bool) {
	h, ok := p.refs[name]
	return h, ok
}

// Refs returns the names of the non-change refs, sorted.
func (p *GerritProject) Refs() []string {
	out := make([]string, 0, len(p.refs))
	for r := range p.refs {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// GerritChange is a Gerrit change, derived from its NoteDb meta history
// (refs/changes/NN/N/meta) by internal/notedb the way Gerrit's
// ChangeNotesParser does, and from its patch set refs.
//
// Deriving parses the change's meta commits, so it is done when the
// change is first asked for (GerritProject.Change or Changes) after its
// meta ref moved, not while records are applied: loading a log or logging
// a vote never pays for changes nobody reads, and a change that gets ten
// votes between two reads is derived once. The first derivation replays
// the whole history; later ones, once the change has shown itself active,
// apply only the new meta commits (see derive). The fields below Meta are
// the derived ones; they are valid in changes returned by Change and
// Changes.
type GerritChange struct {
	Project *GerritProject
	Number  int32
	// Meta is the tip of the meta ref.
	Meta GitHash

	// mu serializes deriving among readers (who hold the corpus read
	// lock); clean says the derived fields match Meta. Writers, holding
	// the write lock, clear clean.
	mu    sync.Mutex
	clean atomic.Bool

	ChangeID string
	Branch   string
	Subject  string
	Topic    string
	// Status is "new", "merged", "abandoned" (or "draft" in old
	// history).
	Status         string
	Owner          int32
	Created        Time
	Updated        Time
	Private        bool
	WorkInProgress bool
	Hashtags       []string
	// CurrentPatchSet is the number of the current patch set.
	CurrentPatchSet int32
	// PatchSets are the existing patch sets in ascending order.
	PatchSets []GerritPatchSet
	// Messages are the change messages, oldest first.
	Messages []GerritMessage
	// Votes are the non-zero votes of every patch set (as Gerrit counts
	// them: cast on that patch set or copied to it), sorted by patch set,
	// label and account. Gerrit's reset on a new patch set follows from
	// this: a vote on patch set 1 is not a vote on patch set 2 unless
	// copied.
	Votes []GerritVote
	// Err says why the meta history could not be derived ("" when it
	// could); the other derived fields then keep their last good values.
	Err string

	psRefs []psRef

	// state is the NoteDb replay as of the meta commit stateTip, kept so
	// that deriving after the meta ref moved forward applies only the
	// new commits (guarded by mu). Nil when there is none: derived at
	// most once, or the last derivation failed part-way.
	//
	// A replay costs several KiB (notedb.Change keeps maps of approvals
	// per patch set and account), several times what the derived fields
	// take, so it is kept only for changes derived more than once: those
	// whose meta ref moved after they were first read, i.e. the active
	// ones. Loading a log and reading every change once keeps none.
	state    *notedb.Change
	stateTip GitHash
	derived  int32 // derivations so far (saturating)
}

type psRef struct {
	ps   int32
	hash GitHash
}

// GerritPatchSet is one patch set.
type GerritPatchSet struct {
	Number   int32
	Commit   GitHash
	Uploader int32
	Created  Time
}

// GerritMessage is one change message. Its Gerrit id is the hex of Meta.
type GerritMessage struct {
	Meta     GitHash
	Author   int32
	Time     Time
	PatchSet int32
	Tag      string
	Body     string
}

// GerritVote is one current vote.
type GerritVote struct {
	PatchSet int32
	Account  int32
	Label    string
	Value    int8
	Copied   bool
	Granted  Time
}

// VotesOn returns the votes on patch set ps.
func (ch *GerritChange) VotesOn(ps int32) []GerritVote {
	i := sort.Search(len(ch.Votes), func(i int) bool { return ch.Votes[i].PatchSet >= ps })
	j := i
	for j < len(ch.Votes) && ch.Votes[j].PatchSet == ps {
		j++
	}
	return ch.Votes[i:j]
}

// Vote returns the value of account's vote on label on patch set ps (0
// when there is none).
func (ch *GerritChange) Vote(ps int32, label string, account int32) int8 {
	for _, v := range ch.VotesOn(ps) {
		if v.Label == label && v.Account == account {
			return v.Value
		}
	}
	return 0
}

// HasVote reports whether some account votes value on label on the
// current patch set.
func (ch *GerritChange) HasVote(label string, value int8) bool {
	for _, v := range ch.VotesOn(ch.CurrentPatchSet) {
		if v.Label == label && v.Value == value {
			return true
		}
	}
	return false
}

// PatchSet returns patch set n, or nil.
func (ch *GerritChange) PatchSet(n int32) *GerritPatchSet {
	for i := range ch.PatchSets {
		if ch.PatchSets[i].Number == n {
			return &ch.PatchSets[i]
		}
	}
	return nil
}

// PatchSetRef returns the commit refs/changes/NN/N/ps points to.
func (ch *GerritChange) PatchSetRef(ps int32) (GitHash, bool) {
	for _, r := range ch.psRefs {
		if r.ps == ps {
			return r.hash, true
		}
	}
	return GitHash{}, false
}

// GerritProjects returns every project sorted by name. The caller holds
// RLock.
func (c *Corpus) GerritProjects() []*GerritProject {
	out := make([]*GerritProject, 0, len(c.gerrit.projects))
	for _, p := range c.gerrit.projects {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GerritProject returns the project "server/project", or nil. The
// caller holds RLock.
func (c *Corpus) GerritProject(name string) *GerritProject { return c.gerrit.projects[name] }

// parseChangeRef parses "refs/changes/NN/N/meta" and
// "refs/changes/NN/N/P" (NN being N mod 100, two digits): ps is 0 for
// meta. It runs for every ref of every Gerrit record, so it does not
// allocate.
func parseChangeRef(ref []byte) (cl, ps int32, ok bool) {
	rest, found := bytes.CutPrefix(ref, []byte("refs/changes/"))
	if !found || len(rest) < 3 || rest[2] != '/' {
		return 0, 0, false
	}
	shard, ok1 := atoi32(rest[:2], true)
	rest = rest[3:]
	slash := bytes.IndexByte(rest, '/')
	if !ok1 || slash < 0 {
		return 0, 0, false
	}
	n, ok2 := atoi32(rest[:slash], false)
	if !ok2 || n <= 0 || n%100 != shard {
		return 0, 0, false
	}
	last := rest[slash+1:]
	if string(last) == "meta" {
		return n, 0, true
	}
	p, ok3 := atoi32(last, false)
	if !ok3 || p <= 0 {
		return 0, 0, false
	}
	return n, p, true
}

// atoi32 parses a decimal number that fits an int32; leading zeros are
// refused unless zeros is set (for the two-digit shard).
func atoi32(b []byte, zeros bool) (int32, bool) {
	if len(b) == 0 || len(b) > 10 || (!zeros && len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	var v int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		v = v*10 + int64(ch-'0')
	}
	if v > 1<<31-1 {
		return 0, false
	}
	return int32(v), true
}

func validProjectName(b []byte) bool {
	if len(b) == 0 || len(b) > 300 || !strings.Contains(string(b), "/") {
		return false
	}
	for _, ch := range b {
		if ch < 0x20 || ch == 0x7f {
			return false
		}
	}
	return true
}

func (c *Corpus) applyGerrit(d *dGerrit) {
	// Only names of existing projects, checked when they were created,
	// are in the map: a hit needs no check.
	p := c.gerrit.projects[string(d.project)]
	if p == nil {
		if !validProjectName(d.project) {
			c.log.Warnf("maintner: gerrit mutation for bad project %q ignored", truncate(d.project, 100))
			return
		}
		p = &GerritProject{
			Name:    c.str(d.project),
			c:       c,
			refs:    make(map[string]GitHash),
			changes: make(map[int32]*GerritChange),
		}
		c.gerrit.projects[p.Name] = p
	}
	for i := range d.commits {
		dc := &d.commits[i]
		if s := p.commits.Slot(&dc.hash); s.c == nil {
			p.commits.Fill(s, c.makeCommit(dc))
		}
	}
	for _, name := range d.deletedRefs {
		if cl, ps, ok := parseChangeRef(name); ok {
			ch := p.changes[cl]
			if ch == nil {
				continue
			}
			if ps == 0 {
				delete(p.changes, cl)
			} else {
				ch.psRefs = slices.DeleteFunc(ch.psRefs, func(r psRef) bool { return r.ps == ps })
			}
			continue
		}
		delete(p.refs, string(name))
	}
	for _, r := range d.refs {
		cl, ps, ok := parseChangeRef(r.name)
		if !ok {
			if strings.HasPrefix(string(r.name), "refs/meta/") || strings.HasPrefix(string(r.name), "refs/changes/") {
				continue
			}
			p.refs[c.str(r.name)] = r.hash
			continue
		}
		ch := p.changes[cl]
		if ch == nil {
			ch = &GerritChange{Project: p, Number: cl}
			p.changes[cl] = ch
		}
		if ps == 0 {
			if ch.Meta != r.hash {
				ch.Meta = r.hash
				ch.clean.Store(false)
			}
			continue
		}
		i, found := slices.BinarySearchFunc(ch.psRefs, ps, func(x psRef, ps int32) int { return cmp.Compare(x.ps, ps) })
		if found {
			ch.psRefs[i].hash = r.hash
		} else {
			ch.psRefs = slices.Insert(ch.psRefs, i, psRef{ps, r.hash})
		}
	}
}

// ensure derives the change if its meta ref moved since it was last
// derived.
func (ch *GerritChange) ensure() {
	if ch.clean.Load() {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.clean.Load() {
		return
	}
	ch.derive(ch.Project.c)
	ch.clean.Store(true)
}

// maxMetaChain bounds a meta history walk, against cycles in bad data.
const maxMetaChain = 1 << 20

// derive brings the change up to date with its meta history. When the
// new tip descends from the commit the cached replay stopped at, only the
// commits after it are parsed and applied; otherwise (no cached replay,
// see GerritChange.state, or history rewritten: meta refs can be
// force-updated) the whole chain is replayed from its root.
func (ch *GerritChange) derive(c *Corpus) {
	p := ch.Project
	var chain []*GitCommit
	state := ch.state
	for h := ch.Meta; ; {
		if state != nil && h == ch.stateTip {
			break // the cached replay already holds h and its ancestors
		}
		gc := p.commits.Get(h)
		if gc == nil {
			ch.Err = fmt.Sprintf("meta commit %s not in the log", h)
			return
		}
		chain = append(chain, gc)
		if len(gc.Parents) == 0 {
			// A root: the cached replay (if any) is not an ancestor,
			// so history was rewritten. Replay all of it.
			state = nil
			break
		}
		// A chain longer than the project's commit count has a cycle.
		if len(gc.Parents) > 1 || len(chain) > maxMetaChain || len(chain) > p.commits.Len() {
			ch.Err = fmt.Sprintf("meta history at %s is not linear", gc.Hash)
			return
		}
		h = gc.Parents[0]
	}
	if state == nil {
		state = notedb.NewChange()
	}
	// From here on state is modified: a failure part-way leaves it
	// inconsistent, so it is dropped and the next derivation replays
	// from the root.
	ch.state = nil
	var sha [40]byte
	parser, _ := c.parsers.Get().(*notedb.Parser)
	if parser == nil {
		parser = new(notedb.Parser)
	}
	defer c.parsers.Put(parser)
	for i := len(chain) - 1; i >= 0; i-- {
		gc := chain[i]
		msg, err := c.Text(gc.Msg)
		if err != nil {
			ch.Err = err.Error()
			return
		}
		hex.Encode(sha[:], gc.Hash[:])
		// The update is only valid until the next Parse, and Apply
		// keeps nothing of it.
		u, err := parser.Parse(notedb.Commit{
			SHA:       string(sha[:]),
			Message:   msg,
			Author:    notedb.Ident{Name: gc.Author.Name, Email: gc.Author.Email},
			Committer: notedb.Ident{Name: gc.Committer.Name, Email: gc.Committer.Email},
			Time:      gc.CommitTime.Time(),
		})
		if err == nil {
			err = state.Apply(u)
		}
		if err != nil {
			ch.Err = err.Error()
			return
		}
	}
	if ch.derived < 1<<30 {
		ch.derived++
	}
	if ch.derived > 1 {
		ch.state, ch.stateTip = state, ch.Meta
	}
	if err := state.Validate(); err != nil {
		ch.Err = err.Error()
		return
	}
	ch.Err = ""
	ch.ChangeID = state.ChangeID
	ch.Branch = strings.TrimPrefix(state.Branch, "refs/heads/")
	ch.Subject = state.Subject
	ch.Topic = state.Topic
	ch.Status = state.Status
	ch.Owner = int32(state.Owner)
	ch.Created = TimeOf(state.Created)
	ch.Updated = TimeOf(state.Updated)
	ch.Private = state.Private
	ch.WorkInProgress = state.WorkInProgress
	ch.Hashtags = slices.Clone(state.Hashtags)
	ch.CurrentPatchSet = int32(state.CurrentPatchSet())
	nums := state.PatchSetNumbers()
	ch.PatchSets = make([]GerritPatchSet, 0, len(nums))
	for _, n := range nums {
		ps := state.PatchSets[n]
		ch.PatchSets = append(ch.PatchSets, GerritPatchSet{Number: int32(n), Commit: hashOf(ps.Commit), Uploader: int32(ps.Uploader), Created: TimeOf(ps.Created)})
	}
	// Messages are only ever appended: keep the ones already derived
	// when the replay continued from them.
	if len(ch.Messages) > len(state.Messages) || len(ch.Messages) > 0 && ch.Messages[len(ch.Messages)-1].Meta != hashOf(state.Messages[len(ch.Messages)-1].ID) {
		ch.Messages = nil
	}
	for _, m := range state.Messages[len(ch.Messages):] {
		ch.Messages = append(ch.Messages, GerritMessage{Meta: hashOf(m.ID), Author: int32(m.Author), Time: TimeOf(m.Time), PatchSet: int32(m.PatchSet), Tag: m.Tag, Body: m.Body})
	}
	// A fresh slice: readers may hold the previous one (under the
	// corpus read lock, while another reader derives).
	votes := make([]GerritVote, 0, len(ch.Votes))
	for _, n := range nums {
		for _, a := range state.Votes(n) {
			votes = append(votes, GerritVote{PatchSet: int32(n), Account: int32(a.Account), Label: a.Label, Value: int8(a.Value), Copied: a.Copied, Granted: TimeOf(a.Granted)})
		}
	}
	ch.Votes = slices.Clip(votes)
}
