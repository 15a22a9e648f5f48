// Package sqlite implements the coordinator's state.Store in a SQLite file
// (modernc.org/sqlite, pure Go) in WAL mode. The schema is versioned: Open
// applies the migrations this tryd knows in order, each in its own
// transaction, and refuses a database whose schema is newer.
//
// Jobs are rows of jobs, except the finished jobs a build is created with
// (a submission's cached jobs), which are kept as one job set per build
// and state (state/internal/jobset; a build with 10,000 cached jobs and
// its 1.5 MB graph costs ~45 ms of CPU with the jobs as rows, ~6 ms with
// them as a set: BenchmarkCachedBuild); graphs are kept apart from the builds' other
// columns, which change.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/internal/jobset"
	"github.com/tryd-ci/tryd/coordinator/state/internal/sqlrow"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to i+1. Never edit a released migration: append a new one.
var migrations = []string{
	// Version 1.
	`CREATE TABLE builds (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		priority TEXT NOT NULL,
		labels TEXT NOT NULL,
		graph BLOB NOT NULL,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		created INTEGER NOT NULL,
		finished INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX builds_state ON builds(state, id);
	CREATE TABLE build_labels (
		build_id INTEGER NOT NULL REFERENCES builds(id),
		key TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (key, value, build_id)
	);
	CREATE TABLE jobs (
		build_id INTEGER NOT NULL REFERENCES builds(id),
		job_id TEXT NOT NULL,
		name TEXT NOT NULL,
		seq INTEGER NOT NULL,
		state TEXT NOT NULL,
		worker TEXT NOT NULL DEFAULT '',
		output_digest TEXT NOT NULL DEFAULT '',
		exit_code INTEGER,
		error TEXT NOT NULL DEFAULT '',
		started INTEGER NOT NULL DEFAULT 0,
		finished INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (build_id, job_id)
	);
	CREATE TABLE attempts (
		id TEXT PRIMARY KEY,
		build_id INTEGER NOT NULL,
		job_id TEXT NOT NULL,
		worker TEXT NOT NULL,
		state TEXT NOT NULL,
		started INTEGER NOT NULL,
		finished INTEGER NOT NULL DEFAULT 0,
		exit_code INTEGER,
		error TEXT NOT NULL DEFAULT '',
		output_digest TEXT NOT NULL DEFAULT '',
		log_bytes INTEGER NOT NULL DEFAULT 0,
		log_truncated INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX attempts_build ON attempts(build_id, started);
	CREATE INDEX attempts_job ON attempts(job_id, started);
	CREATE TABLE results (
		job_id TEXT PRIMARY KEY,
		output_digest TEXT NOT NULL,
		attempt_id TEXT NOT NULL,
		build_id INTEGER NOT NULL,
		finished INTEGER NOT NULL
	);
	CREATE TABLE workers (
		name TEXT PRIMARY KEY,
		token_hash TEXT NOT NULL,
		labels TEXT NOT NULL,
		slots INTEGER NOT NULL,
		version TEXT NOT NULL,
		last_seen INTEGER NOT NULL
	);`,
	// Version 2: the finished jobs a build is created with, one row per
	// build and state (see state/internal/jobset).
	`CREATE TABLE job_sets (
		build_id INTEGER NOT NULL REFERENCES builds(id),
		state TEXT NOT NULL,
		n INTEGER NOT NULL,
		jobs BLOB NOT NULL,
		PRIMARY KEY (build_id, state)
	);`,
	// Version 3: graphs apart from the builds' other columns. SQLite
	// writes a row whole, so every change of a build's state rewrote its
	// graph (1.5 MB for 10,000 jobs), and reading the state or finish
	// time after the graph in the row followed its overflow pages.
	`CREATE TABLE build_graphs (
		build_id INTEGER PRIMARY KEY REFERENCES builds(id),
		graph BLOB NOT NULL
	);
	INSERT INTO build_graphs (build_id, graph) SELECT id, graph FROM builds;
	ALTER TABLE builds DROP COLUMN graph;`,
}

