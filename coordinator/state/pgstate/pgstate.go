// Package pgstate implements the coordinator's state.Store in PostgreSQL
// (github.com/jackc/pgx/v5), for several coordinator replicas sharing one
// database. The schema mirrors state/sqlite's (times as Unix nanoseconds,
// labels as JSON text) and is versioned the same way: Open applies the
// migrations this tryd knows in order, each in its own transaction under
// an advisory lock (so replicas starting together migrate once), and
// refuses a database whose schema is newer (state.ErrSchemaTooNew).
//
// Jobs are rows of jobs, except the finished jobs a build is created with
// (a submission's cached jobs), which are kept as one job set per build
// and state (job_sets, state/internal/jobset): a resubmitted graph of
// 10,000 cached jobs is one statement writing one set instead of 10,000
// rows (BenchmarkCachedBuild). A commit that writes a job of a set takes
// it out of the set in the same transaction, with the set's row locked
// FOR UPDATE, so that replicas rewriting a set at once lose nothing.
// Graphs are kept in build_graphs, apart from the builds' other columns,
// which change.
//
// It also implements state.Leaser: each running build carries an owner
// (replica ID and URL), a lease expiry, the replica that offered it
// unheld (offered_by, which its claims prefer), and how many times a
// replica took its lease (holds, counted by a trigger), so that a claim
// tells a build no replica held before (ClaimBuildsFresh). Claims use
// SELECT ... FOR UPDATE SKIP LOCKED, so concurrent replicas never take the
// same build, and replicas nudge each other with LISTEN/NOTIFY on the
// channel "tryd_builds" when builds wait for an owner, and announce on
// "tryd_held" (payload: the build's decimal ID) each build they take.
//
// A pooled connection whose session the server ended (an operator's
// pg_terminate_backend, a restart) is replaced before use: pgxpool pings
// a connection idle for over a second, and the store has it ping one
// whose socket shows the server's end as well (a check without a round
// trip), so that the next statement does not fail on it.
package pgstate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"

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
	// Version 3: the finished jobs a build is created with as one job
	// set per build and state (state/internal/jobset) instead of a row
	// each; graphs apart from the builds' other columns, which change
	// (every lease renewal writes a new version of a build's row, and
	// a graph of a few KB is kept in the row). Sets and graphs are compressed with lz4 where the server has it (a build of
	// 10,000 cached jobs: 8 ms of server CPU instead of pglz's 35 ms,
	// BenchmarkCachedBuild), else sets are stored uncompressed (15 ms).
	// Copying the graphs takes a while on a large database, and an
	// older replica still running fails to create builds afterwards
	// (builds.graph is gone): upgrade the replicas together.
	`CREATE TABLE job_sets (
		build_id BIGINT NOT NULL REFERENCES builds(id),
		state TEXT NOT NULL,
		n INTEGER NOT NULL,
		jobs BYTEA NOT NULL,
		PRIMARY KEY (build_id, state)
	);
	CREATE TABLE build_graphs (
		build_id BIGINT PRIMARY KEY REFERENCES builds(id),
		graph BYTEA NOT NULL
	);
	INSERT INTO build_graphs (build_id, graph) SELECT id, graph FROM builds;
	ALTER TABLE builds DROP COLUMN graph;
	DO $$ BEGIN
		EXECUTE 'ALTER TABLE job_sets ALTER COLUMN jobs SET COMPRESSION lz4';
		EXECUTE 'ALTER TABLE build_graphs ALTER COLUMN graph SET COMPRESSION lz4';
	EXCEPTION WHEN OTHERS THEN -- no lz4 here (or before PostgreSQL 14)
		ALTER TABLE job_sets ALTER COLUMN jobs SET STORAGE EXTERNAL;
	END $$;`,
	// Version 4: how many times a replica took a build's lease
	// (HoldBuild, ClaimBuilds), counted by a trigger on every update
	// that sets an owner, whichever tryd makes it: a claim that takes
	// a build first (holds becomes 1) finds it exactly as CreateBuild
	// wrote it, since only a holder writes a build's records
	// (ClaimBuildsFresh). Running builds of before count as held.
	`ALTER TABLE builds ADD COLUMN holds INTEGER NOT NULL DEFAULT 0;
	UPDATE builds SET holds = 1 WHERE state = 'running';
	CREATE FUNCTION tryd_count_hold() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		NEW.holds := OLD.holds + 1;
		RETURN NEW;
	END $$;
	CREATE TRIGGER builds_count_hold BEFORE UPDATE OF owner ON builds
		FOR EACH ROW WHEN (NEW.owner <> '') EXECUTE FUNCTION tryd_count_hold();`,
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

	// setsMu guards sets, which knows which builds have job sets and
	// which jobs they hold (see jobset.Index): a commit reads and
	// rewrites sets (in a transaction of several round trips instead of
	// one) only for the builds it does not know or whose sets may hold
	// one of its jobs.
	setsMu sync.Mutex
	sets   *jobset.Index

	// bufs keeps the columns of commits for the next ones.
	bufs bufPool
}

