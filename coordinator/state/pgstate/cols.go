package pgstate

import (
	"sync"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/internal/sqlrow"
)

// The statements over unnest take their rows as one array per column.
// Given as Go slices ([]string, []int64), pgx encodes each through
// several layers of interfaces, boxing the slice and every element on
// the heap: most of a commit's allocations, and so of a coordinator's
// CPU (its garbage collection) per job. A column here is a
// pgtype.ArrayGetter whose elements are addressed, not copied (Index
// returns a pointer, which an interface holds without allocating), and
// whose element types encode themselves through pgx's valuer interfaces
// (pgtype.TextValuer, Int64Valuer, BoolValuer): pgx writes the same
// binary arrays as before, without an allocation per element. Columns
// are kept between commits (Store.bufs): pgx copies them into its own
// buffer when the batch is sent, and holds no reference once the
// batch's results are closed.

// column is a one-dimensional array of E for pgx (pgtype.ArrayGetter),
// passed by pointer.
type column[E any] struct {
	v    []E
	dims [1]pgtype.ArrayDimension
}

// Dimensions implements pgtype.ArrayGetter.
func (c *column[E]) Dimensions() []pgtype.ArrayDimension {
	c.dims[0] = pgtype.ArrayDimension{Length: int32(len(c.v)), LowerBound: 1}
	return c.dims[:]
}

// Index implements pgtype.ArrayGetter.
func (c *column[E]) Index(i int) any { return &c.v[i] }

// IndexType implements pgtype.ArrayGetter.
func (c *column[E]) IndexType() any { return (*E)(nil) }

// reset makes c n elements long, for the caller to set them all.
func (c *column[E]) reset(n int) {
	if cap(c.v) < n {
		c.v = make([]E, n)
	}
	c.v = c.v[:n]
}

// resetColumns resets each of cols for n elements.
func resetColumns(n int, cols ...interface{ reset(n int) }) {
	for _, c := range cols {
		c.reset(n)
	}
}

// drop empties c, dropping the references of its elements.
func (c *column[E]) drop() {
	clear(c.v)
	c.v = c.v[:0]
}

// pgText is a text element.
type pgText string

// TextValue implements pgtype.TextValuer.
func (t *pgText) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: string(*t), Valid: true}, nil
}

// pgInt8 is a bigint element.
type pgInt8 int64

// Int64Value implements pgtype.Int64Valuer.
func (n *pgInt8) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(*n), Valid: true}, nil
}

// pgInt4 is an int element, NULL if null.
type pgInt4 struct {
	n    int32
	null bool
}

// Int64Value implements pgtype.Int64Valuer.
func (n *pgInt4) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(n.n), Valid: !n.null}, nil
}

// int4Of is an optional int as an element (truncated to 32 bits, as
// the column is).
func int4Of(p *int) pgInt4 {
	if p == nil {
		return pgInt4{null: true}
	}
	return pgInt4{n: int32(*p)}
}

// pgBool is a boolean element.
type pgBool bool

// BoolValue implements pgtype.BoolValuer.
func (b *pgBool) BoolValue() (pgtype.Bool, error) {
	return pgtype.Bool{Bool: bool(*b), Valid: true}, nil
}

// jobCols are the columns of jobs, for statements over unnest: any
// number of rows cost one statement.
type jobCols struct {
	bids                                       column[pgInt8]
	ids, names, states, workers, outputs, errs column[pgText]
	seqs, exits                                column[pgInt4]
	starts, fins                               column[pgInt8]
}

// set fills c with jobs.
func (c *jobCols) set(jobs []state.Job) {
	resetColumns(len(jobs), &c.bids, &c.ids, &c.names, &c.states, &c.workers, &c.outputs, &c.errs, &c.seqs, &c.exits, &c.starts, &c.fins)
	for i := range jobs {
		j := &jobs[i]
		c.bids.v[i], c.ids.v[i], c.names.v[i], c.seqs.v[i], c.states.v[i] = pgInt8(j.BuildID), pgText(j.JobID), pgText(j.Name), pgInt4{n: int32(j.Seq)}, pgText(j.State)
		c.workers.v[i], c.outputs.v[i], c.exits.v[i], c.errs.v[i] = pgText(j.Worker), pgText(j.OutputDigest), int4Of(j.ExitCode), pgText(j.Error)
		c.starts.v[i], c.fins.v[i] = pgInt8(sqlrow.Nanos(j.Started)), pgInt8(sqlrow.Nanos(j.Finished))
	}
}

