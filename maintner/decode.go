package maintner

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file decodes a record payload straight from the protobuf wire
// format (google.golang.org/protobuf/encoding/protowire) into small
// structs whose byte fields alias the payload. Loading a corpus decodes
// every record once; going through proto.Unmarshal would allocate a Go
// message and a string per field only to copy most of them again, which
// is where x/build's maintner spends its load time. Decoding validates
// the whole record before anything is applied, so a bad record changes
// nothing.
//
// Field numbers are those of golang.org/x/build/maintner/maintpb
// (maintner.proto); a field with an unexpected wire type is skipped like
// an unknown field, as proto.Unmarshal does. Repeated singular message
// fields merge, as protobuf requires.

// ErrBadRecord is wrapped by errors about payloads that are not valid
// mutation records.
var ErrBadRecord = errors.New("maintner: bad record")

var errFieldNumber = errors.New("field number out of range")

// field is one decoded protobuf field.
type field struct {
	num protowire.Number
	typ protowire.Type
	x   uint64 // varint and fixed values
	b   []byte // length-delimited values
}

// fieldIter walks the fields of one message.
type fieldIter struct {
	b   []byte
	err error
}

// next decodes the next field into f; it returns false at the end or on
// error (see it.err).
func (it *fieldIter) next(f *field) bool {
	if len(it.b) == 0 || it.err != nil {
		return false
	}
	// Fast path for what most fields of a record are: a one-byte tag
	// (field numbers 1-15) and a varint, or a length of one or two
	// bytes (bodies and raw commits are often longer than 127 bytes).
	// Anything else, including every malformed input, takes the general
	// path.
	if b := it.b; len(b) >= 2 && b[0] < 0x80 && b[0]>>3 != 0 {
		switch typ := protowire.Type(b[0] & 7); typ {
		case protowire.VarintType:
			// Up to 9 bytes (63 bits, so no overflow to check):
			// times, ids and counts.
			var x uint64
			for i := 1; i < len(b) && i <= 9; i++ {
				c := b[i]
				x |= uint64(c&0x7f) << (7 * (i - 1))
				if c < 0x80 {
					f.num, f.typ, f.x, f.b = protowire.Number(b[0]>>3), typ, x, nil
					it.b = b[i+1:]
					return true
				}
			}
		case protowire.BytesType:
			if b[1] < 0x80 {
				if n := int(b[1]); 2+n <= len(b) {
					f.num, f.typ, f.x, f.b = protowire.Number(b[0]>>3), typ, 0, b[2:2+n]
					it.b = b[2+n:]
					return true
				}
			} else if len(b) >= 3 && b[2] < 0x80 {
				if n := int(b[1]&0x7f) | int(b[2])<<7; 3+n <= len(b) {
					f.num, f.typ, f.x, f.b = protowire.Number(b[0]>>3), typ, 0, b[3:3+n]
					it.b = b[3+n:]
					return true
				}
			}
		}
	}
	num, typ, n := protowire.ConsumeTag(it.b)
	if n < 0 {
		it.err = protowire.ParseError(n)
		return false
	}
	if num > protowire.MaxValidNumber {
		// ConsumeTag accepts numbers up to 2^31-1; proto.Unmarshal,
		// and so x/build's reader, refuses them.
		it.err = errFieldNumber
		return false
	}
	it.b = it.b[n:]
	f.num, f.typ, f.x, f.b = num, typ, 0, nil
	switch typ {
	case protowire.VarintType:
		f.x, n = protowire.ConsumeVarint(it.b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(it.b)
		f.x = uint64(v)
	case protowire.Fixed64Type:
		f.x, n = protowire.ConsumeFixed64(it.b)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(it.b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, it.b)
	}
	if n < 0 {
		it.err = protowire.ParseError(n)
		return false
	}
	it.b = it.b[n:]
	return true
}

func (f *field) isVarint() bool { return f.typ == protowire.VarintType }
func (f *field) isBytes() bool  { return f.typ == protowire.BytesType }

// dTime is a decoded google.protobuf.Timestamp.
type dTime struct {
	set bool
	t   Time
}

func decodeTime(b []byte) (dTime, error) {
	var sec, nsec int64
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isVarint():
			sec = int64(f.x)
		case f.num == 2 && f.isVarint():
			nsec = int64(int32(f.x))
		}
	}
	if it.err != nil {
		return dTime{}, it.err
	}
	return dTime{set: true, t: timeOfParts(sec, nsec)}, nil
}