// SchemaVersion is the schema version this tryd writes.
var SchemaVersion = len(migrations)

// Options configure a Store.
type Options struct {
	// Path is the database file; it is created if missing.
	Path string
	// Synchronous is SQLite's synchronous setting: "NORMAL" (the
	// default; in WAL mode a committed transaction survives a crash of
	// the process, e.g. kill -9, but not of the machine) or "FULL"
	// (every commit is fsynced: survives power loss, slower).
	Synchronous string
	// CheckpointIdle is how long the store must have written nothing
	// before it copies the WAL into the database (a checkpoint; default
	// 200ms). A checkpoint fsyncs, and a commit made meanwhile waits
	// for the disk (measured: commits of 0.2ms took up to 37ms), so
	// checkpoints wait for a quiet moment rather than land in a
	// client's submit or a worker's answer.
	CheckpointIdle time.Duration
	// CheckpointMaxDelay bounds how long written data waits for a
	// checkpoint when writes never pause (default 10s): the WAL, and
	// the time to read through it, stay bounded. Such a checkpoint
	// holds writes back while it runs (else it never copies the whole
	// WAL, which SQLite then never starts over).
	CheckpointMaxDelay time.Duration
}

// Store is a state.Store in SQLite.
type Store struct {
	db *sql.DB
	// writeMu serializes write transactions in this process: SQLite
	// allows one writer, and waiting here costs exactly the other
	// transaction's time, where SQLite's busy handler would sleep in
	// steps of milliseconds.
	writeMu sync.Mutex

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// lastWrite is when the last write transaction ended and dirtySince
	// when the first one since the last checkpoint did (Unix
	// nanoseconds; 0: nothing to checkpoint).
	lastWrite, dirtySince atomic.Int64
	// checkpointed counts the WAL frames background checkpoints copied
	// (for tests).
	checkpointed atomic.Int64
	// sets knows which builds have job sets and which jobs they hold
	// (guarded by writeMu).
	sets *jobset.Index
	// Statements prepared once: preparing costs more than executing
	// the small writes of a batch.
	upsertJob, upsertJobChunk, upsertAttempt, upsertResult, deleteResult, upsertWorker, updateBuild, updateGraph, insertLabel *sql.Stmt
}

