// Package jobset is the job set the SQL stores of the coordinator's state
// share (state/sqlite and state/pgstate): the finished jobs a build is
// created with (the cached jobs of a submission, thousands for a
// resubmitted graph) are stored as one record per build and state instead
// of one row each. A row costs an index insertion and eleven bound
// parameters per job; a set costs one encoding of a few bytes per field.
//
// Invariant of both stores: a job is in a set or in the jobs rows, never
// both. A later write of a job in a set removes it from the set in the
// same transaction (the coordinator never writes one, in practice: its
// jobs are finished), so that reads need not merge. Index finds those
// writes without reading the sets.
//
// A set's encoding (version 1):
//
//	set  = 0x01 uvarint(count) job*
//	job  = str(job_id) str(name) varint(seq) str(worker) str(output_digest)
//	       exit str(error) varint(started) varint(finished)
//	exit = 0x00 | 0x01 varint(exit_code)
//	str  = uvarint(length) bytes
//
// Times are Unix nanoseconds, 0 for the zero time (as in sqlrow); the
// state and the build ID are the record's.
package jobset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/internal/sqlrow"
)

const version = 1

// minEncodedJob is the least size of one encoded job: eight one-byte
// lengths or varints and the exit tag. It bounds the count a set may
// claim, so a corrupt count cannot make the decoder allocate.
const minEncodedJob = 9

// ErrBad is wrapped by every decoding error.
var ErrBad = errors.New("bad job set")

// Encode encodes jobs (their BuildID and State are not kept).
func Encode(jobs []state.Job) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, j := range jobs {
		n += len(j.JobID) + len(j.Name) + len(j.Worker) + len(j.OutputDigest) + len(j.Error) + 6*binary.MaxVarintLen64 + 2
	}
	b := make([]byte, 0, n)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(jobs)))
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, j := range jobs {
		str(j.JobID)
		str(j.Name)
		b = binary.AppendVarint(b, int64(j.Seq))
		str(j.Worker)
		str(j.OutputDigest)
		if j.ExitCode == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = binary.AppendVarint(b, int64(*j.ExitCode))
		}
		str(j.Error)
		b = binary.AppendVarint(b, sqlrow.Nanos(j.Started))
		b = binary.AppendVarint(b, sqlrow.Nanos(j.Finished))
	}
	return b
}

// decoder reads an encoded set, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at %d bytes from the end", ErrBad, what, len(d.b))
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 { return readNum(d, what, binary.Uvarint) }

func (d *decoder) varint(what string) int64 { return readNum(d, what, binary.Varint) }

