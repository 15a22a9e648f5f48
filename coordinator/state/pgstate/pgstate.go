// Package pgstate implements the coordinator's state.Store in PostgreSQL
// (github.com/jackc/pgx/v5), for several coordinator replicas sharing one
// database. The schema mirrors state/sqlite's (times as Unix nanoseconds,
// labels as JSON text) and is versioned the same way: Open applies the
// migrations this tryd knows in order, each in its own transaction under
// an advisory lock (so replicas starting together migrate once), and
// refuses a database whose schema is newer (state.ErrSchemaTooNew).
//
// It also implements state.Leaser: each running build carries an owner
// (replica ID and URL), a lease expiry, and the replica that offered it
// unheld (offered_by, which its claims prefer). Claims use
// SELECT ... FOR UPDATE SKIP LOCKED, so concurrent replicas never take the
// same build, and replicas nudge each other with LISTEN/NOTIFY on the
// channel "tryd_builds" when builds wait for an owner, and announce on
// "tryd_held" (payload: the build's decimal ID) each build they take.
package pgstate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/internal/sqlrow"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to i+1. Never edit a released migration: append a new one.
var migrations = []string{
	// Version 1.
	`CREATE TABLE builds (
		id BIGSERIAL PRIMARY KEY,
		priority TEXT NOT NULL,
		labels TEXT NOT NULL,
		graph BYTEA NOT NULL,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		created BIGINT NOT NULL,
		finished BIGINT NOT NULL DEFAULT 0,
		owner TEXT NOT NULL DEFAULT '',
		owner_url TEXT NOT NULL DEFAULT '',
		lease_expires BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX builds_state ON builds(state, id);
	CREATE INDEX builds_owner ON builds(owner) WHERE state = 'running';
	CREATE TABLE build_labels (
		build_id BIGINT NOT NULL REFERENCES builds(id),
		key TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (key, value, build_id)
	);
	CREATE TABLE jobs (
		build_id BIGINT NOT NULL REFERENCES builds(id),
		job_id TEXT NOT NULL,
		name TEXT NOT NULL,
		seq INTEGER NOT NULL,
		state TEXT NOT NULL,
		worker TEXT NOT NULL DEFAULT '',
		output_digest TEXT NOT NULL DEFAULT '',
		exit_code INTEGER,
		error TEXT NOT NULL DEFAULT '',
		started BIGINT NOT NULL DEFAULT 0,
		finished BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (build_id, job_id)
	);
	CREATE TABLE attempts (
		id TEXT PRIMARY KEY,
		build_id BIGINT NOT NULL,
		job_id TEXT NOT NULL,
		worker TEXT NOT NULL,
		state TEXT NOT NULL,
		started BIGINT NOT NULL,
		finished BIGINT NOT NULL DEFAULT 0,
		exit_code INTEGER,
		error TEXT NOT NULL DEFAULT '',
		output_digest TEXT NOT NULL DEFAULT '',
		log_bytes BIGINT NOT NULL DEFAULT 0,
		log_truncated BOOLEAN NOT NULL DEFAULT false
	);
	CREATE INDEX attempts_build ON attempts(build_id, started);
	CREATE INDEX attempts_job ON attempts(job_id, started);
	CREATE TABLE results (
		job_id TEXT PRIMARY KEY,
		output_digest TEXT NOT NULL,
		attempt_id TEXT NOT NULL,
		build_id BIGINT NOT NULL,
		finished BIGINT NOT NULL
	);
	CREATE TABLE workers (
		name TEXT PRIMARY KEY,
		token_hash TEXT NOT NULL,
		labels TEXT NOT NULL,
		slots INTEGER NOT NULL,
		version TEXT NOT NULL,
		last_seen BIGINT NOT NULL
	);`,
	// Version 2: the replica that offered a build it did not hold
	// (Store.OfferBuild), whose claims prefer it.
	`ALTER TABLE builds ADD COLUMN offered_by TEXT NOT NULL DEFAULT '';`,
}

// SchemaVersion is the schema version this tryd writes.
var SchemaVersion = len(migrations)

// migrateLock is the advisory lock key held while migrating ("tryd" in
// ASCII), so that replicas starting at once do not race.
const migrateLock = 0x74727964

// notifyChannel is the LISTEN/NOTIFY channel of claim nudges.
const notifyChannel = "tryd_builds"