var (
	_ state.Store      = (*Store)(nil)
	_ state.Leaser     = (*Store)(nil)
	_ state.JobCounter = (*Store)(nil)
	_ state.JobSetter  = (*Store)(nil)
)

// KeepsJobSets implements state.JobSetter: the finished jobs a build is
// created with are kept in job_sets, in the statement that creates the
// build (see state/internal/jobset).
func (s *Store) KeepsJobSets() bool { return true }

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
	// pgxpool pings a connection idle for over a second before handing
	// it out; one idle less long whose session the server ended (an
	// operator's pg_terminate_backend, a restart) failed its next
	// statement, a retryable error for a client. Pinged too if its
	// socket shows the end (a check without a round trip).
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > time.Second || peerClosed(p.Conn.PgConn().Conn())
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
	s := &Store{pool: pool, log: log, sets: jobset.NewIndex(jobset.MaxIndex)}
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
	// Replicas of an older tryd still running against the database no
	// longer understand it (deploy/README.md: upgrades that change the
	// schema replace every replica at once).
	if v > 0 {
		s.log.WithFields(logrus.Fields{"from": v, "to": v + 1}).Warn("pgstate: migrated the database schema; replicas of an older tryd must stop")
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

// CreateBuild implements state.Store in one statement (one round trip,
// atomic on its own): the build, its graph, its labels, its unfinished
// jobs (rows) and its finished ones (job sets) are inserted by
// data-modifying CTEs that share the new build's ID.
func (s *Store) CreateBuild(ctx context.Context, b *state.Build, jobs []state.Job) (int64, error) {
	var keys, values []string
	for k, v := range b.Labels {
		keys, values = append(keys, k), append(values, v)
	}
	s.setsMu.Lock()
	rows, sets, hashes := s.sets.Split(jobs)
	s.setsMu.Unlock()
	cb := s.bufs.get()
	defer s.bufs.put(cb)
	j := &cb.jobs
	j.set(rows)
	setStates, setSizes, setJobs := make([]string, len(sets)), make([]int32, len(sets)), make([][]byte, len(sets))
	for i, set := range sets {
		setStates[i], setSizes[i], setJobs[i] = string(set[0].State), int32(len(set)), jobset.Encode(set)
	}
	graph := b.Graph
	if graph == nil {
		graph = []byte{} // NOT NULL
	}
	var id int64
	err := s.pool.QueryRow(ctx, `WITH b AS (
			INSERT INTO builds (priority, labels, state, error, created, finished) VALUES ($1, $2, $4, $5, $6, $7) RETURNING id
		), g AS (
			INSERT INTO build_graphs (build_id, graph) SELECT id, $3 FROM b
		), l AS (
			INSERT INTO build_labels (build_id, key, value) SELECT b.id, l.k, l.v FROM b, unnest($8::text[], $9::text[]) AS l(k, v)
		), j AS (
			INSERT INTO jobs (build_id, job_id, name, seq, state, worker, output_digest, exit_code, error, started, finished)
			SELECT b.id, j.* FROM b, unnest($10::text[], $11::text[], $12::int[], $13::text[], $14::text[], $15::text[], $16::int[], $17::text[], $18::bigint[], $19::bigint[]) AS j
		), s AS (
			INSERT INTO job_sets (build_id, state, n, jobs) SELECT b.id, s.* FROM b, unnest($20::text[], $21::int[], $22::bytea[]) AS s
		)
		SELECT id FROM b`,
		string(b.Priority), sqlrow.EncodeLabels(b.Labels), graph, string(b.State), b.Error, sqlrow.Nanos(b.Created), sqlrow.Nanos(b.Finished),
		keys, values,
		&j.ids, &j.names, &j.seqs, &j.states, &j.workers, &j.outputs, &j.exits, &j.errs, &j.starts, &j.fins,
		setStates, setSizes, setJobs).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("pgstate: create build: %w", err)
	}
	s.setsMu.Lock()
	s.sets.Put(id, hashes)
	s.setsMu.Unlock()
	return id, nil
}

