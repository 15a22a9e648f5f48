package trybot

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tryd-ci/tryd/trybot/client"
)

// store keeps runs and what was posted for them in SQLite (WAL,
// synchronous=NORMAL: a committed transaction survives kill -9), so that a
// restarted trybot neither loses a run nor posts twice.
//
// Schema (version 2; a version 1 database is migrated on open):
//
//	runs(id, key UNIQUE, review, repo, change, patch_set, state, data)
//	   data is the client.Run as JSON, the rest are indexed copies.
//	posts(run_id, what, ext)   what was posted ("begin", "result",
//	   "check:<builder>", ...); ext is the remote ID (a check run ID).
//	marks(key)                 one-shot facts (a comment answered).
//	classifications(run_id, builder, job, class)   (version 2) the
//	   classification of each failed job ("new", "pre-existing", "flaky",
//	   or "" when it could not be classified), written in the same
//	   transaction as the run's data, so that a restart neither loses nor
//	   redoes a classification.
type store struct {
	db *sql.DB
}

const schemaV1 = `
CREATE TABLE IF NOT EXISTS runs (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	key TEXT NOT NULL UNIQUE,
	review TEXT NOT NULL,
	repo TEXT NOT NULL,
	change INTEGER NOT NULL,
	patch_set INTEGER NOT NULL,
	state TEXT NOT NULL,
	data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_change ON runs (repo, change);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE TABLE IF NOT EXISTS posts (
	run_id INTEGER NOT NULL,
	what TEXT NOT NULL,
	ext TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (run_id, what)
);
CREATE TABLE IF NOT EXISTS marks (
	key TEXT PRIMARY KEY
);
PRAGMA user_version = 1;
`

// schemaV2 migrates version 1 to 2.
const schemaV2 = `
CREATE TABLE IF NOT EXISTS classifications (
	run_id INTEGER NOT NULL,
	builder TEXT NOT NULL,
	job TEXT NOT NULL,
	class TEXT NOT NULL,
	PRIMARY KEY (run_id, builder, job)
);
PRAGMA user_version = 2;
`

// schemaVersion is the version this trybot writes.
const schemaVersion = 2

func openStore(ctx context.Context, dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	path := filepath.Join(dir, "trybot.db")
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("trybot: store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	var v int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("trybot: store: %s: %w", path, err)
	}
	if v > schemaVersion {
		db.Close()
		return nil, fmt.Errorf("trybot: store: %s has schema version %d, newer than this trybot (%d)", path, v, schemaVersion)
	}
	for i, step := range []string{schemaV1, schemaV2} {
		if v > i {
			continue
		}
		if _, err := db.ExecContext(ctx, step); err != nil {
			db.Close()
			return nil, fmt.Errorf("trybot: store: %s: migrate to schema version %d: %w", path, i+1, err)
		}
	}
	return &store{db: db}, nil
}

func (s *store) Close() error { return s.db.Close() }

// errExists is returned by create for a key that already has a run.
var errExists = errors.New("trybot: run exists")

// hasKey reports whether a run with key exists.
func (s *store) hasKey(ctx context.Context, key string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE key = ?`, key).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("trybot: store: %w", err)
	}
	return n > 0, nil
}

// create inserts r under key and sets r.ID.
func (s *store) create(ctx context.Context, key string, r *client.Run) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("trybot: store: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO runs (key, review, repo, change, patch_set, state, data) VALUES (?, ?, ?, ?, ?, ?, '{}') ON CONFLICT (key) DO NOTHING`,
		key, r.Review, r.Repo, r.Change, r.PatchSet, string(r.State))
	if err != nil {
		return fmt.Errorf("trybot: store: create run %s: %w", key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errExists
	}
	if r.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("trybot: store: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("trybot: store: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET data = ? WHERE id = ?`, string(data), r.ID); err != nil {
		return fmt.Errorf("trybot: store: create run %s: %w", key, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("trybot: store: create run %s: %w", key, err)
	}
	return nil
}

// update rewrites r.
func (s *store) update(ctx context.Context, r *client.Run) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("trybot: store: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE runs SET state = ?, data = ? WHERE id = ?`, string(r.State), string(data), r.ID); err != nil {
		return fmt.Errorf("trybot: store: update run %d: %w", r.ID, err)
	}
	return nil
}

// updateClassified rewrites r and records the classifications of the
// failed jobs of its build of builder, in one transaction.
func (s *store) updateClassified(ctx context.Context, r *client.Run, builder string, classes map[string]string) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("trybot: store: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("trybot: store: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET state = ?, data = ? WHERE id = ?`, string(r.State), string(data), r.ID); err != nil {
		return fmt.Errorf("trybot: store: update run %d: %w", r.ID, err)
	}
	for job, c := range classes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO classifications (run_id, builder, job, class) VALUES (?, ?, ?, ?)
			ON CONFLICT (run_id, builder, job) DO UPDATE SET class = excluded.class`, r.ID, builder, job, c); err != nil {
			return fmt.Errorf("trybot: store: classification of run %d %s %s: %w", r.ID, builder, job, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("trybot: store: update run %d: %w", r.ID, err)
	}
	return nil
}