// heldChannel is the LISTEN/NOTIFY channel of held notices: a replica
// took the build whose decimal ID is the payload.
const heldChannel = "tryd_held"

// defaultConnectTimeout bounds a new connection when the DSN sets no
// connect_timeout.
const defaultConnectTimeout = 5 * time.Second

// Options configure a Store.
type Options struct {
	// DSN is the connection string (required), e.g.
	// "postgres://user@host:5432/tryd?sslmode=require". It is a secret:
	// it never appears in errors or logs.
	DSN string
	// MaxConns bounds the connection pool (default 10).
	MaxConns int32
	// Log receives reconnection notices of the LISTEN connection; nil
	// discards them.
	Log logrus.FieldLogger
}

// Store is a state.Store and state.Leaser in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	log  logrus.FieldLogger
}

var (
	_ state.Store      = (*Store)(nil)
	_ state.Leaser     = (*Store)(nil)
	_ state.JobCounter = (*Store)(nil)
)

// Open connects, and creates or migrates the schema.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.DSN == "" {
		return nil, errors.New("pgstate: Options.DSN is empty")
	}
	if opts.MaxConns < 0 {
		return nil, errors.New("pgstate: Options.MaxConns is negative")
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("pgstate: malformed DSN")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A database that does not answer (not one that refuses) fails
		// a call after this, rather than hanging it (connect_timeout in
		// the DSN overrides it).
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	cfg.MaxConns = 10
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstate: connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	s := &Store{pool: pool, log: log}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstate: %w", err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOnce(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateOnce applies the next migration, if any, in one transaction.
func (s *Store) migrateOnce(ctx context.Context) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
		return false, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return false, fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	err = tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		v = 0
		_, err = tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES (0)`)
	}
	if err != nil {
		return false, fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("schema version %d, this tryd knows up to %d: %w", v, len(migrations), state.ErrSchemaTooNew)
	}
	if v == len(migrations) {
		return true, tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE schema_version SET version = $1`, v+1); err != nil {
		return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
	}
	return false, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func int32p(p *int) *int32 {
	if p == nil {
		return nil
	}
	v := int32(*p)
	return &v
}

// CreateBuild implements state.Store in one statement (one round trip,
// atomic on its own): the build, its labels and its jobs are inserted by
// data-modifying CTEs that share the new build's ID.
func (s *Store) CreateBuild(ctx context.Context, b *state.Build, jobs []state.Job) (int64, error) {
	var keys, values []string
	for k, v := range b.Labels {
		keys, values = append(keys, k), append(values, v)
	}
	j := jobArrays(jobs, 0)
	var id int64
	err := s.pool.QueryRow(ctx, `WITH b AS (
			INSERT INTO builds (priority, labels, graph, state, error, created, finished) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
		), l AS (
			INSERT INTO build_labels (build_id, key, value) SELECT b.id, l.k, l.v FROM b, unnest($8::text[], $9::text[]) AS l(k, v)
		), j AS (
			INSERT INTO jobs (build_id, job_id, name, seq, state, worker, output_digest, exit_code, error, started, finished)
			SELECT b.id, j.* FROM b, unnest($10::text[], $11::text[], $12::int[], $13::text[], $14::text[], $15::text[], $16::int[], $17::text[], $18::bigint[], $19::bigint[]) AS j
		)
		SELECT id FROM b`,
		string(b.Priority), sqlrow.EncodeLabels(b.Labels), b.Graph, string(b.State), b.Error, sqlrow.Nanos(b.Created), sqlrow.Nanos(b.Finished),
		keys, values,
		j.ids, j.names, j.seqs, j.states, j.workers, j.outputs, j.exits, j.errs, j.starts, j.fins).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("pgstate: create build: %w", err)
	}
	return id, nil
}

// jobCols are the columns of jobs as arrays, for statements over
// unnest: any number of rows cost one statement.
type jobCols struct {
	bids                                       []int64
	ids, names, states, workers, outputs, errs []string
	seqs                                       []int32
	exits                                      []*int32
	starts, fins                               []int64
}

