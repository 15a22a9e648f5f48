package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	for name, o := range map[string]Options{"no path": {}, "bad sync": {Path: "x", Synchronous: "OFF"},
		"negative idle": {Path: "x", CheckpointIdle: -1}, "negative max delay": {Path: "x", CheckpointMaxDelay: -time.Second}} {
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
		if err != nil || b.State != api.BuildSucceeded || !strings.Contains(string(b.Graph), `"name":"hello"`) {
			t.Errorf("v%d: build 1 = %+v, %v", v, b, err)
		}
		jobs, err := s.Jobs(context.Background(), 1)
		if err != nil || len(jobs) != 1 || jobs[0].Name != "hello" || jobs[0].OutputDigest != strings.Repeat("d", 64) {
			t.Errorf("v%d: jobs = %+v, %v", v, jobs, err)
		}
		res, err := s.Results(context.Background(), []string{jobs[0].JobID})
		if err != nil || len(res) != 1 {
			t.Errorf("v%d: results = %v, %v", v, res, err)
		}
		s.Close()
	}
}

// TestCheckpointsWaitForQuiet: the WAL is copied into the database when
// writes pause, not while they go on (a checkpoint's fsync stalls the
// commits made meanwhile), unless they never pause for
// CheckpointMaxDelay.
func TestCheckpointsWaitForQuiet(t *testing.T) {
	tests := []struct {
		name            string
		idle, maxDelay  time.Duration
		writeFor        time.Duration
		duringWrites    bool // a checkpoint happens while writes go on
		afterWritesStop bool
	}{
		// Longer than the 1s period of checkpoints that did not wait.
		{"quiet moment", 3 * time.Second, time.Hour, 1500 * time.Millisecond, false, true},
		{"max delay under constant writes", time.Hour, 200 * time.Millisecond, 10 * time.Second, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "state.db"), CheckpointIdle: tt.idle, CheckpointMaxDelay: tt.maxDelay})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Writes every 10ms; with duringWrites, until a checkpoint.
			end := time.Now().Add(tt.writeFor)
			for time.Now().Before(end) && !(tt.duringWrites && s.checkpointed.Load() > 0) {
				if _, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := s.checkpointed.Load() > 0; got != tt.duringWrites {
				t.Fatalf("checkpointed while writing = %v, want %v", got, tt.duringWrites)
			}
			if !tt.afterWritesStop {
				return
			}
			deadline := time.Now().Add(tt.idle + 10*time.Second)
			for s.checkpointed.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no checkpoint after writes stopped")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestWALBoundedUnderConstantWrites: writes that never pause for long
// (1ms apart) overlap every checkpoint, whose copy then never covers
// the whole WAL, so SQLite never starts it over: it grew without bound
// (~13 MB/s here). The checkpoint forced by CheckpointMaxDelay holds
// writes back, so the WAL stays about that much writing long.
func TestWALBoundedUnderConstantWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, Options{Path: path, CheckpointIdle: time.Hour, CheckpointMaxDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var early int64
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if _, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: make([]byte, 2000), State: api.BuildRunning}, nil); err != nil {
			t.Fatal(err)
		}
		if early == 0 && time.Since(start) > time.Second {
			early = walSize()
		}
		time.Sleep(time.Millisecond)
	}
	// The WAL file keeps its largest size; growing on, it would be
	// about 5x by now.
	late := walSize()
	t.Logf("WAL: %d bytes after 1s of writes, %d after 5s", early, late)
	if late > 3*early {
		t.Errorf("WAL grew from %d bytes after 1s to %d after 5s of writes", early, late)
	}
}
