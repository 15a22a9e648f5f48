package pgstate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/internal/jobset"
	"github.com/tryd-ci/tryd/coordinator/state/statetest"
)

// cachedJobs returns n cached jobs.
func cachedJobs(n int) []state.Job {
	var jobs []state.Job
	for i := range n {
		jobs = append(jobs, state.Job{JobID: fmt.Sprintf("%064x", i), Name: fmt.Sprint("j", i), Seq: i, State: api.JobCached, OutputDigest: "d"})
	}
	return jobs
}

// checkBuildJobs checks that build bid holds n jobs, each once, those
// of rerun succeeded and the others cached, as both Jobs and JobCounts
// read them, and that no job is both in a set and a row.
func checkBuildJobs(t *testing.T, s *Store, bid int64, n int, rerun map[int]bool) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Jobs(ctx, bid)
	if err != nil || len(got) != n {
		t.Fatalf("build %d: Jobs = %d jobs, %v; want %d", bid, len(got), err, n)
	}
	for i, j := range got {
		want := api.JobCached
		if rerun[i] {
			want = api.JobSucceeded
		}
		if j.Seq != i || j.State != want {
			t.Errorf("build %d: job %d = seq %d %s, want %s", bid, i, j.Seq, j.State, want)
		}
	}
	counts, err := s.JobCounts(ctx, []int64{bid})
	want := map[api.JobState]int{api.JobCached: n - len(rerun)}
	if len(rerun) > 0 {
		want[api.JobSucceeded] = len(rerun)
	}
	if len(rerun) == n {
		delete(want, api.JobCached)
	}
	if err != nil || !reflect.DeepEqual(counts[bid], want) {
		t.Errorf("build %d: JobCounts = %v, %v; want %v", bid, counts[bid], err, want)
	}
	var both int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE build_id=$1 AND state <> 'succeeded'`, bid).Scan(&both); err != nil || both != 0 {
		t.Errorf("build %d: %d job rows not rerun, %v", bid, both, err)
	}
}

// TestJobSetsOfOtherReplicas: a replica that did not create a build (it
// claimed it, or restarted) finds its job set when a commit writes one
// of its jobs, also after its index forgot the build; replicas
// rewriting one set at once lose none of each other's changes (the set
// is read FOR UPDATE).
func TestJobSetsOfOtherReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := sharedPG.Server(t).NewSchema(t)
	a, b := open(t, dsn), open(t, dsn)
	const n = 50
	jobs := cachedJobs(n)
	newBuild := func() int64 {
		t.Helper()
		id, err := a.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, jobs)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	rerun := func(s *Store, bid int64, i int) error {
		j := jobs[i]
		j.BuildID, j.State, j.Worker = bid, api.JobSucceeded, "w"
		return s.Commit(ctx, &state.Batch{Jobs: []state.Job{j}})
	}

	t.Run("sequential", func(t *testing.T) {
		bid := newBuild()
		b.sets = jobset.NewIndex(60) // room for one build's hashes at a time
		other := newBuild()
		done := map[int]bool{}
		for k, s := range []*Store{b, a, b, a} {
			if err := rerun(s, bid, k); err != nil {
				t.Fatal(err)
			}
			done[k] = true
			if err := rerun(b, other, 40); err != nil { // b's index forgets bid
				t.Fatal(err)
			}
			checkBuildJobs(t, a, bid, n, done)
			checkBuildJobs(t, b, bid, n, done)
		}
		checkBuildJobs(t, a, other, n, map[int]bool{40: true})
		if b.sets.Size() > 60 {
			t.Errorf("index holds %d, more than its bound", b.sets.Size())
		}
		// Every job rerun: the set is gone.
		for i := range n {
			done[i] = true
			if err := rerun([]*Store{a, b}[i%2], bid, i); err != nil {
				t.Fatal(err)
			}
		}
		checkBuildJobs(t, b, bid, n, done)
		var sets int
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM job_sets WHERE build_id=$1`, bid).Scan(&sets); err != nil || sets != 0 {
			t.Errorf("%d sets left, %v", sets, err)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		bid := newBuild()
		var wg sync.WaitGroup
		for r, s := range []*Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := r; i < 40; i += 2 {
					if err := rerun(s, bid, i); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		done := map[int]bool{}
		for i := range 40 {
			done[i] = true
		}
		checkBuildJobs(t, a, bid, n, done)
	})
}

// TestClaimLearnsJobSets: a replica learns from its claims which builds
// have no job sets (their commits then take one round trip), and those
// that have are read at their first commit.
func TestClaimLearnsJobSets(t *testing.T) {
	ctx := context.Background()
	dsn := sharedPG.Server(t).NewSchema(t)
	a, b := open(t, dsn), open(t, dsn)
	without, err := a.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning},
		[]state.Job{{JobID: "q", Name: "q", State: api.JobQueued}})
	if err != nil {
		t.Fatal(err)
	}
	with, err := a.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, cachedJobs(3))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if ids, err := b.ClaimBuilds(ctx, state.Owner{ID: "b"}, 10, now, now.Add(time.Minute)); err != nil || len(ids) != 2 {
		t.Fatalf("claims = %v, %v", ids, err)
	}
	tests := []struct {
		name  string
		build int64
		known bool
	}{
		{"build without sets", without, true},
		{"build with sets", with, false},
	}
	for _, tc := range tests {
		hs, known := b.sets.Lookup(tc.build)
		if known != tc.known || len(hs) != 0 {
			t.Errorf("%s: known %v with %d hashes, want known %v", tc.name, known, len(hs), tc.known)
		}
	}
}

// BenchmarkCachedBuild: see statetest.BenchCachedBuild. The store has
// one connection, whose server process's CPU time is read from /proc (a
// local server only; PostgreSQL's background writers are not counted).
func BenchmarkCachedBuild(b *testing.B) {
	statetest.BenchCachedBuild(b, func(b *testing.B) state.Store {
		s, err := Open(context.Background(), Options{DSN: sharedPG.Server(b).NewSchema(b), MaxConns: 1})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}, func(b *testing.B, st state.Store) func() (time.Duration, bool) { return backendCPU(b, st.(*Store)) })
}

// backendCPU returns a function that reads the CPU time used so far by
// the server process of s's connection (a store of one connection);
// false if it cannot be read, or if the connection was replaced.
func backendCPU(b *testing.B, s *Store) func() (time.Duration, bool) {
	pid := func() int {
		var pid int
		if err := s.pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			b.Fatal(err)
		}
		return pid
	}
	first := pid()
	return func() (time.Duration, bool) {
		if pid() != first {
			return 0, false // the connection was replaced
		}
		return procCPU(first)
	}
}

// reportCPU starts counting the CPU time of this process and of the
// server process of s's connection (a store of one connection); the
// function it returns stops the timer and reports them per op, as
// cpu-us/op and server-cpu-us/op.
func reportCPU(b *testing.B, s *Store) (stop func()) {
	server := backendCPU(b, s)
	cpu0 := statetest.ProcessCPU(b)
	server0, serverOK := server()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64((statetest.ProcessCPU(b)-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-us/op")
		if server1, ok := server(); ok && serverOK {
			b.ReportMetric(float64((server1-server0).Nanoseconds())/1e3/float64(b.N), "server-cpu-us/op")
		}
	}
}

// procCPU returns the CPU time (user+sys) of process pid from
// /proc/pid/stat, in clock ticks of 10ms; false if it cannot be read.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command (which may hold spaces) in
	// parentheses: state is the 3rd field, utime the 14th, stime the
	// 15th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}
