// Package state defines the coordinator's durable record: builds (with
// their graphs), the state of each job in each build, every attempt, the
// result cache and workers. Store is the interface a database implements
// (SQLite in state/sqlite now, PostgreSQL later); state/statetest is the
// conformance suite every implementation passes.
//
// The coordinator keeps its hot state in memory and writes here in
// batches (group commit), so an implementation must apply a Batch in one
// transaction: after a crash either all of a batch is there or none.
package state

import (
	"context"
	"errors"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// ErrNotFound is returned for a build, attempt or result that does not
// exist.
var ErrNotFound = errors.New("state: not found")

// ErrSchemaTooNew is returned by Open when the database was written by a
// newer tryd whose schema this one does not know.
var ErrSchemaTooNew = errors.New("state: database schema is newer than this tryd")

// Build is one submitted graph.
type Build struct {
	ID       int64
	Priority api.Priority
	Labels   map[string]string
	// Graph is the normalized graph as JSON (planner fragments spliced in).
	Graph    []byte
	State    api.BuildState
	Error    string
	Created  time.Time
	Finished time.Time // zero while running
}

// Job is the state of one job within one build.
type Job struct {
	BuildID      int64
	JobID        string
	Name         string
	Seq          int // position in the graph, for stable ordering
	State        api.JobState
	Worker       string
	OutputDigest string
	ExitCode     *int
	Error        string
	Started      time.Time
	Finished     time.Time
}

// Attempt is one run of a job on a worker (api.Attempt is its wire form).
type Attempt = api.Attempt

// Result is a cached successful result of a job ID.
type Result struct {
	JobID        string
	OutputDigest string
	AttemptID    string
	BuildID      int64
	Finished     time.Time
}

// Worker is a known worker. TokenHash is the hex SHA-256 of its token:
// the token itself is never stored.
type Worker struct {
	Name      string
	TokenHash string
	Labels    map[string]string
	Slots     int
	Version   string
	LastSeen  time.Time
}

// BuildUpdate changes a build's state, and its graph when Graph is not nil.
type BuildUpdate struct {
	ID       int64
	State    api.BuildState
	Error    string
	Finished time.Time
	Graph    []byte
}

// Batch is a set of changes applied atomically. Jobs, attempts, results
// and workers are upserts of whole records (the coordinator holds the
// current record in memory).
type Batch struct {
	Builds        []BuildUpdate
	Jobs          []Job
	Attempts      []Attempt
	Results       []Result
	DeleteResults []string
	Workers       []Worker
}

// Empty reports whether the batch changes nothing.
func (b *Batch) Empty() bool {
	return len(b.Builds) == 0 && len(b.Jobs) == 0 && len(b.Attempts) == 0 &&
		len(b.Results) == 0 && len(b.DeleteResults) == 0 && len(b.Workers) == 0
}

// Filter selects builds for ListBuilds.
type Filter struct {
	State  api.BuildState    // empty: any
	Labels map[string]string // every one must match
	Before int64             // IDs below this; 0: no bound
	Limit  int               // 0: 50
}

// JobCounter is an optional interface of a Store that can count the jobs
// of many builds by state in one query (build lists use it for their
// counts; without it, builds no longer in memory are listed without).
type JobCounter interface {
	// JobCounts returns, for each of the builds, how many of its jobs
	// are in each state.
	JobCounts(ctx context.Context, buildIDs []int64) (map[int64]map[api.JobState]int, error)
}

// JobSetter is an optional interface of a Store that keeps the finished
// jobs given to CreateBuild as one record per build (a job set) rather
// than a row each, so that creating a build with thousands of them costs
// little more than creating it without. The coordinator passes such a
// store the cached jobs of a submission with the build, where it commits
// them to other stores after its answer (as rows, thousands of them for
// a resubmitted graph, which would lengthen the submission).
type JobSetter interface {
	// KeepsJobSets reports whether the store keeps job sets.
	KeepsJobSets() bool
}

// Store is the coordinator's durable state. Implementations are safe for
// concurrent use.
type Store interface {
	// CreateBuild stores a new build (b.ID is ignored) with its jobs
	// (their BuildID is ignored) and returns its ID, durably.
	CreateBuild(ctx context.Context, b *Build, jobs []Job) (int64, error)
	// Commit applies a batch in one transaction.
	Commit(ctx context.Context, batch *Batch) error

	// Build returns a build; ErrNotFound if there is none.
	Build(ctx context.Context, id int64) (*Build, error)
	// Jobs returns the jobs of a build ordered by Seq.
	Jobs(ctx context.Context, buildID int64) ([]Job, error)
	// Attempts returns the attempts of a build, oldest first.
	Attempts(ctx context.Context, buildID int64) ([]Attempt, error)
	// JobAttempts returns every attempt of a job ID in any build,
	// oldest first.
	JobAttempts(ctx context.Context, jobID string) ([]Attempt, error)
	// Attempt returns one attempt; ErrNotFound if there is none.
	Attempt(ctx context.Context, id string) (*Attempt, error)
	// ListBuilds returns builds matching f, newest first, without
	// graphs.
	ListBuilds(ctx context.Context, f Filter) ([]Build, error)
	// UnfinishedBuilds returns the IDs of running builds, oldest first.
	UnfinishedBuilds(ctx context.Context) ([]int64, error)

	// Results returns the cached results of those job IDs that have one.
	Results(ctx context.Context, jobIDs []string) (map[string]Result, error)

	// Workers returns every known worker.
	Workers(ctx context.Context) ([]Worker, error)

	// Close releases the store.
	Close() error
}