// attemptCols are the columns of attempts.
type attemptCols struct {
	ids, jobIDs, workers, states, errs, outs column[pgText]
	bids, starts, fins, logBytes             column[pgInt8]
	exits                                    column[pgInt4]
	truncated                                column[pgBool]
}

// set fills c with atts.
func (c *attemptCols) set(atts []state.Attempt) {
	resetColumns(len(atts), &c.ids, &c.jobIDs, &c.workers, &c.states, &c.errs, &c.outs, &c.bids, &c.starts, &c.fins, &c.logBytes, &c.exits, &c.truncated)
	for i := range atts {
		a := &atts[i]
		c.ids.v[i], c.bids.v[i], c.jobIDs.v[i], c.workers.v[i], c.states.v[i] = pgText(a.ID), pgInt8(a.BuildID), pgText(a.JobID), pgText(a.Worker), pgText(a.State)
		c.starts.v[i], c.fins.v[i], c.exits.v[i] = pgInt8(sqlrow.Nanos(a.Started)), pgInt8(sqlrow.NanosPtr(a.Finished)), int4Of(a.ExitCode)
		c.errs.v[i], c.outs.v[i], c.logBytes.v[i], c.truncated.v[i] = pgText(a.Error), pgText(a.OutputDigest), pgInt8(a.LogBytes), pgBool(a.LogTruncated)
	}
}

// resultCols are the columns of results.
type resultCols struct {
	ids, outs, atts column[pgText]
	bids, fins      column[pgInt8]
}

// set fills c with rs.
func (c *resultCols) set(rs []state.Result) {
	resetColumns(len(rs), &c.ids, &c.outs, &c.atts, &c.bids, &c.fins)
	for i := range rs {
		r := &rs[i]
		c.ids.v[i], c.outs.v[i], c.atts.v[i], c.bids.v[i], c.fins.v[i] = pgText(r.JobID), pgText(r.OutputDigest), pgText(r.AttemptID), pgInt8(r.BuildID), pgInt8(sqlrow.Nanos(r.Finished))
	}
}

// jobKey identifies a job record.
type jobKey struct {
	build int64
	job   string
}

// commitBuf is what a commit encodes, kept between commits
// (Store.bufs) so that a commit allocates little of its own.
type commitBuf struct {
	owner  pgText // the fence's owner, "" for none
	fenced column[pgInt8]
	jobs   jobCols
	atts   attemptCols
	res    resultCols
	// The arguments of the statements, which pgx.Batch keeps until
	// the batch is sent.
	jobArgs [12]any
	attArgs [13]any
	resArgs [6]any

	// Deduplication of the batch's records (lastByKey).
	jobSeen map[jobKey]int
	strSeen map[string]int
}

// maxKeptRows bounds the rows of the columns a commitBuf keeps for the
// next commit: a build created with 100,000 jobs does not pin its
// columns for the life of the process.
const maxKeptRows = 4096

// bufPool is a pool of commitBufs.
type bufPool struct{ p sync.Pool }

func (p *bufPool) get() *commitBuf {
	if cb, ok := p.p.Get().(*commitBuf); ok {
		return cb
	}
	return &commitBuf{jobSeen: map[jobKey]int{}, strSeen: map[string]int{}}
}

// put returns cb to the pool, its references to the batch's records
// dropped, unless it grew too big to keep.
func (p *bufPool) put(cb *commitBuf) {
	if cap(cb.jobs.ids.v) > maxKeptRows || cap(cb.atts.ids.v) > maxKeptRows || cap(cb.res.ids.v) > maxKeptRows || len(cb.jobSeen) > maxKeptRows || len(cb.strSeen) > maxKeptRows {
		return
	}
	cb.owner = ""
	for _, c := range []*column[pgText]{&cb.jobs.ids, &cb.jobs.names, &cb.jobs.states, &cb.jobs.workers, &cb.jobs.outputs, &cb.jobs.errs,
		&cb.atts.ids, &cb.atts.jobIDs, &cb.atts.workers, &cb.atts.states, &cb.atts.errs, &cb.atts.outs, &cb.res.ids, &cb.res.outs, &cb.res.atts} {
		c.drop()
	}
	clear(cb.jobArgs[:])
	clear(cb.attArgs[:])
	clear(cb.resArgs[:])
	clear(cb.jobSeen)
	clear(cb.strSeen)
	p.p.Put(cb)
}