const (
	upsertJobSQL = `INSERT INTO jobs (build_id, job_id, name, seq, state, worker, output_digest, exit_code, error, started, finished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (build_id, job_id) DO UPDATE SET name=excluded.name, seq=excluded.seq, state=excluded.state, worker=excluded.worker,
		output_digest=excluded.output_digest, exit_code=excluded.exit_code, error=excluded.error, started=excluded.started, finished=excluded.finished`
	upsertAttemptSQL = `INSERT INTO attempts (id, build_id, job_id, worker, state, started, finished, exit_code, error, output_digest, log_bytes, log_truncated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET worker=excluded.worker, state=excluded.state, finished=excluded.finished, exit_code=excluded.exit_code,
		error=excluded.error, output_digest=excluded.output_digest, log_bytes=excluded.log_bytes, log_truncated=excluded.log_truncated`
	upsertResultSQL = `INSERT INTO results (job_id, output_digest, attempt_id, build_id, finished) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET output_digest=excluded.output_digest, attempt_id=excluded.attempt_id, build_id=excluded.build_id, finished=excluded.finished`
	deleteResultSQL = `DELETE FROM results WHERE job_id=?`
	upsertWorkerSQL = `INSERT INTO workers (name, token_hash, labels, slots, version, last_seen) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET token_hash=excluded.token_hash, labels=excluded.labels, slots=excluded.slots, version=excluded.version, last_seen=excluded.last_seen`
	updateBuildSQL = `UPDATE builds SET state=?, error=?, finished=? WHERE id=?`
	updateGraphSQL = `UPDATE build_graphs SET graph=? WHERE build_id=?`
	insertLabelSQL = `INSERT INTO build_labels (build_id, key, value) VALUES (?, ?, ?)`
)

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.upsertJob, upsertJobSQL}, {&s.upsertJobChunk, strings.Replace(upsertJobSQL, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", jobChunk), ", "), 1)},
		{&s.upsertAttempt, upsertAttemptSQL}, {&s.upsertResult, upsertResultSQL},
		{&s.deleteResult, deleteResultSQL}, {&s.upsertWorker, upsertWorkerSQL}, {&s.updateBuild, updateBuildSQL},
		{&s.updateGraph, updateGraphSQL}, {&s.insertLabel, insertLabelSQL},
	} {
		st, err := s.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return nil
}

var (
	_ state.Store      = (*Store)(nil)
	_ state.JobCounter = (*Store)(nil)
	_ state.JobSetter  = (*Store)(nil)
)

// KeepsJobSets implements state.JobSetter: the finished jobs a build is
// created with are kept in job_sets (see state/internal/jobset).
func (s *Store) KeepsJobSets() bool { return true }

// Open opens (creating if needed) and migrates the database.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("sqlite: Options.Path is empty")
	}
	sync := strings.ToUpper(opts.Synchronous)
	switch sync {
	case "":
		sync = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return nil, fmt.Errorf("sqlite: bad Synchronous %q (want NORMAL or FULL)", opts.Synchronous)
	}
	if opts.CheckpointIdle < 0 || opts.CheckpointMaxDelay < 0 {
		return nil, errors.New("sqlite: negative checkpoint option")
	}
	if opts.CheckpointIdle == 0 {
		opts.CheckpointIdle = 200 * time.Millisecond
	}
	if opts.CheckpointMaxDelay == 0 {
		opts.CheckpointMaxDelay = 10 * time.Second
	}
	q := url.Values{}
	// Checkpoints (copying the WAL into the database, with an fsync) run
	// in the background instead of inside whichever commit crosses the
	// WAL size threshold, and when writes pause (checkpointer).
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(" + sync + ")", "foreign_keys(1)", "wal_autocheckpoint(0)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+opts.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", opts.Path, err)
	}
	// One writer at a time is SQLite's model; a few connections let
	// reads proceed beside it in WAL mode.
	db.SetMaxOpenConns(4)
	s := &Store{db: db, stop: make(chan struct{}), sets: jobset.NewIndex(jobset.MaxIndex)}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", opts.Path, err)
	}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", opts.Path, err)
	}
	s.wg.Add(1)
	go s.checkpointer(opts.CheckpointIdle, opts.CheckpointMaxDelay)
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	for {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var v int
		err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			v = 0
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`)
		}
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > len(migrations) {
			tx.Rollback()
			return fmt.Errorf("schema version %d, this tryd knows up to %d: %w", v, len(migrations), state.ErrSchemaTooNew)
		}
		if v == len(migrations) {
			return tx.Rollback()
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
}

// Close closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	s.checkpoint("TRUNCATE")
	return s.db.Close()
}

// checkpointer copies the WAL into the database once writes have paused
// for idle, or maxDelay after the first write it has not copied.
func (s *Store) checkpointer(idle, maxDelay time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(min(idle/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			dirty := s.dirtySince.Load()
			if dirty == 0 {
				continue
			}
			quiet := now.Sub(time.Unix(0, s.lastWrite.Load())) >= idle
			if !quiet && now.Sub(time.Unix(0, dirty)) < maxDelay {
				continue
			}
			// Writes from now on are for the next checkpoint (one that
			// ends before this starts is in this one).
			s.dirtySince.Store(0)
			if quiet {
				s.checkpointed.Add(s.checkpoint("PASSIVE"))
				continue
			}
			// Writes go on: hold them back for this one. A checkpoint
			// that writes overlap copies all but their frames, and
			// SQLite starts the WAL over only after one copied it
			// all, so under writes that never pause for a checkpoint
			// the WAL grew without bound (~13 MB/s of small commits
			// 1ms apart).
			s.writeMu.Lock()
			s.checkpointed.Add(s.checkpoint("PASSIVE"))
			s.writeMu.Unlock()
		}
	}
}

// wrote records the end of a write transaction.
func (s *Store) wrote() {
	now := time.Now().UnixNano()
	s.lastWrite.Store(now)
	s.dirtySince.CompareAndSwap(0, now)
}

// checkpoint runs a WAL checkpoint of the given mode and returns the
// frames it copied. A failure is not fatal (the WAL only grows until the
// next one succeeds).
func (s *Store) checkpoint(mode string) int64 {
	var busy, log, copied int64
	if err := s.db.QueryRow(`PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &log, &copied); err != nil {
		return 0
	}
	return max(copied, 0)
}

