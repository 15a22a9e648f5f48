package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/statetest"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, filepath.Join(t.TempDir(), "state.db"))
	})
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	bid, err := s.CreateBuild(context.Background(), &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if _, err := s.Build(context.Background(), bid); err != nil {
		t.Errorf("build lost on reopen: %v", err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, path).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE schema_version SET version = ?`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), Options{Path: path})
	if !errors.Is(err, state.ErrSchemaTooNew) {
		t.Errorf("Open of a newer schema = %v, want ErrSchemaTooNew", err)
	}
}

func TestBadOptions(t *testing.T) {
	for name, o := range map[string]Options{"no path": {}, "bad sync": {Path: "x", Synchronous: "OFF"}} {
		if _, err := Open(context.Background(), o); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// TestReleasedSchemasLoad opens a database written by each released schema
// version (testdata/vN.sql, a dump) and reads it with this code.
func TestReleasedSchemasLoad(t *testing.T) {
	for v := 1; v <= SchemaVersion; v++ {
		dump, err := os.ReadFile(filepath.Join("testdata", "v"+string(rune('0'+v))+".sql"))
		if err != nil {
			t.Fatalf("schema v%d has no sample in testdata: %v", v, err)
		}
		path := filepath.Join(t.TempDir(), "old.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(dump)); err != nil {
			t.Fatalf("load v%d sample: %v", v, err)
		}
		db.Close()
		s := open(t, path)
		b, err := s.Build(context.Background(), 1)
		if err != nil || b.State != api.BuildSucceeded {
			t.Errorf("v%d: build 1 = %+v, %v", v, b, err)
		}
		jobs, err := s.Jobs(context.Background(), 1)
		if err != nil || len(jobs) != 1 || jobs[0].Name != "hello" {
			t.Errorf("v%d: jobs = %+v, %v", v, jobs, err)
		}
		res, err := s.Results(context.Background(), []string{jobs[0].JobID})
		if err != nil || len(res) != 1 {
			t.Errorf("v%d: results = %v, %v", v, res, err)
		}
		s.Close()
	}
}
