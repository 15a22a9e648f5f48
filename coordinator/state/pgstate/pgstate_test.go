package pgstate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
	"github.com/tryd-ci/tryd/coordinator/state/statetest"
)

// sharedPG is the one server of the package's tests (a database each),
// stopped by TestMain.
var sharedPG pgtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := sharedPG.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the suite state/sqlite passes.
func TestConformance(t *testing.T) {
	srv := sharedPG.Server(t)
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, srv.NewDatabase(t))
	})
}

func TestReopenKeepsDataAndRefusesNewerSchema(t *testing.T) {
	srv := sharedPG.Server(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	s := open(t, dsn)
	bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dsn)
	if _, err := s.Build(ctx, bid); err != nil {
		t.Errorf("build lost on reopen: %v", err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE schema_version SET version = $1`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Options{DSN: dsn}); !errors.Is(err, state.ErrSchemaTooNew) {
		t.Errorf("Open of a newer schema = %v, want ErrSchemaTooNew", err)
	}
}

// TestConcurrentOpenMigratesOnce starts several replicas at once on an
// empty database: the advisory lock makes one migrate and the others
// find the schema current.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	srv := sharedPG.Server(t)
	dsn := srv.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), Options{DSN: dsn})
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, v int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_version`).Scan(&n, &v); err != nil || n != 1 || v != SchemaVersion {
		t.Errorf("schema_version rows = %d, version %d, %v", n, v, err)
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no dsn", Options{}},
		{"malformed dsn", Options{DSN: "postgres://u:secretpw@[::1"}},
		{"negative conns", Options{DSN: "postgres://x/y", MaxConns: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.opts)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tt.opts.DSN != "" && containsSecret(err.Error()) {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

func containsSecret(s string) bool {
	for i := 0; i+8 <= len(s); i++ {
		if s[i:i+8] == "secretpw" {
			return true
		}
	}
	return false
}

func TestLeases(t *testing.T) {
	srv := sharedPG.Server(t)
	s := open(t, srv.NewDatabase(t))
	ctx := context.Background()
	newBuild := func() int64 {
		id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	b1, b2, b3 := newBuild(), newBuild(), newBuild()
	a, b := state.Owner{ID: "a", URL: "http://a"}, state.Owner{ID: "b", URL: "http://b"}
	t0 := time.Unix(1_700_000_000, 0)
	later := t0.Add(10 * time.Second)

	if ok, err := s.HoldBuild(ctx, b1, a, t0, later); err != nil || !ok {
		t.Fatalf("a holds b1 = %v, %v", ok, err)
	}
	if ok, err := s.HoldBuild(ctx, b1, b, t0, later); err != nil || ok {
		t.Fatalf("b took a's live lease of b1: %v, %v", ok, err)
	}
	// Nor does a take it again: a build its claim loop claimed while a
	// submit of it was holding it must run once.
	if ok, err := s.HoldBuild(ctx, b1, a, t0, later); err != nil || ok {
		t.Fatalf("a took its own live lease of b1 again: %v, %v", ok, err)
	}
	got, err := s.ClaimBuilds(ctx, b, 10, t0, later)
	if err != nil || len(got) != 2 || got[0] != b2 || got[1] != b3 {
		t.Fatalf("b claims = %v, %v; want [%d %d]", got, err, b2, b3)
	}
	if l, err := s.BuildLease(ctx, b1, t0); err != nil || !l.Held || !l.Running || l.Owner != a {
		t.Errorf("lease of b1 = %+v, %v", l, err)
	}
	// a dies; b lives on and renews: after expiry, b claims b1.
	expired := later.Add(time.Second)
	if ids, err := s.RenewBuilds(ctx, "b", expired.Add(time.Minute)); err != nil || len(ids) != 2 {
		t.Fatalf("b renews = %v, %v", ids, err)
	}
	if l, _ := s.BuildLease(ctx, b1, expired); l.Held || !l.Running {
		t.Errorf("expired lease = %+v", l)
	}
	if l, _ := s.BuildLease(ctx, b1, time.Time{}); !l.Held || l.Owner != a {
		t.Errorf("lease ignoring expiry = %+v", l)
	}
	got, err = s.ClaimBuilds(ctx, b, 10, expired, expired.Add(10*time.Second))
	if err != nil || len(got) != 1 || got[0] != b1 {
		t.Fatalf("b claims after expiry = %v, %v", got, err)
	}
	if ids, err := s.RenewBuilds(ctx, "a", expired.Add(time.Minute)); err != nil || len(ids) != 0 {
		t.Errorf("a renews lost leases: %v, %v", ids, err)
	}
	if ids, err := s.RenewBuilds(ctx, "b", expired.Add(time.Minute)); err != nil || len(ids) != 3 {
		t.Errorf("b renews = %v, %v", ids, err)
	}
	// A finished build is never claimed or renewed.
	if err := s.Commit(ctx, &state.Batch{Builds: []state.BuildUpdate{{ID: b2, State: api.BuildSucceeded, Finished: t0}}}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.RenewBuilds(ctx, "b", expired.Add(time.Minute)); len(ids) != 2 {
		t.Errorf("renew after finish = %v", ids)
	}
	nudges := s.ClaimNudges(t.Context())
	time.Sleep(200 * time.Millisecond) // let LISTEN start
	if err := s.ReleaseBuilds(ctx, "b", []int64{b3}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-nudges:
	case <-time.After(10 * time.Second):
		t.Error("no nudge after release")
	}
	if got, _ := s.ClaimBuilds(ctx, a, 10, t0, later); len(got) != 1 || got[0] != b3 {
		t.Errorf("a claims released = %v", got)
	}
	if l, _ := s.BuildLease(ctx, b2, t0); l.Held || l.Running {
		t.Errorf("lease of finished build = %+v", l)
	}
	if _, err := s.BuildLease(ctx, 9999, t0); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("owner of missing build = %v", err)
	}
}

// TestClaimsPreferOwnOffers: a replica claims the builds it offered
// before older ones other replicas offered, unless those were created
// state.OwnFirst or longer ago; the offer nudges every replica.
func TestClaimsPreferOwnOffers(t *testing.T) {
	s := open(t, sharedPG.Server(t).NewSchema(t))
	ctx := context.Background()
	t0 := time.Unix(1_700_000_000, 0)
	nudges := s.ClaimNudges(t.Context())
	time.Sleep(200 * time.Millisecond) // let LISTEN start
	offer := func(created time.Time, by string) int64 {
		t.Helper()
		id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning, Created: created}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.OfferBuild(ctx, id, by); err != nil {
			t.Fatal(err)
		}
		return id
	}
	fromB := offer(t0, "b")
	select {
	case <-nudges:
	case <-time.After(10 * time.Second):
		t.Error("no nudge after an offer")
	}
	fromA1 := offer(t0.Add(time.Second), "a")
	fromA2 := offer(t0.Add(2*time.Second), "a")
	a := state.Owner{ID: "a", URL: "http://a"}
	tests := []struct {
		name string
		now  time.Time
		want int64
	}{
		{"own offer before an older other's", t0.Add(3 * time.Second), fromA1},
		{"other's offer past OwnFirst before a newer own", t0.Add(state.OwnFirst), fromB},
		{"own offer last", t0.Add(state.OwnFirst), fromA2},
	}
	for _, tt := range tests {
		got, err := s.ClaimBuilds(ctx, a, 1, tt.now, tt.now.Add(time.Minute))
		if err != nil || len(got) != 1 || got[0] != tt.want {
			t.Errorf("%s: a claims %v, %v; want [%d]", tt.name, got, err, tt.want)
		}
	}
}

// TestCommitIsAtomic: the statements of a batch run in one (implicit)
// transaction, so a failing one undoes those before it; duplicate
// records in a batch are allowed, the last one wins.
func TestCommitIsAtomic(t *testing.T) {
	s := open(t, sharedPG.Server(t).NewSchema(t))
	ctx := context.Background()
	bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning},
		[]state.Job{{JobID: "j1", Name: "one", State: api.JobQueued}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0).UTC()
	bad := &state.Batch{
		Builds: []state.BuildUpdate{{ID: bid, State: api.BuildSucceeded, Finished: t0}},
		Jobs: []state.Job{
			{BuildID: bid, JobID: "j1", Name: "one", State: api.JobSucceeded},
			{BuildID: bid + 1000, JobID: "j2", Name: "orphan", State: api.JobQueued}, // no such build
		},
		Attempts: []state.Attempt{{ID: "a1", BuildID: bid, JobID: "j1", Worker: "w", State: api.AttemptSucceeded, Started: t0}},
	}
	if err := s.Commit(ctx, bad); err == nil {
		t.Fatal("commit of a job of a missing build succeeded")
	}
	b, err := s.Build(ctx, bid)
	if err != nil || b.State != api.BuildRunning {
		t.Errorf("build after a failed commit = %+v, %v; want still running", b, err)
	}
	if jobs, _ := s.Jobs(ctx, bid); len(jobs) != 1 || jobs[0].State != api.JobQueued {
		t.Errorf("jobs after a failed commit = %+v", jobs)
	}
	if atts, _ := s.Attempts(ctx, bid); len(atts) != 0 {
		t.Errorf("attempts after a failed commit = %+v", atts)
	}

	fin := t0.Add(time.Second)
	good := &state.Batch{
		Jobs: []state.Job{
			{BuildID: bid, JobID: "j1", Name: "one", State: api.JobRunning},
			{BuildID: bid, JobID: "j1", Name: "one", State: api.JobSucceeded},
		},
		Attempts: []state.Attempt{
			{ID: "a1", BuildID: bid, JobID: "j1", Worker: "w", State: api.AttemptRunning, Started: t0},
			{ID: "a1", BuildID: bid, JobID: "j1", Worker: "w", State: api.AttemptSucceeded, Started: t0, Finished: &fin},
		},
		Results: []state.Result{{JobID: "j1", OutputDigest: "old"}, {JobID: "j1", OutputDigest: "new"}},
	}
	if err := s.Commit(ctx, good); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.Jobs(ctx, bid); len(jobs) != 1 || jobs[0].State != api.JobSucceeded {
		t.Errorf("jobs = %+v, want j1 succeeded", jobs)
	}
	if atts, _ := s.Attempts(ctx, bid); len(atts) != 1 || atts[0].State != api.AttemptSucceeded || atts[0].Finished == nil {
		t.Errorf("attempts = %+v, want a1 succeeded", atts)
	}
	if rs, _ := s.Results(ctx, []string{"j1"}); rs["j1"].OutputDigest != "new" {
		t.Errorf("result = %+v, want the last one", rs["j1"])
	}
}

// TestHeldNotices: every build a replica takes, by HoldBuild or
// ClaimBuilds, is announced to the listeners of HeldNotices.
func TestHeldNotices(t *testing.T) {
	s := open(t, sharedPG.Server(t).NewDatabase(t))
	ctx := context.Background()
	var ids []int64
	for range 3 {
		id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	notices := s.HeldNotices(t.Context())
	// LISTEN has started once a notice sent after it arrives: send
	// one with a sentinel ID until it does.
	const ready = 1 << 40
	for waiting := true; waiting; {
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, heldChannel, fmt.Sprint(ready)); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-notices:
			waiting = id != ready
		case <-time.After(100 * time.Millisecond):
		}
	}
	a := state.Owner{ID: "a", URL: "http://a"}
	now := time.Now()
	if ok, err := s.HoldBuild(ctx, ids[0], a, now, now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("hold = %v, %v", ok, err)
	}
	// A hold that fails (b cannot take a's live lease) announces nothing.
	if ok, err := s.HoldBuild(ctx, ids[0], state.Owner{ID: "b"}, now, now.Add(time.Minute)); err != nil || ok {
		t.Fatalf("b holds a's build = %v, %v", ok, err)
	}
	if got, err := s.ClaimBuilds(ctx, a, 10, now, now.Add(time.Minute)); err != nil || len(got) != 2 {
		t.Fatalf("claim = %v, %v", got, err)
	}
	var got []int64
	for len(got) < 3 {
		select {
		case id := <-notices:
			if id != ready {
				got = append(got, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("notices = %v, want %v", got, ids)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("notices = %v, want %v", got, ids)
	}
	for {
		select {
		case id := <-notices:
			if id != ready {
				t.Errorf("extra notice %d", id)
			}
			continue
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
}

// TestConcurrentClaims: replicas racing for the same builds never take
// one build twice.
func TestConcurrentClaims(t *testing.T) {
	srv := sharedPG.Server(t)
	s := open(t, srv.NewDatabase(t))
	ctx := context.Background()
	const n = 200
	for range n {
		if _, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := state.Owner{ID: string(rune('a' + r))}
			for {
				ids, err := s.ClaimBuilds(ctx, o, 7, now, now.Add(time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				if len(ids) == 0 {
					return
				}
				mu.Lock()
				for _, id := range ids {
					if prev, ok := seen[id]; ok {
						t.Errorf("build %d claimed by %s and %s", id, prev, o.ID)
					}
					seen[id] = o.ID
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d builds claimed, want %d", len(seen), n)
	}
}

// TestReleasedSchemasLoad loads a database written by each released
// schema version (testdata/vN.sql) and reads it with this code.
func TestReleasedSchemasLoad(t *testing.T) {
	srv := sharedPG.Server(t)
	ctx := context.Background()
	for v := 1; v <= SchemaVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			dump, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("v%d.sql", v)))
			if err != nil {
				t.Fatalf("schema v%d has no sample in testdata: %v", v, err)
			}
			dsn := srv.NewDatabase(t)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(ctx, string(dump))
			conn.Close(ctx)
			if err != nil {
				t.Fatalf("load v%d sample: %v", v, err)
			}
			s := open(t, dsn)
			b, err := s.Build(ctx, 1)
			if err != nil || b.State != api.BuildSucceeded || b.Labels["repo"] != "x" || !strings.Contains(string(b.Graph), `"name":"hello"`) {
				t.Errorf("build 1 = %+v, %v", b, err)
			}
			jobs, err := s.Jobs(ctx, 1)
			if err != nil || len(jobs) != 1 || jobs[0].Name != "hello" {
				t.Fatalf("jobs = %+v, %v", jobs, err)
			}
			res, err := s.Results(ctx, []string{jobs[0].JobID})
			if err != nil || len(res) != 1 {
				t.Errorf("results = %v, %v", res, err)
			}
			atts, err := s.Attempts(ctx, 1)
			if err != nil || len(atts) != 1 || atts[0].LogBytes != 3 {
				t.Errorf("attempts = %+v, %v", atts, err)
			}
			// New builds continue the sequence.
			id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
			if err != nil || id != 2 {
				t.Errorf("next build = %d, %v", id, err)
			}
		})
	}
}

// BenchmarkCommitJobs commits what the coordinator commits for each job
// of a busy cluster, in batches of two jobs as a replica's group commit
// does: the jobs start (job rows and new attempts), then finish (job
// rows, attempts and results). One op is one job. cpu-us/op is this
// process's CPU time per job (the store's and the benchmark's own),
// server-cpu-us/op the server's (its connection's process).
func BenchmarkCommitJobs(b *testing.B) { benchCommitJobs(b, "") }

// benchCommitJobs runs BenchmarkCommitJobs, with commits fenced by
// owner's leases (CommitHeld) unless owner is empty.
func benchCommitJobs(b *testing.B, owner string) {
	ctx := context.Background()
	s, err := Open(ctx, Options{DSN: sharedPG.Server(b).NewSchema(b), MaxConns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	write := s.Commit
	if owner != "" {
		write = func(ctx context.Context, batch *state.Batch) error {
			_, err := s.CommitHeld(ctx, owner, batch)
			return err
		}
	}
	const perBuild, perBatch = 50, 2
	t0 := time.Unix(1_700_000_000, 0).UTC()
	var bid int64
	var jobs []state.Job
	b.ResetTimer()
	stop := reportCPU(b, s)
	for i := 0; i < b.N; i += perBatch {
		if i%perBuild == 0 {
			jobs = jobs[:0]
			for k := range perBuild {
				jobs = append(jobs, state.Job{JobID: fmt.Sprintf("%064d", i+k), Name: fmt.Sprint("job", k), Seq: k, State: api.JobQueued})
			}
			if bid, err = s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, jobs); err != nil {
				b.Fatal(err)
			}
			if owner != "" {
				if ok, err := s.HoldBuild(ctx, bid, state.Owner{ID: owner, URL: "http://" + owner}, t0, t0.Add(time.Hour)); !ok || err != nil {
					b.Fatalf("HoldBuild = %v, %v", ok, err)
				}
			}
		}
		var start, end state.Batch
		fin := t0.Add(time.Second)
		zero := 0
		for k := i % perBuild; k < i%perBuild+perBatch; k++ {
			j := jobs[k]
			j.BuildID, j.State, j.Worker, j.Started = bid, api.JobRunning, "w1", t0
			a := state.Attempt{ID: fmt.Sprintf("%d-%d", bid, k), BuildID: bid, JobID: j.JobID, Worker: "w1", State: api.AttemptRunning, Started: t0}
			start.Jobs, start.Attempts = append(start.Jobs, j), append(start.Attempts, a)
			j.State, j.OutputDigest, j.ExitCode, j.Finished = api.JobSucceeded, "d", &zero, fin
			a.State, a.OutputDigest, a.ExitCode, a.Finished = api.AttemptSucceeded, "d", &zero, &fin
			end.Jobs, end.Attempts = append(end.Jobs, j), append(end.Attempts, a)
			end.Results = append(end.Results, state.Result{JobID: j.JobID, OutputDigest: "d", AttemptID: a.ID, BuildID: bid, Finished: fin})
		}
		if err := write(ctx, &start); err != nil {
			b.Fatal(err)
		}
		if err := write(ctx, &end); err != nil {
			b.Fatal(err)
		}
	}
	stop()
}

// TestClaimBuildsFresh: a claim tells a build fresh only when no
// replica took its lease before: not after a hold (at submit) or a
// claim, whether the lease was released or expired, and not when its
// own holder takes it again after expiry.
func TestClaimBuildsFresh(t *testing.T) {
	s := open(t, sharedPG.Server(t).NewSchema(t))
	ctx := context.Background()
	a, b := state.Owner{ID: "a", URL: "http://a"}, state.Owner{ID: "b", URL: "http://b"}
	t0 := time.Unix(1_700_000_000, 0)
	newBuild := func() int64 {
		id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	claim := func(o state.Owner, now time.Time) (int64, bool) {
		t.Helper()
		ids, fresh, err := s.ClaimBuildsFresh(ctx, o, 1, now, now.Add(10*time.Second))
		if err != nil || len(ids) != 1 || len(fresh) != 1 {
			t.Fatalf("claim = %v %v, %v; want one build", ids, fresh, err)
		}
		return ids[0], fresh[0]
	}
	tests := []struct {
		name string
		// before takes and gives up the build's lease (or not) and
		// returns when it may be claimed.
		before  func(id int64) time.Time
		claimer state.Owner
		fresh   bool
	}{
		{"never held", func(int64) time.Time { return t0 }, a, true},
		{"claimed and released", func(id int64) time.Time {
			if got, _ := claim(b, t0); got != id {
				t.Fatalf("claimed %d, want %d", got, id)
			}
			if err := s.ReleaseBuilds(ctx, "b", []int64{id}); err != nil {
				t.Fatal(err)
			}
			return t0
		}, a, false},
		{"held at submit, expired", func(id int64) time.Time {
			if ok, err := s.HoldBuild(ctx, id, b, t0, t0.Add(time.Second)); err != nil || !ok {
				t.Fatalf("hold = %v, %v", ok, err)
			}
			return t0.Add(time.Minute)
		}, a, false},
		{"own lease expired", func(id int64) time.Time {
			claim(a, t0)
			return t0.Add(time.Minute)
		}, a, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newBuild()
			now := tt.before(id)
			got, fresh := claim(tt.claimer, now)
			if got != id || fresh != tt.fresh {
				t.Errorf("claim = build %d fresh %v; want build %d fresh %v", got, fresh, id, tt.fresh)
			}
			// Whatever it was, it is held now: a second claim after
			// expiry is never fresh.
			if _, fresh := claim(b, now.Add(time.Hour)); fresh {
				t.Error("claim after the lease expired is fresh")
			}
			if err := s.Commit(ctx, &state.Batch{Builds: []state.BuildUpdate{{ID: id, State: api.BuildCancelled}}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