// readNum reads one varint with read (binary.Uvarint or binary.Varint).
func readNum[T int64 | uint64](d *decoder, what string, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(what string) string {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// Decode decodes a set of the given build and state.
func Decode(b []byte, buildID int64, st api.JobState) ([]state.Job, error) {
	if len(b) == 0 || b[0] != version {
		return nil, fmt.Errorf("%w: unknown version", ErrBad)
	}
	d := &decoder{b: b[1:]}
	n := d.uvarint("count")
	if n > uint64(len(d.b)/minEncodedJob) {
		return nil, fmt.Errorf("%w: %d jobs in %d bytes", ErrBad, n, len(d.b))
	}
	jobs := make([]state.Job, 0, n)
	for range n {
		j := state.Job{BuildID: buildID, State: st}
		j.JobID = d.str("job ID")
		j.Name = d.str("name")
		j.Seq = int(d.varint("seq"))
		j.Worker = d.str("worker")
		j.OutputDigest = d.str("output digest")
		switch tag := d.uvarint("exit code"); tag {
		case 0:
		case 1:
			code := int(d.varint("exit code"))
			j.ExitCode = &code
		default:
			d.fail("exit code")
		}
		j.Error = d.str("error")
		j.Started = sqlrow.Time(d.varint("started"))
		j.Finished = sqlrow.Time(d.varint("finished"))
		if d.err != nil {
			return nil, d.err
		}
		jobs = append(jobs, j)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last job", ErrBad, len(d.b))
	}
	return jobs, nil
}

// ScanJobs scans one row of a query that reads a build's jobs rows and
// sets together (one statement, one snapshot): sqlrow.JobCols and then a
// set, NULL for a row; a set's row holds its build ID and state in those
// columns. It returns the row's job or the set's jobs, and whether the
// row was a set.
func ScanJobs(sc sqlrow.Scanner) (jobs []state.Job, isSet bool, err error) {
	var set []byte
	j, err := sqlrow.ScanJob(withSet{sc, &set})
	if err != nil {
		return nil, false, err
	}
	if set == nil {
		return []state.Job{j}, false, nil
	}
	jobs, err = Decode(set, j.BuildID, j.State)
	if err != nil {
		return nil, true, fmt.Errorf("job set %s of build %d: %w", j.State, j.BuildID, err)
	}
	return jobs, true, nil
}

// withSet scans sqlrow.JobCols and then a job set.
type withSet struct {
	sc  sqlrow.Scanner
	set *[]byte
}

func (w withSet) Scan(dest ...any) error { return w.sc.Scan(append(dest, w.set)...) }

// Remove returns jobs without those whose IDs are in ids, and whether it
// removed any.
func Remove(jobs []state.Job, ids map[string]bool) ([]state.Job, bool) {
	kept := slices.DeleteFunc(slices.Clone(jobs), func(j state.Job) bool { return ids[j.JobID] })
	return kept, len(kept) < len(jobs)
}

// Index knows, for the builds a store has written or read lately, which
// job IDs their sets hold, as sorted 64-bit hashes: a commit finds the
// jobs it must take out of a set without reading the set (a hash that
// matches is confirmed against the set itself). A set is made with its
// build and only loses jobs afterwards, so what the index remembers can
// only hold too much, never miss a job, even if other processes write
// the database too, provided that "no sets" is recorded only for a build
// known to exist. An Index is not safe for concurrent use: its store
// serializes the calls.
type Index struct {
	seed maphash.Seed
	// builds maps a build to its sets' hashes; an empty slice says the
	// build has no sets, a missing entry that it is not known.
	builds map[int64][]uint64
	// size counts the entries and hashes held, bounded by max.
	size, max int
}

// MaxIndex is the usual bound of an Index (8 bytes a hash: 8 MiB).
// Forgotten builds are read again when next written.
const MaxIndex = 1 << 20

// NewIndex returns an empty index that holds at most max entries and
// hashes.
func NewIndex(max int) *Index {
	return &Index{seed: maphash.MakeSeed(), builds: map[int64][]uint64{}, max: max}
}

// Hash returns the hash of a job ID.
func (x *Index) Hash(jobID string) uint64 { return maphash.String(x.seed, jobID) }

// Size returns how many entries and hashes the index holds.
func (x *Index) Size() int { return x.size }

// Lookup returns the build's hashes and whether the build is known.
func (x *Index) Lookup(buildID int64) ([]uint64, bool) {
	h, ok := x.builds[buildID]
	return h, ok
}

// Put records the sorted hashes of the job IDs of a build's sets (none:
// the build has no sets).
func (x *Index) Put(buildID int64, hashes []uint64) {
	x.Forget(buildID)
	if hashes == nil {
		hashes = []uint64{}
	}
	if x.size+len(hashes)+1 > x.max {
		// Forget an arbitrary half.
		for id := range x.builds {
			x.Forget(id)
			if x.size <= x.max/2 {
				break
			}
		}
	}
	x.builds[buildID] = hashes
	x.size += len(hashes) + 1
}

// PutJobs records the jobs of a build's sets, as read.
func (x *Index) PutJobs(buildID int64, sets ...[]state.Job) {
	var hs []uint64
	for _, set := range sets {
		for _, j := range set {
			hs = append(hs, x.Hash(j.JobID))
		}
	}
	slices.Sort(hs)
	x.Put(buildID, hs)
}

// Forget drops what is known of a build.
func (x *Index) Forget(buildID int64) {
	if h, ok := x.builds[buildID]; ok {
		x.size -= len(h) + 1
		delete(x.builds, buildID)
	}
}

// MayHold reports whether hashes hs may include the job ID.
func (x *Index) MayHold(hs []uint64, jobID string) bool {
	if len(hs) == 0 {
		return false
	}
	_, ok := slices.BinarySearch(hs, x.Hash(jobID))
	return ok
}

// Split divides the jobs a build is created with into those written as
// rows (unfinished: they will change) and sets of finished ones by
// state, in order, and returns the sorted hashes of the sets' job IDs
// for Put. A job ID given twice counts once, as its last record (as the
// rows' upsert has it).
func (x *Index) Split(jobs []state.Job) (rows []state.Job, sets [][]state.Job, hashes []uint64) {
	hashes = make([]uint64, len(jobs))
	same := true // every job finished, in one state (a cached resubmission)
	for i, j := range jobs {
		hashes[i] = x.Hash(j.JobID)
		same = same && j.State.Finished() && j.State == jobs[0].State
	}
	slices.Sort(hashes)
	if len(slices.Compact(slices.Clone(hashes))) < len(jobs) {
		// A hash given twice: rarely a collision, usually a job.
		last := make(map[string]int, len(jobs))
		for i, j := range jobs {
			last[j.JobID] = i
		}
		var kept []state.Job
		for i, j := range jobs {
			if last[j.JobID] == i {
				kept = append(kept, j)
			}
		}
		if len(kept) < len(jobs) {
			return x.Split(kept)
		}
	}
	if same {
		if len(jobs) == 0 {
			return nil, nil, nil
		}
		return nil, [][]state.Job{jobs}, hashes
	}
	hashes = hashes[:0]
	for _, j := range jobs {
		if !j.State.Finished() {
			rows = append(rows, j)
			continue
		}
		hashes = append(hashes, x.Hash(j.JobID))
		k := slices.IndexFunc(sets, func(set []state.Job) bool { return set[0].State == j.State })
		if k < 0 {
			k = len(sets)
			sets = append(sets, nil)
		}
		sets[k] = append(sets[k], j)
	}
	slices.Sort(hashes)
	return rows, sets, hashes
}

// Candidates returns the builds of jobs whose sets a commit of jobs must
// read, each with the IDs of its jobs that may be in them: the builds the
// index does not know (with all their jobs of the commit) and those of
// the jobs whose hashes it holds. The store then reads those sets (and
// Puts them: a fresh read), takes the jobs out (Remove), and after its
// commit Forgets the builds whose sets it rewrote.
func (x *Index) Candidates(jobs []state.Job) map[int64]map[string]bool {
	var out map[int64]map[string]bool
	for _, j := range jobs {
		hs, known := x.Lookup(j.BuildID)
		if known && !x.MayHold(hs, j.JobID) {
			continue
		}
		if out == nil {
			out = map[int64]map[string]bool{}
		}
		if out[j.BuildID] == nil {
			out[j.BuildID] = map[string]bool{}
		}
		out[j.BuildID][j.JobID] = true
	}
	return out
}
