package replicatest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// buildTryd returns the tryd binary the replicas run.
func buildTryd(t *testing.T) string { return testenv.TrydBinary(t) }

// graphOf returns a graph of n trivial independent jobs, distinct from
// every other build's.
func graphOf(prefix string, n int) graph.Graph {
	var g graph.Graph
	for i := range n {
		name := prefix + "-" + strconv.Itoa(i)
		g.Jobs = append(g.Jobs, &graph.Job{Name: name, SourceMode: graph.SourceNone, Cacheable: true,
			Commands: []graph.Command{{Argv: []string{"true", name}}}})
	}
	return g
}

type setup struct {
	c   *Cluster
	dsn string
}

func start(t *testing.T) *setup {
	t.Helper()
	testenv.Short(t)
	return startOn(t, pgtest.Start(t).NewDatabase(t))
}

// startOn starts two replicas on database dsn and three workers.
func startOn(t *testing.T, dsn string) *setup {
	t.Helper()
	s := replicasOn(t, dsn)
	// Three workers: two prefer replica 0, one replica 1.
	for i, prefer := range []int{0, 1, 0} {
		if _, err := s.c.StartWorker(WorkerNames[i], prefer, 2); err != nil {
			t.Fatal(err)
		}
	}
	waitWorkers(t, s.c, 3)
	return s
}

// replicasOn starts two replicas on database dsn, without workers,
// stopped when t ends (their logs on standard error with -v).
func replicasOn(t *testing.T, dsn string) *setup {
	t.Helper()
	opts := Options{Tryd: buildTryd(t), Dir: t.TempDir(), DSN: dsn, Replicas: 2}
	if testing.Verbose() {
		opts.Log = os.Stderr
	}
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &setup{c: c, dsn: dsn}
}

// waitWorkers waits until n workers are connected over all replicas.
func waitWorkers(t *testing.T, c *Cluster, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		total := 0
		for i := range c.opts.Replicas {
			ws, err := c.Client(i).Workers(t.Context())
			if err != nil {
				continue
			}
			for _, w := range ws {
				if w.Connected {
					total++
				}
			}
		}
		if total >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d workers did not connect within 60s", n)
}

// submit sends builds alternately to the replicas; jobs in all.
func (s *setup) submit(t *testing.T, builds, perBuild int) []int64 {
	t.Helper()
	var ids []int64
	for b := range builds {
		g := graphOf(fmt.Sprintf("b%d", b), perBuild)
		resp, err := s.c.Client(b%2).Submit(t.Context(), api.SubmitRequest{Graph: g})
		if err != nil {
			t.Fatalf("submit build %d: %v", b, err)
		}
		ids = append(ids, resp.BuildID)
	}
	return ids
}

