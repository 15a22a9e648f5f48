package sqlite

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

// Job sets: the finished jobs a build is created with (the cached jobs
// of a submission, thousands for a resubmitted graph) are stored as one
// row per build and state in job_sets instead of one row each in jobs.
// A row costs a B-tree insertion, a primary-key index insertion and eleven
// bound parameters: a build with 10,000 cached jobs and its 1.5 MB graph
// costs ~45 ms of CPU with the jobs as rows, ~6 ms with them as a set
// (BenchmarkCachedBuild). A set is read whole (Jobs, a
// restore, a finished build's status), and JobCounts reads its count
// column.
//
// Invariant: a job is in a set or in jobs, never both. A later write of a
// job in a set (Commit) removes it from the set in the same transaction,
// so that reads need not merge. setIndex finds those writes without
// reading the sets.
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
// state and the build ID are the row's.
const jobSetVersion = 1

// minEncodedJob is the least size of one encoded job: eight one-byte
// lengths or varints and the exit tag. It bounds the count a set may
// claim, so a corrupt count cannot make the decoder allocate.
const minEncodedJob = 9

// errBadJobSet is wrapped by every decoding error.
var errBadJobSet = errors.New("sqlite: bad job set")

// encodeJobSet encodes jobs (their BuildID and State are not kept).
func encodeJobSet(jobs []state.Job) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, j := range jobs {
		n += len(j.JobID) + len(j.Name) + len(j.Worker) + len(j.OutputDigest) + len(j.Error) + 6*binary.MaxVarintLen64 + 2
	}
	b := make([]byte, 0, n)
	b = append(b, jobSetVersion)
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

// setDecoder reads an encoded set, remembering the first error.
type setDecoder struct {
	b   []byte
	err error
}

func (d *setDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at %d bytes from the end", errBadJobSet, what, len(d.b))
	}
	d.b = nil
}

func (d *setDecoder) uvarint(what string) uint64 { return readNum(d, what, binary.Uvarint) }

func (d *setDecoder) varint(what string) int64 { return readNum(d, what, binary.Varint) }

// readNum reads one varint with read (binary.Uvarint or binary.Varint).
func readNum[T int64 | uint64](d *setDecoder, what string, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *setDecoder) str(what string) string {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// decodeJobSet decodes a set of the given build and state.
func decodeJobSet(b []byte, buildID int64, st api.JobState) ([]state.Job, error) {
	if len(b) == 0 || b[0] != jobSetVersion {
		return nil, fmt.Errorf("%w: unknown version", errBadJobSet)
	}
	d := &setDecoder{b: b[1:]}
	n := d.uvarint("count")
	if n > uint64(len(d.b)/minEncodedJob) {
		return nil, fmt.Errorf("%w: %d jobs in %d bytes", errBadJobSet, n, len(d.b))
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
		return nil, fmt.Errorf("%w: %d bytes after the last job", errBadJobSet, len(d.b))
	}
	return jobs, nil
}

// setIndex knows, for the builds a store has written or read lately,
// which job IDs their sets hold, as sorted 64-bit hashes: a commit finds
// the jobs it must take out of a set without reading the set (a hash
// that matches is confirmed against the set itself). A set is made with
// its build and only loses jobs afterwards, so what the index remembers
// can only hold too much, never miss a job, even if another process
// writes the database too. Its methods are called under the store's
// writeMu.
type setIndex struct {
	seed maphash.Seed
	// builds maps a build to its sets' hashes; an empty slice says the
	// build has no sets, a missing entry that it is not known.
	builds map[int64][]uint64
	// size counts the entries and hashes held, bounded by max.
	size, max int
}

// maxSetIndex bounds setIndex.size (8 bytes a hash: 8 MiB). Forgotten
// builds are read again when next written.
const maxSetIndex = 1 << 20

func newSetIndex(max int) *setIndex {
	return &setIndex{seed: maphash.MakeSeed(), builds: map[int64][]uint64{}, max: max}
}

func (x *setIndex) hash(jobID string) uint64 { return maphash.String(x.seed, jobID) }

// lookup returns the build's hashes and whether the build is known.
func (x *setIndex) lookup(buildID int64) ([]uint64, bool) {
	h, ok := x.builds[buildID]
	return h, ok
}

// put records the sorted hashes of the job IDs of a build's sets (none:
// the build has no sets).
func (x *setIndex) put(buildID int64, hashes []uint64) {
	x.forget(buildID)
	if hashes == nil {
		hashes = []uint64{}
	}
	if x.size+len(hashes)+1 > x.max {
		// Forget an arbitrary half.
		for id := range x.builds {
			x.forget(id)
			if x.size <= x.max/2 {
				break
			}
		}
	}
	x.builds[buildID] = hashes
	x.size += len(hashes) + 1
}

// forget drops what is known of a build.
func (x *setIndex) forget(buildID int64) {
	if h, ok := x.builds[buildID]; ok {
		x.size -= len(h) + 1
		delete(x.builds, buildID)
	}
}

// mayHold reports whether hashes hs may include the job ID.
func (x *setIndex) mayHold(hs []uint64, jobID string) bool {
	if len(hs) == 0 {
		return false
	}
	_, ok := slices.BinarySearch(hs, x.hash(jobID))
	return ok
}