// smallBatch is the number of records up to which lastByKey compares
// keys pairwise rather than through a map: fewer than a map's
// insertions for the few records of most commits.
const smallBatch = 16

// lastByKey returns xs without the elements whose key a later element
// repeats: an upsert over unnest may not change one row twice, and in a
// batch the last change of a record wins. Without repeats (most
// batches), it returns xs itself. seen is a scratch map.
func lastByKey[T any, K comparable](xs []T, key func(*T) K, seen map[K]int) []T {
	n := len(xs)
	last := func(i int) bool { // xs[i] is its key's last element
		k := key(&xs[i])
		for j := i + 1; j < n; j++ {
			if key(&xs[j]) == k {
				return false
			}
		}
		return true
	}
	if n <= smallBatch {
		i := 0
		for i < n && last(i) {
			i++
		}
		if i == n {
			return xs
		}
		out := append(make([]T, 0, n), xs[:i]...)
		for ; i < n; i++ {
			if last(i) {
				out = append(out, xs[i])
			}
		}
		return out
	}
	clear(seen)
	for i := range xs {
		seen[key(&xs[i])] = i
	}
	if len(seen) == n {
		return xs
	}
	out := make([]T, 0, len(seen))
	for i := range xs {
		if seen[key(&xs[i])] == i {
			out = append(out, xs[i])
		}
	}
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
// text for both. A batch that writes a job that may be in a job set
// takes the transaction of commitWithSets instead.
func (s *Store) commit(ctx context.Context, b *state.Batch, owner string) (foreign []int64, err error) {
	if b.Empty() {
		return nil, nil
	}
	cb := s.bufs.get()
	defer s.bufs.put(cb)
	cb.owner = pgText(owner)
	cb.fenced.reset(0)
	if owner != "" {
		batchBuilds(b, &cb.fenced)
	}
	jobs := lastByKey(b.Jobs, func(j *state.Job) jobKey { return jobKey{j.BuildID, j.JobID} }, cb.jobSeen)
	s.setsMu.Lock()
	cands := s.sets.Candidates(jobs)
	s.setsMu.Unlock()
	if len(cands) > 0 {
		return s.commitWithSets(ctx, cb, b, jobs, cands)
	}
	var batch pgx.Batch
	if len(cb.fenced.v) > 0 {
		batch.Queue(fenceSQL, &cb.fenced)
	}
	queueWrites(&batch, cb, b, jobs)
	br := s.pool.SendBatch(ctx, &batch)
	if len(cb.fenced.v) > 0 {
		foreign, err = readFence(br, owner)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pgstate: commit: %w", err)
	}
	return foreign, nil
}

// fenceSQL locks the rows of the builds of a fenced commit (see
// CommitHeld) in ID order, so that two fences never wait on each other
// crosswise, and reads their owners.
const fenceSQL = `SELECT id, owner FROM builds WHERE id = ANY($1) ORDER BY id FOR KEY SHARE`

// readFence reads the answer to fenceSQL: the builds owner does not own.
func readFence(br pgx.BatchResults, owner string) (foreign []int64, err error) {
	var id int64
	var o string
	rows, _ := br.Query()
	_, err = pgx.ForEachRow(rows, []any{&id, &o}, func() error {
		if o != owner {
			foreign = append(foreign, id)
		}
		return nil
	})
	return foreign, err
}

// commitWithSets is commit for a batch some of whose jobs may be in job
// sets (cands: by build, the IDs of those jobs), in a transaction: the
// fence if any, then the sets of the candidate builds the fence leaves,
// read FOR UPDATE (so that concurrent rewrites of a set, by any replica,
// apply one after the other), the jobs of the batch taken out of them,
// and the batch's writes. The coordinator writes a job of a set only
// when it runs a cached job again, so this runs about once per build
// this process did not create or claim (to learn that it has no sets).
func (s *Store) commitWithSets(ctx context.Context, cb *commitBuf, b *state.Batch, jobs []state.Job, cands map[int64]map[string]bool) (foreign []int64, err error) {
	owner := string(cb.owner)
	type storedSet struct {
		state api.JobState
		jobs  []state.Job
	}
	var read map[int64][]storedSet      // as read, for the index; an entry for every candidate build that exists
	var rewritten map[int64][]storedSet // as written, if the commit succeeds
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(cb.fenced.v) > 0 {
			var batch pgx.Batch
			batch.Queue(fenceSQL, &cb.fenced)
			br := tx.SendBatch(ctx, &batch)
			foreign, err = readFence(br, owner)
			if cerr := br.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		ids := make([]int64, 0, len(cands))
		for id := range cands {
			if !slices.Contains(foreign, id) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		var batch pgx.Batch
		batch.Queue(`SELECT build_id, state, jobs FROM job_sets WHERE build_id = ANY($1) ORDER BY build_id, state FOR UPDATE`, ids)
		batch.Queue(`SELECT id FROM builds WHERE id = ANY($1)`, ids)
		br := tx.SendBatch(ctx, &batch)
		sets := map[int64][]storedSet{}
		var bid int64
		var st string
		var blob []byte
		rows, _ := br.Query()
		_, err := pgx.ForEachRow(rows, []any{&bid, &st, &blob}, func() error {
			jobs, err := jobset.Decode(blob, bid, api.JobState(st))
			if err != nil {
				return fmt.Errorf("job set %s of build %d: %w", st, bid, err)
			}
			sets[bid] = append(sets[bid], storedSet{api.JobState(st), jobs})
			return nil
		})
		if err == nil {
			rows, _ = br.Query()
			_, err = pgx.ForEachRow(rows, []any{&bid}, func() error {
				if sets[bid] == nil {
					sets[bid] = []storedSet{} // exists, without sets
				}
				return nil
			})
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		read = sets
		var writes pgx.Batch
		for bid, bsets := range sets {
			var after []storedSet
			changed := false
			for _, set := range bsets {
				kept, removed := jobset.Remove(set.jobs, cands[bid])
				switch {
				case !removed:
				case len(kept) == 0:
					writes.Queue(`DELETE FROM job_sets WHERE build_id=$1 AND state=$2`, bid, string(set.state))
				default:
					writes.Queue(`UPDATE job_sets SET n=$1, jobs=$2 WHERE build_id=$3 AND state=$4`, len(kept), jobset.Encode(kept), bid, string(set.state))
				}
				changed = changed || removed
				if len(kept) > 0 {
					after = append(after, storedSet{set.state, kept})
				}
			}
			if changed {
				if rewritten == nil {
					rewritten = map[int64][]storedSet{}
				}
				rewritten[bid] = after
			}
		}
		queueWrites(&writes, cb, b, jobs)
		return tx.SendBatch(ctx, &writes).Close()
	})
	// What was read holds at least what the sets hold from then on,
	// whatever became of the commit; what was written, once committed.
	put := func(m map[int64][]storedSet) {
		for bid, sets := range m {
			all := make([][]state.Job, len(sets))
			for i, set := range sets {
				all[i] = set.jobs
			}
			s.sets.PutJobs(bid, all...)
		}
	}
	s.setsMu.Lock()
	put(read)
	if err == nil {
		put(rewritten)
	}
	s.setsMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("pgstate: commit: %w", err)
	}
	return foreign, nil
}

// queueWrites queues the statements of a batch (jobs: its jobs, the last
// record of each) in cb's columns, each conditioned on cb.owner's leases
// unless cb.owner is empty.
func queueWrites(batch *pgx.Batch, cb *commitBuf, b *state.Batch, jobs []state.Job) {
	owner := string(cb.owner)
	for _, u := range b.Builds {
		batch.Queue(`UPDATE builds SET state=$1, error=$2, finished=$3 WHERE id=$4 AND ($5 = '' OR owner = $5)`, string(u.State), u.Error, sqlrow.Nanos(u.Finished), u.ID, owner)
		if u.Graph != nil {
			batch.Queue(`UPDATE build_graphs SET graph=$1 WHERE build_id=$2 AND ($3 = '' OR build_id IN (SELECT id FROM builds WHERE id = $2 AND owner = $3))`, u.Graph, u.ID, owner)
		}
	}
	if len(jobs) > 0 {
		j := &cb.jobs
		j.set(jobs)
		cb.jobArgs = [...]any{&j.bids, &j.ids, &j.names, &j.seqs, &j.states, &j.workers, &j.outputs, &j.exits, &j.errs, &j.starts, &j.fins, &cb.owner}
		batch.Queue(`INSERT INTO jobs (build_id, job_id, name, seq, state, worker, output_digest, exit_code, error, started, finished)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[], $10::bigint[], $11::bigint[]) AS u(b)
			WHERE $12 = '' OR u.b IN (SELECT id FROM builds WHERE id = ANY($1) AND owner = $12)
			ON CONFLICT (build_id, job_id) DO UPDATE SET name=excluded.name, seq=excluded.seq, state=excluded.state, worker=excluded.worker,
			output_digest=excluded.output_digest, exit_code=excluded.exit_code, error=excluded.error, started=excluded.started, finished=excluded.finished`,
			cb.jobArgs[:]...)
	}
	if len(b.Attempts) > 0 {
		a := &cb.atts
		a.set(lastByKey(b.Attempts, func(a *state.Attempt) string { return a.ID }, cb.strSeen))
		cb.attArgs = [...]any{&a.ids, &a.bids, &a.jobIDs, &a.workers, &a.states, &a.starts, &a.fins, &a.exits, &a.errs, &a.outs, &a.logBytes, &a.truncated, &cb.owner}
		batch.Queue(`INSERT INTO attempts (id, build_id, job_id, worker, state, started, finished, exit_code, error, output_digest, log_bytes, log_truncated)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::int[], $9::text[], $10::text[], $11::bigint[], $12::bool[]) AS u(i, b)
			WHERE $13 = '' OR u.b IN (SELECT id FROM builds WHERE id = ANY($2) AND owner = $13)
			ON CONFLICT (id) DO UPDATE SET worker=excluded.worker, state=excluded.state, finished=excluded.finished, exit_code=excluded.exit_code,
			error=excluded.error, output_digest=excluded.output_digest, log_bytes=excluded.log_bytes, log_truncated=excluded.log_truncated`,
			cb.attArgs[:]...)
	}
	if len(b.Results) > 0 {
		r := &cb.res
		r.set(lastByKey(b.Results, func(r *state.Result) string { return r.JobID }, cb.strSeen))
		cb.resArgs = [...]any{&r.ids, &r.outs, &r.atts, &r.bids, &r.fins, &cb.owner}
		batch.Queue(`INSERT INTO results (job_id, output_digest, attempt_id, build_id, finished)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(j, o, a, b)
			WHERE $6 = '' OR u.b IN (SELECT id FROM builds WHERE id = ANY($4) AND owner = $6)
			ON CONFLICT (job_id) DO UPDATE SET output_digest=excluded.output_digest, attempt_id=excluded.attempt_id, build_id=excluded.build_id, finished=excluded.finished`,
			cb.resArgs[:]...)
	}
	if len(b.DeleteResults) > 0 {
		batch.Queue(`DELETE FROM results WHERE job_id = ANY($1)`, b.DeleteResults)
	}
	for _, w := range b.Workers {
		batch.Queue(`INSERT INTO workers (name, token_hash, labels, slots, version, last_seen) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO UPDATE SET token_hash=excluded.token_hash, labels=excluded.labels, slots=excluded.slots, version=excluded.version, last_seen=excluded.last_seen`,
			w.Name, w.TokenHash, sqlrow.EncodeLabels(w.Labels), w.Slots, w.Version, sqlrow.Nanos(w.LastSeen))
	}
}

// Build implements state.Store.
func (s *Store) Build(ctx context.Context, id int64) (*state.Build, error) {
	b, err := sqlrow.ScanBuild(s.pool.QueryRow(ctx, `SELECT `+sqlrow.BuildCols+`, COALESCE(graph, '') FROM builds LEFT JOIN build_graphs ON build_id = id WHERE id=$1`, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstate: build %d: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstate: build %d: %w", id, err)
	}
	return b, nil
}

// Jobs implements state.Store. Rows and sets are read by one statement,
// from one snapshot: a commit that moves a job from a set to a row
// meanwhile cannot make it appear twice or not at all. The sets read
// tell the index what they hold (a restored build's, say).
func (s *Store) Jobs(ctx context.Context, buildID int64) ([]state.Job, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.JobCols+`, NULL::bytea FROM jobs WHERE build_id=$1
		UNION ALL SELECT build_id, '', '', 0, state, '', '', NULL, '', 0, 0, jobs FROM job_sets WHERE build_id=$1`, buildID)
	if err != nil {
		return nil, fmt.Errorf("pgstate: jobs of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var out []state.Job
	var sets [][]state.Job
	// Each row is scanned into the same variables, appended to out
	// (what jobset.ScanJobs does, without its allocations per row: a
	// replica resuming a build reads all its jobs).
	var (
		j                      state.Job
		st                     string
		seq, started, finished int64
		exit                   *int64
		set                    []byte
	)
	dest := []any{&j.BuildID, &j.JobID, &j.Name, &seq, &st, &j.Worker, &j.OutputDigest, &exit, &j.Error, &started, &finished, &set}
	for rows.Next() {
		j, exit, set = state.Job{}, nil, nil
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("pgstate: jobs of build %d: %w", buildID, err)
		}
		if set != nil {
			jobs, err := jobset.Decode(set, j.BuildID, api.JobState(st))
			if err != nil {
				return nil, fmt.Errorf("pgstate: jobs of build %d: job set %s: %w", buildID, st, err)
			}
			sets = append(sets, jobs)
			out = append(out, jobs...)
			continue
		}
		j.Seq, j.State, j.ExitCode, j.Started, j.Finished = int(seq), api.JobState(st), sqlrow.Int(exit), sqlrow.Time(started), sqlrow.Time(finished)
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstate: jobs of build %d: %w", buildID, err)
	}
	if len(sets) > 0 {
		s.setsMu.Lock()
		s.sets.PutJobs(buildID, sets...)
		s.setsMu.Unlock()
	}
	slices.SortStableFunc(out, func(a, b state.Job) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

func (s *Store) queryAttempts(ctx context.Context, what, q string, args ...any) ([]state.Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.AttemptCols+` FROM attempts `+q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstate: attempts of %s: %w", what, err)
	}
	// Each row is scanned into the same variables (what
	// sqlrow.ScanAttempt does, without its allocations per row).
	var (
		out               []state.Attempt
		a                 state.Attempt
		st                string
		started, finished int64
		exit              *int64
	)
	_, err = pgx.ForEachRow(rows, []any{&a.ID, &a.BuildID, &a.JobID, &a.Worker, &st, &started, &finished, &exit, &a.Error, &a.OutputDigest, &a.LogBytes, &a.LogTruncated}, func() error {
		a.State, a.Started, a.Finished, a.ExitCode = api.AttemptState(st), sqlrow.Time(started), sqlrow.TimePtr(finished), sqlrow.Int(exit)
		out = append(out, a)
		exit = nil
		return nil
	})
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
// builds (a set's count is a column).
func (s *Store) JobCounts(ctx context.Context, buildIDs []int64) (map[int64]map[api.JobState]int, error) {
	out := map[int64]map[api.JobState]int{}
	if len(buildIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT build_id, state, sum(n)::bigint FROM (
			SELECT build_id, state, count(*) AS n FROM jobs WHERE build_id = ANY($1) GROUP BY build_id, state
			UNION ALL SELECT build_id, state, n FROM job_sets WHERE build_id = ANY($1)) c GROUP BY build_id, state`, buildIDs)
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