// classifications returns the recorded classifications of run's build of
// builder, by job name (nil when none were recorded).
func (s *store) classifications(ctx context.Context, run int64, builder string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT job, class FROM classifications WHERE run_id = ? AND builder = ?`, run, builder)
	if err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	defer rows.Close()
	var out map[string]string
	for rows.Next() {
		var job, c string
		if err := rows.Scan(&job, &c); err != nil {
			return nil, fmt.Errorf("trybot: store: %w", err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[job] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	return out, nil
}

func scanRuns(rows *sql.Rows) ([]client.Run, error) {
	defer rows.Close()
	var out []client.Run
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("trybot: store: %w", err)
		}
		var r client.Run
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return nil, fmt.Errorf("trybot: store: bad run record: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	return out, nil
}

// get returns run id, or an error wrapping client.ErrNotFound.
func (s *store) get(ctx context.Context, id int64) (*client.Run, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM runs WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	runs, err := scanRuns(rows)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("trybot: run %d: %w", id, client.ErrNotFound)
	}
	return &runs[0], nil
}

// unfinished returns the runs that are running or reporting.
func (s *store) unfinished(ctx context.Context) ([]client.Run, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM runs WHERE state IN (?, ?) ORDER BY id`, string(client.StateRunning), string(client.StateReporting))
	if err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	return scanRuns(rows)
}

// list answers the API's queries.
func (s *store) list(ctx context.Context, o client.ListOptions) ([]client.Run, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if o.Review != "" {
		add("review = ?", o.Review)
	}
	if o.Repo != "" {
		add("repo = ?", o.Repo)
	}
	if o.Change != 0 {
		add("change = ?", o.Change)
	}
	if o.PatchSet != 0 {
		add("patch_set = ?", o.PatchSet)
	}
	if o.State != "" {
		add("state = ?", string(o.State))
	}
	if o.Before != 0 {
		add("id < ?", o.Before)
	}
	limit := o.Limit
	if limit <= 0 {
		limit = 50
	}
	q := `SELECT data FROM runs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	return scanRuns(rows)
}

// posted returns whether what was recorded as posted for run, and its ext.
func (s *store) posted(ctx context.Context, run int64, what string) (bool, string, error) {
	var ext string
	err := s.db.QueryRowContext(ctx, `SELECT ext FROM posts WHERE run_id = ? AND what = ?`, run, what).Scan(&ext)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("trybot: store: %w", err)
	}
	return true, ext, nil
}

// recordPost records that what was posted for run.
func (s *store) recordPost(ctx context.Context, run int64, what, ext string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO posts (run_id, what, ext) VALUES (?, ?, ?) ON CONFLICT (run_id, what) DO UPDATE SET ext = excluded.ext`, run, what, ext)
	if err != nil {
		return fmt.Errorf("trybot: store: record post %s of run %d: %w", what, run, err)
	}
	return nil
}

// marked reports whether key was marked.
func (s *store) marked(ctx context.Context, key string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM marks WHERE key = ?`, key).Scan(&n); err != nil {
		return false, fmt.Errorf("trybot: store: %w", err)
	}
	return n > 0, nil
}

// mark records key.
func (s *store) mark(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO marks (key) VALUES (?) ON CONFLICT DO NOTHING`, key); err != nil {
		return fmt.Errorf("trybot: store: mark %s: %w", key, err)
	}
	return nil
}

// extNoAccess is the ext of a post recorded because the review server's
// credentials had no access to the repository (see noAccessError): done
// for now, but to post again when access comes back.
const extNoAccess = "noaccess"

// postRef names one recorded post.
type postRef struct {
	run  int64
	what string
}

// noAccessPosts returns the posts of repo's runs recorded as extNoAccess,
// oldest run first.
func (s *store) noAccessPosts(ctx context.Context, repo string) ([]postRef, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.run_id, p.what FROM posts p JOIN runs r ON r.id = p.run_id
		WHERE p.ext = ? AND r.repo = ? ORDER BY p.run_id`, extNoAccess, repo)
	if err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	defer rows.Close()
	var out []postRef
	for rows.Next() {
		var p postRef
		if err := rows.Scan(&p.run, &p.what); err != nil {
			return nil, fmt.Errorf("trybot: store: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trybot: store: %w", err)
	}
	return out, nil
}

// forgetNoAccess removes the record of a post recorded as extNoAccess,
// so that it is posted again; it reports whether there was one.
func (s *store) forgetNoAccess(ctx context.Context, p postRef) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM posts WHERE run_id = ? AND what = ? AND ext = ?`, p.run, p.what, extNoAccess)
	if err != nil {
		return false, fmt.Errorf("trybot: store: forget post %s of run %d: %w", p.what, p.run, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