// timeOfParts converts a Timestamp's seconds and nanoseconds. Times
// outside what int64 nanoseconds hold (years 1678-2262) are clamped
// rather than wrapped.
func timeOfParts(sec, nsec int64) Time {
	const maxSec = int64(math.MaxInt64/1_000_000_000) - 1
	switch {
	case sec > maxSec:
		return Time(math.MaxInt64)
	case sec < -maxSec:
		return Time(math.MinInt64 + 1)
	}
	return Time(sec*1e9 + nsec)
}

// dUser is a decoded GithubUser.
type dUser struct {
	set   bool // the field was present
	id    int64
	login []byte
}

func decodeUser(b []byte) (dUser, error) {
	u := dUser{set: true}
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isVarint():
			u.id = int64(f.x)
		case f.num == 2 && f.isBytes():
			u.login = f.b
		}
	}
	return u, it.err
}

// decodeWrapped decodes BoolChange / StringChange (field 1).
func decodeBoolChange(b []byte) (bool, error) {
	var v bool
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		if f.num == 1 && f.isVarint() {
			v = f.x != 0
		}
	}
	return v, it.err
}

func decodeStringChange(b []byte) ([]byte, error) {
	var v []byte
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		if f.num == 1 && f.isBytes() {
			v = f.b
		}
	}
	return v, it.err
}

type dLabel struct {
	id   int64
	name []byte
}

func decodeLabel(b []byte) (dLabel, error) {
	var l dLabel
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isVarint():
			l.id = int64(f.x)
		case f.num == 2 && f.isBytes():
			l.name = f.b
		}
	}
	return l, it.err
}

type dMilestone struct {
	id        int64
	title     []byte
	closedSet bool
	closed    bool
	number    int64
}

func decodeMilestone(b []byte) (dMilestone, error) {
	var m dMilestone
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isVarint():
			m.id = int64(f.x)
		case f.num == 2 && f.isBytes():
			m.title = f.b
		case f.num == 3 && f.isBytes():
			v, err := decodeBoolChange(f.b)
			if err != nil {
				return m, err
			}
			m.closedSet, m.closed = true, v
		case f.num == 4 && f.isVarint():
			m.number = int64(f.x)
		}
	}
	return m, it.err
}

type dComment struct {
	id      int64
	user    dUser // by value: a pointer would cost an allocation per record
	body    []byte
	created dTime
	updated dTime
}

func decodeComment(b []byte) (dComment, error) {
	var c dComment
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch {
		case f.num == 1 && f.isVarint():
			c.id = int64(f.x)
		case f.num == 2 && f.isBytes():
			c.user, err = decodeUser(f.b)
		case f.num == 3 && f.isBytes():
			c.body = f.b
		case f.num == 4 && f.isBytes():
			c.created, err = decodeTime(f.b)
		case f.num == 5 && f.isBytes():
			c.updated, err = decodeTime(f.b)
		}
		if err != nil {
			return c, err
		}
	}
	return c, it.err
}

type dEvent struct {
	id         int64
	typ        []byte
	actor      int64
	created    dTime
	label      []byte // label name
	milestone  []byte // milestone title
	assignee   int64
	commit     []byte // commit id
	renameFrom []byte
	renameTo   []byte
	reviewer   int64
}

func decodeEvent(b []byte) (dEvent, error) {
	var e dEvent
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch {
		case f.num == 1 && f.isVarint():
			e.id = int64(f.x)
		case f.num == 2 && f.isBytes():
			e.typ = f.b
		case f.num == 3 && f.isVarint():
			e.actor = int64(f.x)
		case f.num == 4 && f.isBytes():
			e.created, err = decodeTime(f.b)
		case f.num == 5 && f.isBytes():
			var l dLabel
			l, err = decodeLabel(f.b)
			e.label = l.name
		case f.num == 6 && f.isBytes():
			var m dMilestone
			m, err = decodeMilestone(f.b)
			e.milestone = m.title
		case f.num == 7 && f.isVarint():
			e.assignee = int64(f.x)
		case f.num == 9 && f.isBytes():
			var g fieldIter
			g.b = f.b
			var gf field
			for g.next(&gf) {
				if gf.num == 3 && gf.isBytes() {
					e.commit = gf.b
				}
			}
			err = g.err
		case f.num == 11 && f.isBytes():
			e.renameFrom = f.b
		case f.num == 12 && f.isBytes():
			e.renameTo = f.b
		case f.num == 13 && f.isVarint():
			e.reviewer = int64(f.x)
		}
		if err != nil {
			return e, err
		}
	}
	return e, it.err
}

