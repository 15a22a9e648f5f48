package maintner

import (
	"bytes"
	"slices"
	"strings"
)

// commitBuilder turns decoded commits into GitCommits. The applier has
// one over the corpus's own arena and intern table (Corpus.makeCommit);
// while loading, each decode worker has its own (prebuilder) and builds
// every commit of its records before they reach the applier, which then
// only interns the two identities and inserts the commit. Commits are
// the bulk of a Gerrit log, and the applier is the one goroutine that
// bounds how fast a log loads, so most of their cost moves to the
// workers that run in parallel.
type commitBuilder struct {
	text *arena
	// intern and internSubject intern file names and the subjects of
	// meta commits.
	intern, internSubject func([]byte) string
	// commits and hashes are slabs that commits and their parent lists
	// are cut from: one allocation per many commits (nil: allocate
	// each).
	commits []GitCommit
	hashes  []GitHash
	slabs   bool
}

const (
	commitSlab = 128
	hashSlab   = 1024
)

func (b *commitBuilder) newCommit() *GitCommit {
	if !b.slabs {
		return new(GitCommit)
	}
	if len(b.commits) == 0 {
		b.commits = make([]GitCommit, commitSlab)
	}
	gc := &b.commits[0]
	b.commits = b.commits[1:]
	return gc
}

func (b *commitBuilder) parents(ps []GitHash) []GitHash {
	if len(ps) == 0 {
		return nil
	}
	if !b.slabs || len(ps) > hashSlab/8 {
		return slices.Clone(ps)
	}
	if len(b.hashes) < len(ps) {
		b.hashes = make([]GitHash, hashSlab)
	}
	out := b.hashes[:len(ps):len(ps)] // full cap: appending copies
	copy(out, ps)
	b.hashes = b.hashes[len(ps):]
	return out
}

// build makes the GitCommit of d, except its Author and Committer; loc
// locates the record (nil when its text must be kept in memory). It
// returns how many bytes of text the commit holds (Stats.TextBytes).
func (b *commitBuilder) build(d *dCommit, loc *recordLoc) (*GitCommit, int64) {
	gc := b.newCommit()
	*gc = GitCommit{
		Hash:       d.hash,
		Tree:       d.raw.tree,
		Parents:    b.parents(d.raw.parents),
		AuthorTime: d.raw.authorTime,
		CommitTime: d.raw.committerTime,
		AuthorTZ:   d.raw.authorTZ,
		CommitTZ:   d.raw.committerTZ,
	}
	subject, _, _ := bytes.Cut(d.raw.msg, []byte("\n"))
	n := int64(len(d.raw.msg))
	if d.meta {
		// The change state is derived from meta commits: keep them at
		// hand. Their subjects ("Update patch set 3") repeat.
		gc.Msg = Text{s: b.text.copy(d.raw.msg)}
		gc.Subject = b.internSubject(subject)
	} else {
		gc.Msg = textIn(b.text, loc, d.raw.msg)
		gc.Subject = b.text.copy(subject)
		n += int64(len(subject))
	}
	if len(d.files) > 0 {
		gc.Files = make([]GitFileStat, len(d.files))
		for i, f := range d.files {
			gc.Files[i] = GitFileStat{Name: b.intern(f.name), Added: int32(f.added), Deleted: int32(f.deleted), Binary: f.binary}
		}
		// slices.SortFunc, unlike sort.Slice, allocates nothing.
		slices.SortFunc(gc.Files, func(a, b GitFileStat) int { return strings.Compare(a.Name, b.Name) })
	}
	return gc, n
}

// prebuilder is a decode worker's commitBuilder, with its own arena and
// intern tables (file names and meta subjects, which repeat: each worker
// keeps one copy of each).
type prebuilder struct {
	commitBuilder
	arena arena
	// names and subjects are apart so that the few subjects ("Update
	// patch set 3", one per meta commit) are looked up in a table small
	// enough to stay in cache, not among thousands of file names.
	names, subjects map[string]string
	// refs says whether text may be left in the log (see textOf).
	refs bool
}

func newPrebuilder(refs bool) *prebuilder {
	p := &prebuilder{names: make(map[string]string), subjects: make(map[string]string), refs: refs}
	p.commitBuilder = commitBuilder{text: &p.arena, intern: p.internName, internSubject: p.internSubject, slabs: true}
	return p
}

func (p *prebuilder) internName(b []byte) string    { return p.internIn(p.names, b) }
func (p *prebuilder) internSubject(b []byte) string { return p.internIn(p.subjects, b) }

func (p *prebuilder) internIn(strs map[string]string, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := strs[string(b)]; ok {
		return s
	}
	s := p.arena.copy(b)
	strs[s] = s
	return s
}

// prebuild builds the commits of a decoded record (see commitBuilder).
func (p *prebuilder) prebuild(d *decoded) {
	var loc *recordLoc
	if p.refs {
		loc = &d.loc
	}
	if d.gerrit != nil {
		for i := range d.gerrit.commits {
			dc := &d.gerrit.commits[i]
			dc.pre, dc.preText = p.build(dc, loc)
		}
	}
	if d.git != nil && d.git.commit != nil {
		dc := d.git.commit
		dc.pre, dc.preText = p.build(dc, loc)
	}
}

// makeCommit turns a decoded commit into a GitCommit, completing the
// one a prebuilder made if there is one.
func (c *Corpus) makeCommit(d *dCommit) *GitCommit {
	gc := d.pre
	if gc != nil {
		d.pre = nil
		c.text.used += d.preText
	} else {
		// c.text counts the text itself.
		b := commitBuilder{text: &c.text, intern: c.str, internSubject: c.str}
		gc, _ = b.build(d, c.cur)
	}
	gc.Author = c.gitPerson(d.raw.authorIdent, d.raw.authorName, d.raw.authorEmail)
	gc.Committer = c.gitPerson(d.raw.committerIdent, d.raw.committerName, d.raw.committerEmail)
	return gc
}
