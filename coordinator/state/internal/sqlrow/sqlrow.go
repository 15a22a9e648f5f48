// Package sqlrow is the row format the SQL stores of the coordinator's
// state share (state/sqlite and state/pgstate): times are Unix
// nanoseconds with 0 for the zero time (and for a nil *time.Time),
// labels are a JSON object as text ("{}" when empty), and the Scan
// functions turn one row of the shared column lists into a state record.
// A scanner is a *sql.Row, *sql.Rows, pgx.Row or pgx.CollectableRow:
// integers are scanned into int64 and nullable ones into *int64, which
// database/sql and pgx both support.
package sqlrow

import (
	"encoding/json"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// Nanos returns t as stored: Unix nanoseconds, 0 for the zero time.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// NanosPtr is Nanos of an optional time (nil is 0).
func NanosPtr(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return Nanos(*t)
}

// Time is the inverse of Nanos (in UTC).
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// TimePtr is the inverse of NanosPtr.
func TimePtr(n int64) *time.Time {
	if n == 0 {
		return nil
	}
	t := Time(n)
	return &t
}

// EncodeLabels returns labels as stored.
func EncodeLabels(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map of strings always encodes
	return string(b)
}

// DecodeLabels is the inverse of EncodeLabels; nil for no labels (or a
// value that is not a JSON object of strings).
func DecodeLabels(s string) map[string]string {
	var m map[string]string
	if json.Unmarshal([]byte(s), &m) != nil || len(m) == 0 {
		return nil
	}
	return m
}

// Int returns a nullable integer column as scanned (*int64) as a state
// record holds it.
func Int(p *int64) *int {
	if p == nil {
		return nil
	}
	v := int(*p)
	return &v
}

// Int64 is the inverse of Int, for writing.
func Int64(p *int) *int64 {
	if p == nil {
		return nil
	}
	v := int64(*p)
	return &v
}

// Scanner is one row of a query's result.
type Scanner interface {
	Scan(dest ...any) error
}

// Column lists of the records, in the order the Scan functions expect.
const (
	BuildCols   = `id, priority, labels, state, error, created, finished`
	JobCols     = `build_id, job_id, name, seq, state, worker, output_digest, exit_code, error, started, finished`
	AttemptCols = `id, build_id, job_id, worker, state, started, finished, exit_code, error, output_digest, log_bytes, log_truncated`
	ResultCols  = `job_id, output_digest, attempt_id, build_id, finished`
	WorkerCols  = `name, token_hash, labels, slots, version, last_seen`
)

// ScanBuild scans BuildCols, followed by graph if withGraph.
func ScanBuild(sc Scanner, withGraph bool) (*state.Build, error) {
	var b state.Build
	var prio, labels, st string
	var created, finished int64
	dest := []any{&b.ID, &prio, &labels, &st, &b.Error, &created, &finished}
	if withGraph {
		dest = append(dest, &b.Graph)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	b.Priority, b.Labels, b.State = api.Priority(prio), DecodeLabels(labels), api.BuildState(st)
	b.Created, b.Finished = Time(created), Time(finished)
	return &b, nil
}

// ScanJob scans JobCols.
func ScanJob(sc Scanner) (state.Job, error) {
	var j state.Job
	var st string
	var seq, started, finished int64
	var exit *int64
	if err := sc.Scan(&j.BuildID, &j.JobID, &j.Name, &seq, &st, &j.Worker, &j.OutputDigest, &exit, &j.Error, &started, &finished); err != nil {
		return state.Job{}, err
	}
	j.Seq, j.State, j.ExitCode, j.Started, j.Finished = int(seq), api.JobState(st), Int(exit), Time(started), Time(finished)
	return j, nil
}

// ScanAttempt scans AttemptCols.
func ScanAttempt(sc Scanner) (state.Attempt, error) {
	var a state.Attempt
	var st string
	var started, finished int64
	var exit *int64
	if err := sc.Scan(&a.ID, &a.BuildID, &a.JobID, &a.Worker, &st, &started, &finished, &exit, &a.Error, &a.OutputDigest, &a.LogBytes, &a.LogTruncated); err != nil {
		return state.Attempt{}, err
	}
	a.State, a.Started, a.Finished, a.ExitCode = api.AttemptState(st), Time(started), TimePtr(finished), Int(exit)
	return a, nil
}

// ScanResult scans ResultCols.
func ScanResult(sc Scanner) (state.Result, error) {
	var r state.Result
	var finished int64
	if err := sc.Scan(&r.JobID, &r.OutputDigest, &r.AttemptID, &r.BuildID, &finished); err != nil {
		return state.Result{}, err
	}
	r.Finished = Time(finished)
	return r, nil
}

// ScanWorker scans WorkerCols.
func ScanWorker(sc Scanner) (state.Worker, error) {
	var w state.Worker
	var labels string
	var slots, seen int64
	if err := sc.Scan(&w.Name, &w.TokenHash, &labels, &slots, &w.Version, &seen); err != nil {
		return state.Worker{}, err
	}
	w.Labels, w.Slots, w.LastSeen = DecodeLabels(labels), int(slots), Time(seen)
	return w, nil
}