// CreateBuild implements state.Store.
func (s *Store) CreateBuild(ctx context.Context, b *state.Build, jobs []state.Job) (int64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	defer s.wrote()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: create build: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO builds (priority, labels, state, error, created, finished) VALUES (?, ?, ?, ?, ?, ?)`,
		string(b.Priority), sqlrow.EncodeLabels(b.Labels), string(b.State), b.Error, sqlrow.Nanos(b.Created), sqlrow.Nanos(b.Finished))
	if err != nil {
		return 0, fmt.Errorf("sqlite: create build: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("sqlite: create build: %w", err)
	}
	graph := b.Graph
	if graph == nil {
		graph = []byte{} // NOT NULL
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO build_graphs (build_id, graph) VALUES (?, ?)`, id, graph); err != nil {
		return 0, fmt.Errorf("sqlite: create build: graph: %w", err)
	}
	for k, v := range b.Labels {
		if _, err := tx.StmtContext(ctx, s.insertLabel).ExecContext(ctx, id, k, v); err != nil {
			return 0, fmt.Errorf("sqlite: create build labels: %w", err)
		}
	}
	rows, sets, hashes := s.sets.Split(jobs)
	if err := s.upsertJobs(ctx, tx, id, rows); err != nil {
		return 0, err
	}
	for _, set := range sets {
		if _, err := tx.ExecContext(ctx, `INSERT INTO job_sets (build_id, state, n, jobs) VALUES (?, ?, ?, ?)`,
			id, string(set[0].State), len(set), jobset.Encode(set)); err != nil {
			return 0, fmt.Errorf("sqlite: create build: write %d %s jobs: %w", len(set), set[0].State, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: create build: %w", err)
	}
	s.sets.Put(id, hashes)
	return id, nil
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// storedSet is one row of job_sets, decoded.
type storedSet struct {
	state api.JobState
	jobs  []state.Job
}

// readSets returns a build's job sets.
func (s *Store) readSets(ctx context.Context, q querier, buildID int64) ([]storedSet, error) {
	rows, err := q.QueryContext(ctx, `SELECT state, jobs FROM job_sets WHERE build_id=?`, buildID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: job sets of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var out []storedSet
	for rows.Next() {
		var st string
		var blob []byte
		if err := rows.Scan(&st, &blob); err != nil {
			return nil, fmt.Errorf("sqlite: job sets of build %d: %w", buildID, err)
		}
		jobs, err := jobset.Decode(blob, buildID, api.JobState(st))
		if err != nil {
			return nil, fmt.Errorf("sqlite: job set %s of build %d: %w", st, buildID, err)
		}
		out = append(out, storedSet{api.JobState(st), jobs})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: job sets of build %d: %w", buildID, err)
	}
	return out, nil
}

// takeFromSets removes from their builds' sets the jobs that the batch
// writes as rows (keeping the invariant: a job is in one place). It
// returns the builds whose sets changed. The coordinator never writes a
// job of a set again (they are finished), so this finds nothing but
// costs an index lookup per job of the batch.
func (s *Store) takeFromSets(ctx context.Context, tx *sql.Tx, jobs []state.Job) ([]int64, error) {
	var changed []int64
	for bid, ids := range s.sets.Candidates(jobs) {
		sets, err := s.readSets(ctx, tx, bid)
		if err != nil {
			return nil, err
		}
		all := make([][]state.Job, len(sets))
		for i, set := range sets {
			all[i] = set.jobs
		}
		s.sets.PutJobs(bid, all...)
		for _, set := range sets {
			kept, removed := jobset.Remove(set.jobs, ids)
			var err error
			switch {
			case !removed:
				continue
			case len(kept) == 0:
				_, err = tx.ExecContext(ctx, `DELETE FROM job_sets WHERE build_id=? AND state=?`, bid, string(set.state))
			default:
				_, err = tx.ExecContext(ctx, `UPDATE job_sets SET n=?, jobs=? WHERE build_id=? AND state=?`, len(kept), jobset.Encode(kept), bid, string(set.state))
			}
			if err != nil {
				return nil, fmt.Errorf("sqlite: rewrite job set %s of build %d: %w", set.state, bid, err)
			}
			changed = append(changed, bid)
		}
	}
	return changed, nil
}

// jobChunk is how many job rows one multi-row statement writes: a build
// of thousands of jobs costs a few statements instead of one per job.
const jobChunk = 256

func (s *Store) upsertJobs(ctx context.Context, tx *sql.Tx, buildID int64, jobs []state.Job) error {
	if len(jobs) == 0 {
		return nil
	}
	// In key order, each row lands next to the previous one in the
	// primary key's index instead of at a random place (a quarter less
	// CPU for a batch of thousands).
	if !slices.IsSortedFunc(jobs, compareJobKeys) {
		jobs = slices.Clone(jobs)
		slices.SortFunc(jobs, compareJobKeys)
	}
	args := make([]any, 0, 11*min(len(jobs), jobChunk))
	for len(jobs) > 0 {
		n := min(len(jobs), jobChunk)
		args = args[:0]
		for _, j := range jobs[:n] {
			bid := j.BuildID
			if buildID != 0 {
				bid = buildID
			}
			args = append(args, bid, j.JobID, j.Name, j.Seq, string(j.State), j.Worker, j.OutputDigest, j.ExitCode, j.Error, sqlrow.Nanos(j.Started), sqlrow.Nanos(j.Finished))
		}
		if n == jobChunk {
			if _, err := tx.StmtContext(ctx, s.upsertJobChunk).ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("sqlite: write %d jobs (first %s): %w", n, jobs[0].JobID, err)
			}
			jobs = jobs[n:]
			continue
		}
		st := tx.StmtContext(ctx, s.upsertJob)
		for i := range n {
			if _, err := st.ExecContext(ctx, args[11*i:11*i+11]...); err != nil {
				return fmt.Errorf("sqlite: write job %s: %w", jobs[i].JobID, err)
			}
		}
		jobs = jobs[n:]
	}
	return nil
}

func compareJobKeys(a, b state.Job) int {
	if c := cmp.Compare(a.BuildID, b.BuildID); c != 0 {
		return c
	}
	return strings.Compare(a.JobID, b.JobID)
}

// Commit implements state.Store.
func (s *Store) Commit(ctx context.Context, b *state.Batch) error {
	if b.Empty() {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	defer s.wrote()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	defer tx.Rollback()
	for _, u := range b.Builds {
		if _, err := tx.StmtContext(ctx, s.updateBuild).ExecContext(ctx, string(u.State), u.Error, sqlrow.Nanos(u.Finished), u.ID); err != nil {
			return fmt.Errorf("sqlite: update build %d: %w", u.ID, err)
		}
		if u.Graph != nil {
			if _, err := tx.StmtContext(ctx, s.updateGraph).ExecContext(ctx, u.Graph, u.ID); err != nil {
				return fmt.Errorf("sqlite: update graph of build %d: %w", u.ID, err)
			}
		}
	}
	taken, err := s.takeFromSets(ctx, tx, b.Jobs)
	if err != nil {
		return err
	}
	// Whether the commit succeeds or not, the index must read these
	// builds' sets again.
	defer func() {
		for _, id := range taken {
			s.sets.Forget(id)
		}
	}()
	if err := s.upsertJobs(ctx, tx, 0, b.Jobs); err != nil {
		return err
	}
	if len(b.Attempts) > 0 {
		st := tx.StmtContext(ctx, s.upsertAttempt)
		for _, a := range b.Attempts {
			if _, err := st.ExecContext(ctx, a.ID, a.BuildID, a.JobID, a.Worker, string(a.State), sqlrow.Nanos(a.Started), sqlrow.NanosPtr(a.Finished), a.ExitCode, a.Error, a.OutputDigest, a.LogBytes, a.LogTruncated); err != nil {
				return fmt.Errorf("sqlite: write attempt %s: %w", a.ID, err)
			}
		}
	}
	for _, r := range b.Results {
		if _, err := tx.StmtContext(ctx, s.upsertResult).ExecContext(ctx, r.JobID, r.OutputDigest, r.AttemptID, r.BuildID, sqlrow.Nanos(r.Finished)); err != nil {
			return fmt.Errorf("sqlite: write result %s: %w", r.JobID, err)
		}
	}
	for _, id := range b.DeleteResults {
		if _, err := tx.StmtContext(ctx, s.deleteResult).ExecContext(ctx, id); err != nil {
			return fmt.Errorf("sqlite: delete result %s: %w", id, err)
		}
	}
	for _, w := range b.Workers {
		if _, err := tx.StmtContext(ctx, s.upsertWorker).ExecContext(ctx,
			w.Name, w.TokenHash, sqlrow.EncodeLabels(w.Labels), w.Slots, w.Version, sqlrow.Nanos(w.LastSeen)); err != nil {
			return fmt.Errorf("sqlite: write worker %s: %w", w.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// Build implements state.Store.
func (s *Store) Build(ctx context.Context, id int64) (*state.Build, error) {
	b, err := sqlrow.ScanBuild(s.db.QueryRowContext(ctx, `SELECT `+sqlrow.BuildCols+`, COALESCE(graph, X'') FROM builds LEFT JOIN build_graphs ON build_id=id WHERE id=?`, id), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: build %d: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: build %d: %w", id, err)
	}
	return b, nil
}

// Jobs implements state.Store. Rows and sets are read by one statement,
// from one snapshot: a commit that moves a job from a set to a row
// meanwhile cannot make it appear twice or not at all.
func (s *Store) Jobs(ctx context.Context, buildID int64) ([]state.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sqlrow.JobCols+`, NULL FROM jobs WHERE build_id=?1
		UNION ALL SELECT build_id, '', '', 0, state, '', '', NULL, '', 0, 0, jobs FROM job_sets WHERE build_id=?1`, buildID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: jobs of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var out []state.Job
	for rows.Next() {
		jobs, _, err := jobset.ScanJobs(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: jobs of build %d: %w", buildID, err)
		}
		out = append(out, jobs...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: jobs of build %d: %w", buildID, err)
	}
	slices.SortStableFunc(out, func(a, b state.Job) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

func (s *Store) queryAttempts(ctx context.Context, what, q string, args ...any) ([]state.Attempt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sqlrow.AttemptCols+` FROM attempts `+q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: attempts of %s: %w", what, err)
	}
	defer rows.Close()
	var out []state.Attempt
	for rows.Next() {
		a, err := sqlrow.ScanAttempt(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: attempts of %s: %w", what, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: attempts of %s: %w", what, err)
	}
	return out, nil
}

// Attempts implements state.Store.
func (s *Store) Attempts(ctx context.Context, buildID int64) ([]state.Attempt, error) {
	return s.queryAttempts(ctx, fmt.Sprintf("build %d", buildID), `WHERE build_id=? ORDER BY started, id`, buildID)
}

// JobAttempts implements state.Store.
func (s *Store) JobAttempts(ctx context.Context, jobID string) ([]state.Attempt, error) {
	return s.queryAttempts(ctx, "job "+jobID, `WHERE job_id=? ORDER BY started, id`, jobID)
}

// Attempt implements state.Store.
func (s *Store) Attempt(ctx context.Context, id string) (*state.Attempt, error) {
	a, err := sqlrow.ScanAttempt(s.db.QueryRowContext(ctx, `SELECT `+sqlrow.AttemptCols+` FROM attempts WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: attempt %s: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: attempt %s: %w", id, err)
	}
	return &a, nil
}

// ListBuilds implements state.Store.
func (s *Store) ListBuilds(ctx context.Context, f state.Filter) ([]state.Build, error) {
	var where []string
	var args []any
	if f.State != "" {
		where = append(where, "state=?")
		args = append(args, string(f.State))
	}
	if f.Before > 0 {
		where = append(where, "id<?")
		args = append(args, f.Before)
	}
	for k, v := range f.Labels {
		where = append(where, "id IN (SELECT build_id FROM build_labels WHERE key=? AND value=?)")
		args = append(args, k, v)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q := `SELECT ` + sqlrow.BuildCols + ` FROM builds`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list builds: %w", err)
	}
	defer rows.Close()
	var out []state.Build
	for rows.Next() {
		b, err := sqlrow.ScanBuild(rows, false)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list builds: %w", err)
		}
		out = append(out, *b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list builds: %w", err)
	}
	return out, nil
}

// JobCounts implements state.Store.
func (s *Store) JobCounts(ctx context.Context, buildIDs []int64) (map[int64]map[api.JobState]int, error) {
	out := map[int64]map[api.JobState]int{}
	for len(buildIDs) > 0 {
		n := min(len(buildIDs), 500)
		args := make([]any, n)
		for i, id := range buildIDs[:n] {
			args[i] = id
		}
		buildIDs = buildIDs[n:]
		in := `build_id IN (?` + strings.Repeat(",?", n-1) + `)`
		rows, err := s.db.QueryContext(ctx, `SELECT build_id, state, SUM(n) FROM (
			SELECT build_id, state, COUNT(*) AS n FROM jobs WHERE `+in+` GROUP BY build_id, state
			UNION ALL SELECT build_id, state, n FROM job_sets WHERE `+in+`) GROUP BY build_id, state`, append(args, args...)...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: job counts: %w", err)
		}
		for rows.Next() {
			var id int64
			var st string
			var c int
			if err := rows.Scan(&id, &st, &c); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: job counts: %w", err)
			}
			if out[id] == nil {
				out[id] = map[api.JobState]int{}
			}
			out[id][api.JobState(st)] = c
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: job counts: %w", err)
		}
	}
	return out, nil
}

// UnfinishedBuilds implements state.Store.
func (s *Store) UnfinishedBuilds(ctx context.Context) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM builds WHERE state=? ORDER BY id`, string(api.BuildRunning))
	if err != nil {
		return nil, fmt.Errorf("sqlite: unfinished builds: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: unfinished builds: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Results implements state.Store. It queries in chunks so that a graph of
// many thousands of jobs costs a few round trips.
func (s *Store) Results(ctx context.Context, jobIDs []string) (map[string]state.Result, error) {
	out := map[string]state.Result{}
	const chunk = 500
	for len(jobIDs) > 0 {
		n := min(chunk, len(jobIDs))
		part := jobIDs[:n]
		jobIDs = jobIDs[n:]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+sqlrow.ResultCols+` FROM results WHERE job_id IN (?`+strings.Repeat(",?", n-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: results: %w", err)
		}
		for rows.Next() {
			r, err := sqlrow.ScanResult(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: results: %w", err)
			}
			out[r.JobID] = r
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: results: %w", err)
		}
	}
	return out, nil
}

// Workers implements state.Store.
func (s *Store) Workers(ctx context.Context) ([]state.Worker, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sqlrow.WorkerCols+` FROM workers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: workers: %w", err)
	}
	defer rows.Close()
	var out []state.Worker
	for rows.Next() {
		w, err := sqlrow.ScanWorker(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: workers: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}
