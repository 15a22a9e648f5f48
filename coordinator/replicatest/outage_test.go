package replicatest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// healthy reports whether coordinator p's /healthz answers 200.
func healthy(p *Proc) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(p.URL + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// awaitHealth waits until every coordinator's /healthz says want.
func awaitHealth(t *testing.T, c *Cluster, want bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, p := range c.Coordinators() {
		for healthy(p) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /healthz healthy = %v after %v, want %v", p.Name, !want, timeout, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// jobsDone counts the succeeded jobs in the database.
func jobsDone(t *testing.T, dsn string) int {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE state='succeeded'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// submitter submits small builds to both replicas, one every 50ms, until
// stopped: each submit either is acknowledged (its build must complete)
// or fails with a retryable error, promptly.
type submitter struct {
	s    *setup
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	acked   []int64
	refused int
	errs    []error
}

const submitterJobs = 5

func (s *setup) startSubmitter(t *testing.T) *submitter {
	sub := &submitter{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sub.done)
		for n := 0; ; n++ {
			select {
			case <-sub.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			start := time.Now()
			resp, err := s.c.Client(n%2).Submit(ctx, api.SubmitRequest{Graph: graphOf(fmt.Sprintf("s%d", n), submitterJobs)})
			took := time.Since(start)
			cancel()
			sub.mu.Lock()
			switch {
			case err == nil:
				sub.acked = append(sub.acked, resp.BuildID)
			case !errors.Is(err, api.ErrUnavailable):
				sub.errs = append(sub.errs, fmt.Errorf("submit %d: not a retryable error: %w", n, err))
			case took > 5*time.Second:
				sub.errs = append(sub.errs, fmt.Errorf("submit %d: refused after %v", n, took))
			default:
				sub.refused++
			}
			sub.mu.Unlock()
		}
	}()
	return sub
}

// finish stops the submitter and returns the builds it got acknowledged.
func (sub *submitter) finish(t *testing.T) []int64 {
	t.Helper()
	close(sub.stop)
	<-sub.done
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, err := range sub.errs {
		t.Error(err)
	}
	t.Logf("submits meanwhile: %d acknowledged, %d refused as unavailable", len(sub.acked), sub.refused)
	return sub.acked
}

// checkSettled reads the database: no build of ids still runs or is
// held, and no attempt is left running.
func (s *setup) checkSettled(t *testing.T, ids []int64) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var running, attempts int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM builds WHERE id = ANY($1) AND state <> 'succeeded'`, ids).Scan(&running); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM attempts WHERE build_id = ANY($1) AND state = 'running'`, ids).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if running != 0 || attempts != 0 {
		t.Errorf("after the run: %d builds not succeeded, %d attempts still running", running, attempts)
	}
	rows, err := conn.Query(ctx, `SELECT state, error, count(*) FROM attempts WHERE build_id = ANY($1) AND state IN ('lost', 'abandoned') GROUP BY state, error`, ids)
	if err != nil {
		t.Fatal(err)
	}
	var st, why string
	var n int
	pgx.ForEachRow(rows, []any{&st, &why, &n}, func() error {
		t.Logf("%d attempts %s: %s", n, st, why)
		return nil
	})
}

// TestDatabaseOutage runs two replicas and three workers through the
// ways PostgreSQL goes away in operation, with a few hundred jobs in
// flight and clients submitting all along: every session of the
// coordinators killed (pg_terminate_backend, as an operator or a
// connection-killing proxy does; the LISTEN connections included), and
// the server stopped and started again, for less than the lease TTL (a
// restart) and for more (a failover). Every acknowledged build completes
// with each job exactly once, submits while the database is down are
// refused as retryable (503) and promptly, /healthz says unhealthy while
// it is down and healthy after, clients following event streams see each
// build's end, and nothing is left running or unheld.
func TestDatabaseOutage(t *testing.T) {
	testenv.Short(t)
	srv := pgtest.StartOwn(t)
	const leaseTTL = 3 * time.Second // Options' default
	tests := []struct {
		name string
		mode pgtest.ShutdownMode
		down time.Duration // 0: terminate the sessions instead
	}{
		{name: "terminate backends"},
		// Leases are renewed every TTL/3: down for TTL/3, none expires.
		{name: "restart shorter than lease TTL", mode: pgtest.Fast, down: leaseTTL / 3},
		{name: "crash longer than lease TTL", mode: pgtest.Immediate, down: 2 * leaseTTL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dsn := srv.NewDatabase(t)
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			db := strings.TrimPrefix(u.Path, "/")
			s := startOn(t, dsn)
			var ids []int64
			for b := range 10 {
				resp, err := s.c.Client(b%2).Submit(t.Context(), api.SubmitRequest{Graph: sleepers(fmt.Sprintf("b%d", b), 30)})
				if err != nil {
					t.Fatalf("submit build %d: %v", b, err)
				}
				ids = append(ids, resp.BuildID)
			}
			// Follow two builds from the replica each was not submitted to.
			var wg sync.WaitGroup
			for i, via := range []int{1, 0} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
					defer cancel()
					var finished int
					b, err := s.c.Client(via).Wait(ctx, ids[i], func(ev api.Event) {
						if ev.Type == api.EventBuildFinished {
							finished++
						}
					})
					if err != nil || b.State != api.BuildSucceeded || finished < 1 {
						t.Errorf("events of build %d via replica %d: %v, finished %d, %+v", ids[i], via, err, finished, b)
					}
				}()
			}
			deadline := time.Now().Add(time.Minute)
			for jobsDone(t, dsn) < 60 {
				if time.Now().After(deadline) {
					t.Fatal("jobs did not progress")
				}
				time.Sleep(20 * time.Millisecond)
			}
			sub := s.startSubmitter(t)
			time.Sleep(300 * time.Millisecond)
			if tc.down == 0 {
				n, err := srv.TerminateBackends(t.Context(), db)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("terminated %d sessions", n)
			} else {
				if err := srv.Stop(tc.mode); err != nil {
					t.Fatal(err)
				}
				t.Log("database stopped")
				start := time.Now()
				awaitHealth(t, s.c, false, tc.down)
				time.Sleep(tc.down - time.Since(start))
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				t.Logf("database started again after %v", time.Since(start).Round(time.Millisecond))
			}
			awaitHealth(t, s.c, true, 30*time.Second)
			time.Sleep(500 * time.Millisecond)
			acked := sub.finish(t)
			all := append(append([]int64(nil), ids...), acked...)
			s.waitAll(t, 0, all, 2*time.Minute)
			wg.Wait()
			s.checkExactlyOnce(t, all, len(ids)*30+len(acked)*submitterJobs)
			s.checkSettled(t, all)
		})
	}
}

// sleepers is graphOf with jobs that take a little while, so that many
// are running when the database goes away.
func sleepers(prefix string, n int) graph.Graph {
	g := graphOf(prefix, n)
	for _, j := range g.Jobs {
		j.Commands[0].Argv = []string{"sh", "-c", "sleep 0.05", j.Name}
	}
	return g
}