type dReview struct {
	id          int64
	actor       int64
	created     dTime
	body        []byte
	state       []byte
	commitID    []byte
	association []byte
}

func decodeReview(b []byte) (dReview, error) {
	var r dReview
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch {
		case f.num == 1 && f.isVarint():
			r.id = int64(f.x)
		case f.num == 2 && f.isVarint():
			r.actor = int64(f.x)
		case f.num == 3 && f.isBytes():
			r.created, err = decodeTime(f.b)
		case f.num == 4 && f.isBytes():
			r.body = f.b
		case f.num == 5 && f.isBytes():
			r.state = f.b
		case f.num == 6 && f.isBytes():
			r.commitID = f.b
		case f.num == 7 && f.isBytes():
			r.association = f.b
		}
		if err != nil {
			return r, err
		}
	}
	return r, it.err
}

// decodeInt64s appends the values of a repeated int64 field, packed or
// not.
func decodeInt64s(dst []int64, f *field) ([]int64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(dst, int64(f.x)), nil
	case protowire.BytesType:
		b := f.b
		for len(b) > 0 {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return dst, protowire.ParseError(n)
			}
			dst = append(dst, int64(v))
			b = b[n:]
		}
	}
	return dst, nil
}

// dIssue is a decoded GithubIssueMutation.
type dIssue struct {
	owner, repo      []byte
	number           int32
	notExist         bool
	id               int64
	user             dUser
	assignees        []dUser
	deletedAssignees []int64
	created, updated dTime
	title            []byte
	bodyChangeSet    bool
	bodyChange       []byte
	body             []byte
	noMilestone      bool
	milestoneID      int64
	milestoneNum     int64
	milestoneTitle   []byte
	closedSet        bool
	closed           bool
	lockedSet        bool
	locked           bool
	pullRequest      bool
	closedAt         dTime
	closedBy         dUser
	removeLabel      []int64
	addLabel         []dLabel
	comments         []dComment
	events           []dEvent
	reviews          []dReview
}

func (d *dIssue) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch f.num {
		case 1:
			if f.isBytes() {
				d.owner = f.b
			}
		case 2:
			if f.isBytes() {
				d.repo = f.b
			}
		case 3:
			if f.isVarint() {
				d.number = int32(f.x)
			}
		case 4:
			if f.isBytes() {
				d.user, err = decodeUser(f.b)
			}
		case 5:
			if f.isBytes() {
				d.created, err = decodeTime(f.b)
			}
		case 6:
			if f.isBytes() {
				d.updated, err = decodeTime(f.b)
			}
		case 7:
			if f.isBytes() {
				d.body = f.b
			}
		case 8:
			if f.isBytes() {
				var c dComment
				c, err = decodeComment(f.b)
				d.comments = append(d.comments, c)
			}
		case 9:
			if f.isBytes() {
				d.title = f.b
			}
		case 10:
			if f.isBytes() {
				var u dUser
				u, err = decodeUser(f.b)
				d.assignees = append(d.assignees, u)
			}
		case 11:
			d.deletedAssignees, err = decodeInt64s(d.deletedAssignees, &f)
		case 12:
			if f.isVarint() {
				d.id = int64(f.x)
			}
		case 13:
			if f.isVarint() {
				d.notExist = f.x != 0
			}
		case 15:
			if f.isVarint() {
				d.noMilestone = f.x != 0
			}
		case 16:
			if f.isVarint() {
				d.milestoneID = int64(f.x)
			}
		case 17:
			if f.isVarint() {
				d.milestoneNum = int64(f.x)
			}
		case 18:
			if f.isBytes() {
				d.milestoneTitle = f.b
			}
		case 19:
			if f.isBytes() {
				d.closedSet = true
				d.closed, err = decodeBoolChange(f.b)
			}
		case 21:
			if f.isBytes() {
				d.closedAt, err = decodeTime(f.b)
			}
		case 22:
			if f.isBytes() {
				d.closedBy, err = decodeUser(f.b)
			}
		case 23:
			d.removeLabel, err = decodeInt64s(d.removeLabel, &f)
		case 24:
			if f.isBytes() {
				var l dLabel
				l, err = decodeLabel(f.b)
				d.addLabel = append(d.addLabel, l)
			}
		case 25:
			if f.isBytes() {
				d.lockedSet = true
				d.locked, err = decodeBoolChange(f.b)
			}
		case 26:
			if f.isBytes() {
				var e dEvent
				e, err = decodeEvent(f.b)
				d.events = append(d.events, e)
			}
		case 28:
			if f.isVarint() {
				d.pullRequest = f.x != 0
			}
		case 29:
			if f.isBytes() {
				var r dReview
				r, err = decodeReview(f.b)
				d.reviews = append(d.reviews, r)
			}
		case 31:
			if f.isBytes() {
				d.bodyChangeSet = true
				d.bodyChange, err = decodeStringChange(f.b)
			}
		}
		if err != nil {
			return fmt.Errorf("github_issue field %d: %w", f.num, err)
		}
	}
	return it.err
}

