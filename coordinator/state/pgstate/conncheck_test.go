package pgstate

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// TestTerminatedSessionsNotUsed: after the server ends every session of
// the store's pool (pg_terminate_backend), the next statements, reads
// and writes, each on a connection idle for less than the second after
// which pgxpool pings it anyway, succeed: the pool replaced the dead
// connections before use instead of failing one statement on each.
func TestTerminatedSessionsNotUsed(t *testing.T) {
	ctx := context.Background()
	srv := sharedPG.Server(t)
	dsn := srv.NewDatabase(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const conns = 4
	s, err := Open(ctx, Options{DSN: dsn, MaxConns: conns})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, cachedJobs(3))
	if err != nil {
		t.Fatal(err)
	}
	statements := []struct {
		name string
		run  func() error
	}{
		{"read build", func() error { _, err := s.Build(ctx, bid); return err }},
		{"read jobs", func() error { _, err := s.Jobs(ctx, bid); return err }},
		{"commit", func() error {
			return s.Commit(ctx, &state.Batch{Workers: []state.Worker{{Name: "w", TokenHash: "h", Slots: 1}}})
		}},
		{"create build", func() error {
			_, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
			return err
		}},
	}
	for round := range 3 {
		// Fill the pool: every connection open and idle.
		var held []interface{ Release() }
		for range conns {
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Release()
		}
		n, err := srv.TerminateBackends(ctx, cfg.Database)
		if err != nil || n < conns {
			t.Fatalf("round %d: TerminateBackends = %d, %v; want at least %d", round, n, err, conns)
		}
		// As many at once as the pool has connections, then one by
		// one: every statement finds a live connection.
		var wg sync.WaitGroup
		for _, st := range statements {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := st.run(); err != nil {
					t.Errorf("round %d: %s after the sessions ended: %v", round, st.name, err)
				}
			}()
		}
		wg.Wait()
		for _, st := range statements {
			if err := st.run(); err != nil {
				t.Errorf("round %d: %s: %v", round, st.name, err)
			}
		}
	}
}