// jobArrays returns jobs as columns; buildID, if not 0, replaces their
// BuildID.
func jobArrays(jobs []state.Job, buildID int64) jobCols {
	n := len(jobs)
	c := jobCols{
		bids: make([]int64, n),
		ids:  make([]string, n), names: make([]string, n), states: make([]string, n), workers: make([]string, n), outputs: make([]string, n), errs: make([]string, n),
		seqs:   make([]int32, n),
		exits:  make([]*int32, n),
		starts: make([]int64, n), fins: make([]int64, n),
	}
	for i, j := range jobs {
		c.bids[i] = j.BuildID
		if buildID != 0 {
			c.bids[i] = buildID
		}
		c.ids[i], c.names[i], c.seqs[i], c.states[i], c.workers[i], c.outputs[i] = j.JobID, j.Name, int32(j.Seq), string(j.State), j.Worker, j.OutputDigest
		c.exits[i], c.errs[i], c.starts[i], c.fins[i] = int32p(j.ExitCode), j.Error, sqlrow.Nanos(j.Started), sqlrow.Nanos(j.Finished)
	}
	return c
}

// lastByKey returns xs without the elements whose key a later element
// repeats: an upsert over unnest may not change one row twice, and in a
// batch the last change of a record wins.
func lastByKey[T any, K comparable](xs []T, key func(T) K) []T {
	seen := make(map[K]bool, len(xs))
	out := make([]T, 0, len(xs))
	for i := len(xs) - 1; i >= 0; i-- {
		if k := key(xs[i]); !seen[k] {
			seen[k] = true
			out = append(out, xs[i])
		}
	}
	slices.Reverse(out)
	return out
}

// Commit implements state.Store in one round trip: the batch's
// statements (one per kind of record, over arrays, for jobs, attempts
// and results) are pipelined and end with a single Sync, so PostgreSQL
// runs them in one implicit transaction: all or nothing. The
// coordinator commits after every burst of job transitions, so each
// round trip saved is saved per job.
func (s *Store) Commit(ctx context.Context, b *state.Batch) error {
	_, err := s.commit(ctx, b, "")
	return err
}