// dGithub is a decoded GithubMutation.
type dGithub struct {
	owner, repo []byte
	labels      []dLabel
	milestones  []dMilestone
}

func (d *dGithub) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch {
		case f.num == 1 && f.isBytes():
			d.owner = f.b
		case f.num == 2 && f.isBytes():
			d.repo = f.b
		case f.num == 3 && f.isBytes():
			var l dLabel
			l, err = decodeLabel(f.b)
			d.labels = append(d.labels, l)
		case f.num == 4 && f.isBytes():
			var m dMilestone
			m, err = decodeMilestone(f.b)
			d.milestones = append(d.milestones, m)
		}
		if err != nil {
			return fmt.Errorf("github field %d: %w", f.num, err)
		}
	}
	return it.err
}

// dCommit is a decoded GitCommit: the raw "git cat-file commit" bytes
// already parsed (parsing is part of decoding so that it runs on the
// parallel decode workers).
type dCommit struct {
	hash  GitHash
	raw   rawCommit
	files []dFile
	meta  bool // isMetaCommit(raw.msg)
	// pre, when set, is the commit's GitCommit built ahead by a
	// prebuilder, lacking only its identities (see Corpus.makeCommit),
	// and preText the bytes of text it holds.
	pre     *GitCommit
	preText int64
}

type dFile struct {
	name           []byte
	added, deleted int64
	binary         bool
}

func decodeCommit(b []byte) (dCommit, error) {
	var c dCommit
	err := c.decode(b)
	return c, err
}

// decode decodes a GitCommit into c, reusing the capacity of its parents
// and files (a recycled Gerrit record's commits then cost no allocation).
func (c *dCommit) decode(b []byte) error {
	*c = dCommit{raw: rawCommit{parents: c.raw.parents[:0]}, files: c.files[:0]}
	// (pre is cleared too: a recycled record never carries a stale one.)
	var sha, raw []byte
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isBytes():
			sha = f.b
		case f.num == 2 && f.isBytes():
			raw = f.b
		case f.num == 3 && f.isBytes():
			var t fieldIter
			t.b = f.b
			var tf field
			for t.next(&tf) {
				if tf.num != 1 || !tf.isBytes() {
					continue
				}
				var df dFile
				var ft fieldIter
				ft.b = tf.b
				var ff field
				for ft.next(&ff) {
					switch {
					case ff.num == 1 && ff.isBytes():
						df.name = ff.b
					case ff.num == 2 && ff.isVarint():
						df.added = int64(ff.x)
					case ff.num == 3 && ff.isVarint():
						df.deleted = int64(ff.x)
					case ff.num == 4 && ff.isVarint():
						df.binary = ff.x != 0
					}
				}
				if ft.err != nil {
					return ft.err
				}
				c.files = append(c.files, df)
			}
			if t.err != nil {
				return t.err
			}
		}
	}
	if it.err != nil {
		return it.err
	}
	h, err := parseGitHash(sha)
	if err != nil {
		return fmt.Errorf("commit sha1: %w", err)
	}
	c.hash = h
	if err := parseRawCommit(raw, &c.raw); err != nil {
		return fmt.Errorf("commit %s: %w", h, err)
	}
	c.meta = isMetaCommit(c.raw.msg)
	return nil
}

// dGit is a decoded GitMutation.
type dGit struct {
	repo   []byte
	commit *dCommit
}

func (d *dGit) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isBytes():
			var r fieldIter
			r.b = f.b
			var rf field
			for r.next(&rf) {
				if rf.num == 1 && rf.isBytes() {
					d.repo = rf.b
				}
			}
			if r.err != nil {
				return fmt.Errorf("git repo: %w", r.err)
			}
		case f.num == 2 && f.isBytes():
			c, err := decodeCommit(f.b)
			if err != nil {
				return fmt.Errorf("git: %w", err)
			}
			d.commit = &c
		}
	}
	return it.err
}

type dRef struct {
	name []byte
	hash GitHash
}

// dGerrit is a decoded GerritMutation.
type dGerrit struct {
	project     []byte
	commits     []dCommit
	refs        []dRef
	deletedRefs [][]byte
}