// waitAll polls the builds' status through the given replica until every
// one finished.
func (s *setup) waitAll(t *testing.T, via int, ids []int64, timeout time.Duration) {
	t.Helper()
	cl := s.c.Client(via)
	deadline := time.Now().Add(timeout)
	pending := append([]int64(nil), ids...)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d builds unfinished after %v (first %d)", len(pending), timeout, pending[0])
		}
		b, err := cl.Build(t.Context(), pending[0])
		if err == nil && b.State.Finished() {
			if b.State != api.BuildSucceeded {
				t.Errorf("build %d %s: %s %v", b.ID, b.State, b.Error, b.Counts)
			}
			pending = pending[1:]
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce reads the shared database: every job of the builds
// succeeded, and no job has more than one succeeded attempt.
//
// A replica answers a build's status from memory, before the commit
// that stores its end: waitAll may see the last builds finished while
// the records of their last jobs are still on their way to the
// database (once, 1,996 of 2,000 job rows succeeded). A build's end is
// committed with or after its jobs' records, so the check first waits
// (bounded) for the database to say every build finished.
func (s *setup) checkExactlyOnce(t *testing.T, ids []int64, wantJobs int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	start, late := time.Now(), 0
	for deadline := start.Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var running int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM builds WHERE id = ANY($1) AND state = 'running'`, ids).Scan(&running); err != nil {
			t.Fatal(err)
		}
		late = max(late, running)
		if running == 0 {
			if late > 0 {
				t.Logf("%d builds were still running in the database when their status said finished; stored %v later", late, time.Since(start).Round(time.Millisecond))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d builds still running in the database 30s after their status said finished", running)
			break
		}
	}
	var jobs, ok int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state='succeeded') FROM jobs WHERE build_id = ANY($1)`, ids).Scan(&jobs, &ok); err != nil {
		t.Fatal(err)
	}
	if jobs != wantJobs || ok != wantJobs {
		t.Errorf("%d jobs, %d succeeded; want %d", jobs, ok, wantJobs)
		rows, err := conn.Query(ctx, `SELECT build_id, name, state, error FROM jobs WHERE build_id = ANY($1) AND state <> 'succeeded' ORDER BY build_id, name LIMIT 20`, ids)
		if err != nil {
			t.Fatal(err)
		}
		var build int64
		var name, st, why string
		pgx.ForEachRow(rows, []any{&build, &name, &st, &why}, func() error {
			t.Logf("build %d job %s: %s %q", build, name, st, why)
			return nil
		})
	}
	var dup int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT build_id, job_id FROM attempts WHERE state='succeeded' AND build_id = ANY($1)
		GROUP BY build_id, job_id HAVING count(*) > 1) d`, ids).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Errorf("%d jobs completed more than once", dup)
	}
	var withSuccess int
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT (build_id, job_id)) FROM attempts WHERE state='succeeded' AND build_id = ANY($1)`, ids).Scan(&withSuccess); err != nil {
		t.Fatal(err)
	}
	if withSuccess != wantJobs {
		t.Errorf("%d jobs have a succeeded attempt, want %d", withSuccess, wantJobs)
	}
	var attempts, lost int
	conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state='lost') FROM attempts WHERE build_id = ANY($1)`, ids).Scan(&attempts, &lost)
	t.Logf("%d jobs, %d attempts (%d lost)", jobs, attempts, lost)
}

// owners returns how many of the builds each replica ended up holding.
func (s *setup) owners(t *testing.T, ids []int64) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT owner_url, count(*) FROM builds WHERE id = ANY($1) GROUP BY owner_url`, ids)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var u string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&u, &n}, func() error { out[u] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTwoReplicas: two coordinator processes on one PostgreSQL, three
// workers, 2,000 jobs in 40 builds submitted to both: each job completes
// exactly once, both replicas run builds, and a build's event stream
// works from the replica that does not hold it.
func TestTwoReplicas(t *testing.T) {
	s := start(t)
	ids := s.submit(t, 40, 50)

	// Follow build 1 (submitted to replica 1) and build 0 (replica 0)
	// from the other replica.
	var wg sync.WaitGroup
	for i, via := range []int{1, 0} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var finished, jobs int
			b, err := s.c.Client(via).Wait(ctx, ids[i], func(ev api.Event) {
				switch ev.Type {
				case api.EventJobFinished:
					jobs++
				case api.EventBuildFinished:
					finished++
				}
			})
			if err != nil || b.State != api.BuildSucceeded || finished != 1 {
				t.Errorf("events of build %d via replica %d: %v, finished %d, %+v", ids[i], via, err, finished, b)
			}
		}()
	}
	s.waitAll(t, 0, ids, 3*time.Minute)
	wg.Wait()
	s.checkExactlyOnce(t, ids, 2000)
	owners := s.owners(t, ids)
	t.Logf("builds per replica: %v", owners)
	if len(owners) < 2 {
		t.Errorf("one replica ran every build: %v", owners)
	}
}

// TestKillReplica kills -9 one of two replicas mid-run: the other
// resumes its builds after the lease expires, the killed one's workers
// reconnect to it, and every job still completes exactly once.
func TestKillReplica(t *testing.T) {
	s := start(t)
	ids := s.submit(t, 40, 50)
	// Wait until a good part of the work is done, then kill replica 0.
	cl := s.c.Client(1)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		bs, err := cl.Builds(t.Context(), api.ListOptions{State: api.BuildSucceeded, Limit: 100})
		if err == nil && len(bs) >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("builds did not progress: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.c.Kill(0)
	t.Log("killed replica 0")
	s.waitAll(t, 1, ids, 4*time.Minute)
	s.checkExactlyOnce(t, ids, 2000)
	owners := s.owners(t, ids)
	t.Logf("builds per replica at the end: %v", owners)
	if n := owners[s.c.Coordinator(1).URL]; n != len(ids) && owners[s.c.Coordinator(0).URL]+n != len(ids) {
		t.Errorf("owners = %v", owners)
	}
}