// commit is Commit, fenced by owner's leases unless owner is empty (see
// CommitHeld). Every statement over a build's records carries the
// fence's condition, true at once for an empty owner: one statement
// text for both.
func (s *Store) commit(ctx context.Context, b *state.Batch, owner string) (foreign []int64, err error) {
	if b.Empty() {
		return nil, nil
	}
	var batch pgx.Batch
	var fenced []int64
	if owner != "" {
		fenced = batchBuilds(b)
		if len(fenced) > 0 {
			// In ID order, so that two fences never wait on each
			// other crosswise.
			batch.Queue(`SELECT id, owner FROM builds WHERE id = ANY($1) ORDER BY id FOR KEY SHARE`, fenced)
		}
	}
	for _, u := range b.Builds {
		if u.Graph != nil {
			batch.Queue(`UPDATE builds SET state=$1, error=$2, finished=$3, graph=$4 WHERE id=$5 AND ($6 = '' OR owner = $6)`, string(u.State), u.Error, sqlrow.Nanos(u.Finished), u.Graph, u.ID, owner)
		} else {
			batch.Queue(`UPDATE builds SET state=$1, error=$2, finished=$3 WHERE id=$4 AND ($5 = '' OR owner = $5)`, string(u.State), u.Error, sqlrow.Nanos(u.Finished), u.ID, owner)
		}
	}
	if len(b.Jobs) > 0 {
		type key struct {
			build int64
			job   string
		}
		j := jobArrays(lastByKey(b.Jobs, func(j state.Job) key { return key{j.BuildID, j.JobID} }), 0)
		batch.Queue(`INSERT INTO jobs (build_id, job_id, name, seq, state, worker, output_digest, exit_code, error, started, finished)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[], $10::bigint[], $11::bigint[]) AS u(b)
			WHERE $12 = '' OR u.b IN (SELECT id FROM builds WHERE id = ANY($1) AND owner = $12)
			ON CONFLICT (build_id, job_id) DO UPDATE SET name=excluded.name, seq=excluded.seq, state=excluded.state, worker=excluded.worker,
			output_digest=excluded.output_digest, exit_code=excluded.exit_code, error=excluded.error, started=excluded.started, finished=excluded.finished`,
			j.bids, j.ids, j.names, j.seqs, j.states, j.workers, j.outputs, j.exits, j.errs, j.starts, j.fins, owner)
	}
	if len(b.Attempts) > 0 {
		atts := lastByKey(b.Attempts, func(a state.Attempt) string { return a.ID })
		n := len(atts)
		ids, jobIDs, workers, states, errs, outs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		bids, starts, fins, logBytes := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		exits, truncated := make([]*int32, n), make([]bool, n)
		for i, a := range atts {
			ids[i], bids[i], jobIDs[i], workers[i], states[i], starts[i], fins[i] = a.ID, a.BuildID, a.JobID, a.Worker, string(a.State), sqlrow.Nanos(a.Started), sqlrow.NanosPtr(a.Finished)
			exits[i], errs[i], outs[i], logBytes[i], truncated[i] = int32p(a.ExitCode), a.Error, a.OutputDigest, a.LogBytes, a.LogTruncated
		}
		batch.Queue(`INSERT INTO attempts (id, build_id, job_id, worker, state, started, finished, exit_code, error, output_digest, log_bytes, log_truncated)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::int[], $9::text[], $10::text[], $11::bigint[], $12::bool[]) AS u(i, b)
			WHERE $13 = '' OR u.b IN (SELECT id FROM builds WHERE id = ANY($2) AND owner = $13)
			ON CONFLICT (id) DO UPDATE SET worker=excluded.worker, state=excluded.state, finished=excluded.finished, exit_code=excluded.exit_code,
			error=excluded.error, output_digest=excluded.output_digest, log_bytes=excluded.log_bytes, log_truncated=excluded.log_truncated`,
			ids, bids, jobIDs, workers, states, starts, fins, exits, errs, outs, logBytes, truncated, owner)
	}
	if len(b.Results) > 0 {
		rs := lastByKey(b.Results, func(r state.Result) string { return r.JobID })
		n := len(rs)
		ids, outs, atts := make([]string, n), make([]string, n), make([]string, n)
		bids, fins := make([]int64, n), make([]int64, n)
		for i, r := range rs {
			ids[i], outs[i], atts[i], bids[i], fins[i] = r.JobID, r.OutputDigest, r.AttemptID, r.BuildID, sqlrow.Nanos(r.Finished)
		}
		batch.Queue(`INSERT INTO results (job_id, output_digest, attempt_id, build_id, finished)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(j, o, a, b)
			WHERE $6 = '' OR u.b IN (SELECT id FROM builds WHERE id = ANY($4) AND owner = $6)
			ON CONFLICT (job_id) DO UPDATE SET output_digest=excluded.output_digest, attempt_id=excluded.attempt_id, build_id=excluded.build_id, finished=excluded.finished`,
			ids, outs, atts, bids, fins, owner)
	}
	if len(b.DeleteResults) > 0 {
		batch.Queue(`DELETE FROM results WHERE job_id = ANY($1)`, b.DeleteResults)
	}
	for _, w := range b.Workers {
		batch.Queue(`INSERT INTO workers (name, token_hash, labels, slots, version, last_seen) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO UPDATE SET token_hash=excluded.token_hash, labels=excluded.labels, slots=excluded.slots, version=excluded.version, last_seen=excluded.last_seen`,
			w.Name, w.TokenHash, sqlrow.EncodeLabels(w.Labels), w.Slots, w.Version, sqlrow.Nanos(w.LastSeen))
	}
	br := s.pool.SendBatch(ctx, &batch)
	if len(fenced) > 0 {
		var id int64
		var o string
		rows, _ := br.Query()
		_, err = pgx.ForEachRow(rows, []any{&id, &o}, func() error {
			if o != owner {
				foreign = append(foreign, id)
			}
			return nil
		})
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pgstate: commit: %w", err)
	}
	return foreign, nil
}

