package maintner

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// This file decodes tryd's extension fields (trydpb.Ext, numbered 100
// and up) from the wire format, like decode.go does maintpb's: a record
// with a pull request, statuses or check runs then costs no generated
// message, no reflection and no string allocation until applying keeps
// what it needs. Semantics follow proto.Unmarshal with DiscardUnknown:
// unknown fields and fields of an unexpected wire type are skipped,
// repeated singular messages merge, and a string field that is not
// valid UTF-8 makes the record bad (trydpb is proto3).

var errNotUTF8 = errors.New("string field is not valid UTF-8")

// extString checks a string field.
func extString(b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		return nil, errNotUTF8
	}
	return b, nil
}

// dBoolWrap is a decoded trydpb.BoolWrap: set when present.
type dBoolWrap struct{ set, val bool }

// merge decodes a BoolWrap into w (a later occurrence without val keeps
// the earlier value, as message merging does).
func (w *dBoolWrap) merge(b []byte) error {
	w.set = true
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		if f.num == 1 && f.isVarint() {
			w.val = f.x != 0
		}
	}
	return it.err
}

// dStamp is a decoded google.protobuf.Timestamp of an extension field,
// kept in parts so that a repeated occurrence merges field by field.
type dStamp struct {
	set  bool
	sec  int64
	nsec int32
}

func (t *dStamp) merge(b []byte) error {
	t.set = true
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		switch {
		case f.num == 1 && f.isVarint():
			t.sec = int64(f.x)
		case f.num == 2 && f.isVarint():
			t.nsec = int32(f.x)
		}
	}
	return it.err
}

// time returns the Time of t (0 when not set).
func (t *dStamp) time() Time {
	if !t.set {
		return 0
	}
	return timeOfParts(t.sec, int64(t.nsec))
}

// dRepoExt is a decoded trydpb.GithubRepo.
type dRepoExt struct {
	set           bool
	owner, repo   []byte
	id            int64
	defaultBranch []byte
	private       bool
}

func (r *dRepoExt) merge(b []byte) error {
	r.set = true
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		switch {
		case f.num == 1 && f.isBytes():
			r.owner, err = extString(f.b)
		case f.num == 2 && f.isBytes():
			r.repo, err = extString(f.b)
		case f.num == 3 && f.isVarint():
			r.id = int64(f.x)
		case f.num == 4 && f.isBytes():
			r.defaultBranch, err = extString(f.b)
		case f.num == 5 && f.isVarint():
			r.private = f.x != 0
		}
		if err != nil {
			return fmt.Errorf("github_repo field %d: %w", f.num, err)
		}
	}
	return it.err
}

// dPR is a decoded trydpb.GithubPullRequest.
type dPR struct {
	set                        bool
	owner, repo                []byte
	number                     int32
	headSHA, headRef, headRepo []byte
	baseSHA, baseRef           []byte
	merged, draft              dBoolWrap
	mergeCommitSHA             []byte
	mergedAt, updated          dStamp
}

func (p *dPR) merge(b []byte) error {
	p.set = true
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		if f.isBytes() {
			switch f.num {
			case 1:
				p.owner, err = extString(f.b)
			case 2:
				p.repo, err = extString(f.b)
			case 4:
				p.headSHA, err = extString(f.b)
			case 5:
				p.headRef, err = extString(f.b)
			case 6:
				p.headRepo, err = extString(f.b)
			case 7:
				p.baseSHA, err = extString(f.b)
			case 8:
				p.baseRef, err = extString(f.b)
			case 9:
				err = p.merged.merge(f.b)
			case 10:
				err = p.draft.merge(f.b)
			case 11:
				p.mergeCommitSHA, err = extString(f.b)
			case 12:
				err = p.mergedAt.merge(f.b)
			case 13:
				err = p.updated.merge(f.b)
			}
		} else if f.num == 3 && f.isVarint() {
			p.number = int32(f.x)
		}
		if err != nil {
			return fmt.Errorf("github_pull_request field %d: %w", f.num, err)
		}
	}
	return it.err
}

// dStatus is a decoded trydpb.GithubStatus.
type dStatus struct {
	owner, repo, sha, context []byte
	state, description        []byte
	targetURL                 []byte
	id, creatorID             int64
	created, updated          dStamp
}

func (s *dStatus) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		if f.isBytes() {
			switch f.num {
			case 1:
				s.owner, err = extString(f.b)
			case 2:
				s.repo, err = extString(f.b)
			case 3:
				s.sha, err = extString(f.b)
			case 4:
				s.context, err = extString(f.b)
			case 5:
				s.state, err = extString(f.b)
			case 6:
				s.description, err = extString(f.b)
			case 7:
				s.targetURL, err = extString(f.b)
			case 9:
				err = s.created.merge(f.b)
			case 10:
				err = s.updated.merge(f.b)
			}
		} else if f.isVarint() {
			switch f.num {
			case 8:
				s.id = int64(f.x)
			case 11:
				s.creatorID = int64(f.x)
			}
		}
		if err != nil {
			return fmt.Errorf("github_status field %d: %w", f.num, err)
		}
	}
	return it.err
}

// dCheckRun is a decoded trydpb.GithubCheckRun.
type dCheckRun struct {
	owner, repo            []byte
	id, appID              int64
	headSHA, name, status  []byte
	conclusion, detailsURL []byte
	externalID             []byte
	started, completed     dStamp
}

func (r *dCheckRun) decode(b []byte) error {
	var f field
	it := fieldIter{b: b}
	for it.next(&f) {
		var err error
		if f.isBytes() {
			switch f.num {
			case 1:
				r.owner, err = extString(f.b)
			case 2:
				r.repo, err = extString(f.b)
			case 4:
				r.headSHA, err = extString(f.b)
			case 5:
				r.name, err = extString(f.b)
			case 6:
				r.status, err = extString(f.b)
			case 7:
				r.conclusion, err = extString(f.b)
			case 8:
				r.detailsURL, err = extString(f.b)
			case 9:
				r.externalID, err = extString(f.b)
			case 10:
				err = r.started.merge(f.b)
			case 11:
				err = r.completed.merge(f.b)
			}
		} else if f.isVarint() {
			switch f.num {
			case 3:
				r.id = int64(f.x)
			case 12:
				r.appID = int64(f.x)
			}
		}
		if err != nil {
			return fmt.Errorf("github_check_run field %d: %w", f.num, err)
		}
	}
	return it.err
}

// dExt is a decoded trydpb.Ext.
type dExt struct {
	repo      dRepoExt
	pr        dPR
	statuses  []dStatus
	checkRuns []dCheckRun
}

// used reports whether the record carried any extension field.
func (x *dExt) used() bool {
	return x.repo.set || x.pr.set || len(x.statuses) > 0 || len(x.checkRuns) > 0
}

// reset empties x for reuse, keeping the capacity of its slices.
func (x *dExt) reset() {
	*x = dExt{statuses: x.statuses[:0], checkRuns: x.checkRuns[:0]}
}

// field decodes one extension field of a record.
func (x *dExt) field(f *field) error {
	if !f.isBytes() {
		return nil
	}
	switch f.num {
	case 100:
		return x.repo.merge(f.b)
	case 101:
		return x.pr.merge(f.b)
	case 102:
		x.statuses = append(x.statuses, dStatus{})
		return x.statuses[len(x.statuses)-1].decode(f.b)
	case 103:
		x.checkRuns = append(x.checkRuns, dCheckRun{})
		return x.checkRuns[len(x.checkRuns)-1].decode(f.b)
	}
	return nil
}