func (d *dGerrit) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isBytes():
			d.project = f.b
		case f.num == 2 && f.isBytes():
			n := len(d.commits)
			if n < cap(d.commits) {
				d.commits = d.commits[:n+1]
			} else {
				d.commits = append(d.commits, dCommit{})
			}
			if err := d.commits[n].decode(f.b); err != nil {
				return fmt.Errorf("gerrit: %w", err)
			}
		case f.num == 3 && f.isBytes():
			var r dRef
			var sha []byte
			var rt fieldIter
			rt.b = f.b
			var rf field
			for rt.next(&rf) {
				switch {
				case rf.num == 1 && rf.isBytes():
					r.name = rf.b
				case rf.num == 2 && rf.isBytes():
					sha = rf.b
				}
			}
			if rt.err != nil {
				return fmt.Errorf("gerrit ref: %w", rt.err)
			}
			h, err := parseGitHash(sha)
			if err != nil {
				return fmt.Errorf("gerrit ref %q: %w", r.name, err)
			}
			r.hash = h
			d.refs = append(d.refs, r)
		case f.num == 4 && f.isBytes():
			d.deletedRefs = append(d.deletedRefs, f.b)
		}
	}
	return it.err
}

// decoded is one decoded record.
type decoded struct {
	issue  *dIssue
	git    *dGit
	github *dGithub
	gerrit *dGerrit
	ext    *dExt
	loc    recordLoc // where the record lies, when loading
	spare  spare
}

// decodeRecord decodes a record payload. Nothing is applied; a nil error
// means the whole record is well formed.
func decodeRecord(b []byte) (*decoded, error) {
	d := &decoded{}
	if err := d.decode(b); err != nil {
		return nil, err
	}
	return d, nil
}

// spare keeps the inner structures of a decoded record for reuse (see
// decodedPool); present reports which of them the record used.
type spare struct {
	issue  *dIssue
	git    *dGit
	github *dGithub
	gerrit *dGerrit
	ext    *dExt
}

// reset empties d for reuse, keeping the capacity of its slices.
func (d *decoded) reset() {
	sp := d.spare
	if d.issue != nil {
		i := d.issue
		*i = dIssue{assignees: i.assignees[:0], deletedAssignees: i.deletedAssignees[:0], removeLabel: i.removeLabel[:0],
			addLabel: i.addLabel[:0], comments: i.comments[:0], events: i.events[:0], reviews: i.reviews[:0]}
		sp.issue = i
	}
	if d.git != nil {
		*d.git = dGit{}
		sp.git = d.git
	}
	if d.github != nil {
		g := d.github
		*g = dGithub{labels: g.labels[:0], milestones: g.milestones[:0]}
		sp.github = g
	}
	if d.gerrit != nil {
		g := d.gerrit
		// The commits keep their parents' and files' capacity for reuse
		// (dCommit.decode resets them); what they point into is the
		// recycled segment buffer.
		*g = dGerrit{commits: g.commits[:0], refs: g.refs[:0], deletedRefs: g.deletedRefs[:0]}
		sp.gerrit = g
	}
	if d.ext != nil {
		d.ext.reset()
		sp.ext = d.ext
	}
	*d = decoded{spare: sp}
}

// decode decodes a record payload into d, which is empty (new or reset).
func (d *decoded) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch {
		case f.num == 1 && f.isBytes():
			if d.issue == nil {
				d.issue = d.spare.issue
				if d.issue == nil {
					d.issue = &dIssue{}
				}
			}
			err = d.issue.decode(f.b)
		case f.num == 2 && f.isBytes():
			if d.git == nil {
				d.git = d.spare.git
				if d.git == nil {
					d.git = &dGit{}
				}
			}
			err = d.git.decode(f.b)
		case f.num == 3 && f.isBytes():
			if d.github == nil {
				d.github = d.spare.github
				if d.github == nil {
					d.github = &dGithub{}
				}
			}
			err = d.github.decode(f.b)
		case f.num == 4 && f.isBytes():
			if d.gerrit == nil {
				d.gerrit = d.spare.gerrit
				if d.gerrit == nil {
					d.gerrit = &dGerrit{}
				}
			}
			err = d.gerrit.decode(f.b)
		case f.num >= 100:
			if d.ext == nil {
				d.ext = d.spare.ext
				if d.ext == nil {
					d.ext = &dExt{}
				}
			}
			if err = d.ext.field(&f); err != nil {
				err = fmt.Errorf("tryd extension: %w", err)
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadRecord, err)
		}
	}
	if it.err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, it.err)
	}
	return nil
}