// Build implements state.Store.
func (s *Store) Build(ctx context.Context, id int64) (*state.Build, error) {
	b, err := sqlrow.ScanBuild(s.pool.QueryRow(ctx, `SELECT `+sqlrow.BuildCols+`, graph FROM builds WHERE id=$1`, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstate: build %d: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstate: build %d: %w", id, err)
	}
	return b, nil
}

// Jobs implements state.Store.
func (s *Store) Jobs(ctx context.Context, buildID int64) ([]state.Job, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.JobCols+` FROM jobs WHERE build_id=$1 ORDER BY seq`, buildID)
	if err != nil {
		return nil, fmt.Errorf("pgstate: jobs of build %d: %w", buildID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Job, error) { return sqlrow.ScanJob(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstate: jobs of build %d: %w", buildID, err)
	}
	return out, nil
}

func (s *Store) queryAttempts(ctx context.Context, what, q string, args ...any) ([]state.Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.AttemptCols+` FROM attempts `+q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstate: attempts of %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Attempt, error) { return sqlrow.ScanAttempt(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstate: attempts of %s: %w", what, err)
	}
	return out, nil
}

// Attempts implements state.Store.
func (s *Store) Attempts(ctx context.Context, buildID int64) ([]state.Attempt, error) {
	return s.queryAttempts(ctx, fmt.Sprintf("build %d", buildID), `WHERE build_id=$1 ORDER BY started, id`, buildID)
}

// JobAttempts implements state.Store.
func (s *Store) JobAttempts(ctx context.Context, jobID string) ([]state.Attempt, error) {
	return s.queryAttempts(ctx, "job "+jobID, `WHERE job_id=$1 ORDER BY started, id`, jobID)
}

// Attempt implements state.Store.
func (s *Store) Attempt(ctx context.Context, id string) (*state.Attempt, error) {
	a, err := sqlrow.ScanAttempt(s.pool.QueryRow(ctx, `SELECT `+sqlrow.AttemptCols+` FROM attempts WHERE id=$1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstate: attempt %s: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstate: attempt %s: %w", id, err)
	}
	return &a, nil
}

// ListBuilds implements state.Store.
func (s *Store) ListBuilds(ctx context.Context, f state.Filter) ([]state.Build, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.State != "" {
		where = append(where, "state="+arg(string(f.State)))
	}
	if f.Before > 0 {
		where = append(where, "id<"+arg(f.Before))
	}
	for k, v := range f.Labels {
		where = append(where, "id IN (SELECT build_id FROM build_labels WHERE key="+arg(k)+" AND value="+arg(v)+")")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q := `SELECT ` + sqlrow.BuildCols + ` FROM builds`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstate: list builds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Build, error) {
		b, err := sqlrow.ScanBuild(r, false)
		if err != nil {
			return state.Build{}, err
		}
		return *b, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgstate: list builds: %w", err)
	}
	return out, nil
}

// JobCounts implements state.JobCounter, in one query for any number of
// builds.
func (s *Store) JobCounts(ctx context.Context, buildIDs []int64) (map[int64]map[api.JobState]int, error) {
	out := map[int64]map[api.JobState]int{}
	if len(buildIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT build_id, state, count(*) FROM jobs WHERE build_id = ANY($1) GROUP BY build_id, state`, buildIDs)
	if err != nil {
		return nil, fmt.Errorf("pgstate: job counts: %w", err)
	}
	var id, n int64
	var st string
	_, err = pgx.ForEachRow(rows, []any{&id, &st, &n}, func() error {
		if out[id] == nil {
			out[id] = map[api.JobState]int{}
		}
		out[id][api.JobState(st)] = int(n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgstate: job counts: %w", err)
	}
	return out, nil
}

// UnfinishedBuilds implements state.Store.
func (s *Store) UnfinishedBuilds(ctx context.Context) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM builds WHERE state=$1 ORDER BY id`, string(api.BuildRunning))
	if err != nil {
		return nil, fmt.Errorf("pgstate: unfinished builds: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("pgstate: unfinished builds: %w", err)
	}
	return ids, nil
}

// Results implements state.Store, in one query for any number of IDs.
func (s *Store) Results(ctx context.Context, jobIDs []string) (map[string]state.Result, error) {
	out := map[string]state.Result{}
	if len(jobIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.ResultCols+` FROM results WHERE job_id = ANY($1)`, jobIDs)
	if err != nil {
		return nil, fmt.Errorf("pgstate: results: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Result, error) { return sqlrow.ScanResult(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstate: results: %w", err)
	}
	for _, r := range rs {
		out[r.JobID] = r
	}
	return out, nil
}

// Workers implements state.Store.
func (s *Store) Workers(ctx context.Context) ([]state.Worker, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.WorkerCols+` FROM workers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("pgstate: workers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Worker, error) { return sqlrow.ScanWorker(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstate: workers: %w", err)
	}
	return out, nil
}
