package trybot

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/trybot/client"
)

// TestStoreV1Loads opens a database written by schema version 1.
func TestStoreV1Loads(t *testing.T) {
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("testdata", "v1.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "trybot.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx := context.Background()
	s, err := openStore(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.get(ctx, 1)
	if err != nil || r.State != client.StateSucceeded || r.Builds[0].BuildID != 7 || r.PatchSet != 1 {
		t.Errorf("run 1 = %+v, %v", r, err)
	}
	un, err := s.unfinished(ctx)
	if err != nil || len(un) != 1 || un[0].ID != 2 || un[0].Builds[1].State != client.BuildPending || un[0].Unknown[0] != "nosuch" {
		t.Errorf("unfinished = %+v, %v", un, err)
	}
	if ok, _, err := s.posted(ctx, 2, "begin"); !ok || err != nil {
		t.Errorf("posted(2, begin) = %v, %v", ok, err)
	}
	if ok, err := s.marked(ctx, "github/gh/3/comment/1018/refused"); !ok || err != nil {
		t.Errorf("marked = %v, %v", ok, err)
	}
	if ok, err := s.hasKey(ctx, "gerrit/proj/1/1/1763719200000"); !ok || err != nil {
		t.Errorf("hasKey = %v, %v", ok, err)
	}
	runs, err := s.list(ctx, client.ListOptions{Review: client.ReviewGitHub})
	if err != nil || len(runs) != 1 || runs[0].ID != 2 {
		t.Errorf("list github = %+v, %v", runs, err)
	}
	// The database was migrated to version 2: classifications are kept.
	var v int
	if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil || v != schemaVersion {
		t.Errorf("user_version %d, %v; want %d", v, err, schemaVersion)
	}
	if err := s.updateClassified(ctx, r, "check", map[string]string{"test": client.ClassFlaky}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.classifications(ctx, 1, "check"); err != nil || c["test"] != client.ClassFlaky || len(c) != 1 {
		t.Errorf("classifications = %v, %v", c, err)
	}
	if c, err := s.classifications(ctx, 1, "other"); err != nil || c != nil {
		t.Errorf("classifications of another builder = %v, %v", c, err)
	}
	// A new run gets the next ID; its key is unique.
	nr := &client.Run{Review: client.ReviewGerrit, Repo: "proj", Change: 1, PatchSet: 2, State: client.StateRunning}
	if err := s.create(ctx, "gerrit/proj/1/2/1", nr); err != nil || nr.ID != 3 {
		t.Errorf("create = %d, %v", nr.ID, err)
	}
	if err := s.create(ctx, "gerrit/proj/1/2/1", &client.Run{}); err != errExists {
		t.Errorf("second create with the same key: %v, want errExists", err)
	}
}

func TestStoreRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "trybot.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := openStore(context.Background(), dir); err == nil {
		s.Close()
		t.Fatal("opened a database of a newer schema")
	}
}
