// Package statetest is the conformance suite for implementations of the
// coordinator's state.Store: every implementation's tests call Run with a
// constructor of empty stores.
package statetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// Run runs the conformance suite. newStore returns an empty store, closed
// by the suite's cleanup or by the caller.
func Run(t *testing.T, newStore func(t *testing.T) state.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s state.Store)
	}{
		{"CreateAndRead", testCreateAndRead},
		{"BuildNotFound", testNotFound},
		{"CommitBatch", testCommitBatch},
		{"Attempts", testAttempts},
		{"ListBuilds", testListBuilds},
		{"Results", testResults},
		{"Workers", testWorkers},
		{"ConcurrentCommits", testConcurrent},
		{"CreatedJobsRewritten", testCreatedJobsRewritten},
		{"CreatedJobsFailedCommit", testCreatedJobsFailedCommit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

// ts returns a time rounded as every store can keep it.
func ts(sec int) time.Time { return time.Unix(1_700_000_000+int64(sec), 123456000).UTC() }

func id(c byte) string { return strings.Repeat(string(c), 64) }

func intp(i int) *int { return &i }

func newBuild(t *testing.T, s state.Store, labels map[string]string, jobs ...state.Job) int64 {
	t.Helper()
	bid, err := s.CreateBuild(context.Background(), &state.Build{
		Priority: api.PriorityTry, Labels: labels, Graph: []byte(`{"jobs":[]}`),
		State: api.BuildRunning, Created: ts(0),
	}, jobs)
	if err != nil {
		t.Fatalf("CreateBuild: %v", err)
	}
	return bid
}

func testCreateAndRead(t *testing.T, s state.Store) {
	ctx := context.Background()
	jobs := []state.Job{
		{JobID: id('b'), Name: "b", Seq: 1, State: api.JobWaiting},
		{JobID: id('a'), Name: "a", Seq: 0, State: api.JobQueued},
	}
	bid := newBuild(t, s, map[string]string{"repo": "x"}, jobs...)
	b, err := s.Build(ctx, bid)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != bid || b.Priority != api.PriorityTry || b.Labels["repo"] != "x" || string(b.Graph) != `{"jobs":[]}` ||
		b.State != api.BuildRunning || !b.Created.Equal(ts(0)) || !b.Finished.IsZero() {
		t.Errorf("Build = %+v", b)
	}
	got, err := s.Jobs(ctx, bid)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[0].BuildID != bid || got[0].State != api.JobQueued {
		t.Errorf("Jobs = %+v", got)
	}
	if jc, ok := s.(state.JobCounter); ok {
		counts, err := jc.JobCounts(ctx, []int64{bid, 999})
		if err != nil || !reflect.DeepEqual(counts, map[int64]map[api.JobState]int{bid: {api.JobWaiting: 1, api.JobQueued: 1}}) {
			t.Errorf("JobCounts = %v, %v", counts, err)
		}
	}
	bid2 := newBuild(t, s, nil)
	if bid2 <= bid {
		t.Errorf("build IDs not increasing: %d then %d", bid, bid2)
	}
	ids, err := s.UnfinishedBuilds(ctx)
	if err != nil || !reflect.DeepEqual(ids, []int64{bid, bid2}) {
		t.Errorf("UnfinishedBuilds = %v, %v", ids, err)
	}
}

func testNotFound(t *testing.T, s state.Store) {
	ctx := context.Background()
	if _, err := s.Build(ctx, 12345); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Build(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Attempt(ctx, "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Attempt(missing) = %v, want ErrNotFound", err)
	}
	if jobs, err := s.Jobs(ctx, 12345); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(missing) = %v, %v", jobs, err)
	}
}

func testCommitBatch(t *testing.T, s state.Store) {
	ctx := context.Background()
	bid := newBuild(t, s, nil, state.Job{JobID: id('a'), Name: "a", State: api.JobQueued})
	fin := ts(10)
	err := s.Commit(ctx, &state.Batch{
		Builds: []state.BuildUpdate{{ID: bid, State: api.BuildFailed, Error: "boom", Finished: fin, Graph: []byte(`{"jobs":[1]}`)}},
		Jobs: []state.Job{
			{BuildID: bid, JobID: id('a'), Name: "a", State: api.JobFailed, Worker: "w1", ExitCode: intp(2), Error: "exit 2", Started: ts(1), Finished: fin},
			{BuildID: bid, JobID: id('c'), Name: "c", Seq: 1, State: api.JobSkipped},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Build(ctx, bid)
	if err != nil {
		t.Fatal(err)
	}
	if b.State != api.BuildFailed || b.Error != "boom" || !b.Finished.Equal(fin) || string(b.Graph) != `{"jobs":[1]}` {
		t.Errorf("Build after commit = %+v", b)
	}
	jobs, _ := s.Jobs(ctx, bid)
	if len(jobs) != 2 || jobs[0].State != api.JobFailed || jobs[0].ExitCode == nil || *jobs[0].ExitCode != 2 ||
		jobs[0].Worker != "w1" || !jobs[0].Started.Equal(ts(1)) || jobs[1].State != api.JobSkipped || jobs[1].ExitCode != nil {
		t.Errorf("Jobs after commit = %+v", jobs)
	}
	ids, _ := s.UnfinishedBuilds(ctx)
	if len(ids) != 0 {
		t.Errorf("finished build still unfinished: %v", ids)
	}
	if err := s.Commit(ctx, &state.Batch{}); err != nil {
		t.Errorf("empty commit: %v", err)
	}
}

func testAttempts(t *testing.T, s state.Store) {
	ctx := context.Background()
	bid := newBuild(t, s, nil, state.Job{JobID: id('a'), Name: "a", State: api.JobRunning})
	a1 := state.Attempt{ID: "at1", BuildID: bid, JobID: id('a'), Worker: "w1", State: api.AttemptRunning, Started: ts(1)}
	if err := s.Commit(ctx, &state.Batch{Attempts: []state.Attempt{a1}}); err != nil {
		t.Fatal(err)
	}
	fin := ts(5)
	a1.State, a1.Finished, a1.Error = api.AttemptLost, &fin, "worker w1 stopped heartbeating"
	a2 := state.Attempt{ID: "at2", BuildID: bid, JobID: id('a'), Worker: "w2", State: api.AttemptSucceeded, Started: ts(6),
		Finished: &fin, ExitCode: intp(0), OutputDigest: id('d'), LogBytes: 42, LogTruncated: true}
	if err := s.Commit(ctx, &state.Batch{Attempts: []state.Attempt{a1, a2}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Attempts(ctx, bid)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "at1" || got[0].State != api.AttemptLost || got[0].Error == "" ||
		got[1].ID != "at2" || got[1].LogBytes != 42 || !got[1].LogTruncated || got[1].OutputDigest != id('d') ||
		got[1].ExitCode == nil || *got[1].ExitCode != 0 || got[1].Finished == nil || !got[1].Finished.Equal(fin) {
		t.Errorf("Attempts = %+v", got)
	}
	one, err := s.Attempt(ctx, "at2")
	if err != nil || !reflect.DeepEqual(*one, got[1]) {
		t.Errorf("Attempt(at2) = %+v, %v", one, err)
	}
	byJob, err := s.JobAttempts(ctx, id('a'))
	if err != nil || len(byJob) != 2 {
		t.Errorf("JobAttempts = %v, %v", byJob, err)
	}
}

func testListBuilds(t *testing.T, s state.Store) {
	ctx := context.Background()
	b1 := newBuild(t, s, map[string]string{"repo": "x", "kind": "try"})
	b2 := newBuild(t, s, map[string]string{"repo": "y", "kind": "try"})
	b3 := newBuild(t, s, map[string]string{"repo": "x", "kind": "post"})
	if err := s.Commit(ctx, &state.Batch{Builds: []state.BuildUpdate{{ID: b2, State: api.BuildSucceeded, Finished: ts(3)}}}); err != nil {
		t.Fatal(err)
	}
	ids := func(bs []state.Build) []int64 {
		var out []int64
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	tests := []struct {
		name string
		f    state.Filter
		want []int64
	}{
		{"all", state.Filter{}, []int64{b3, b2, b1}},
		{"state", state.Filter{State: api.BuildRunning}, []int64{b3, b1}},
		{"label", state.Filter{Labels: map[string]string{"repo": "x"}}, []int64{b3, b1}},
		{"two labels", state.Filter{Labels: map[string]string{"repo": "x", "kind": "try"}}, []int64{b1}},
		{"limit", state.Filter{Limit: 2}, []int64{b3, b2}},
		{"before", state.Filter{Before: b3}, []int64{b2, b1}},
		{"none", state.Filter{Labels: map[string]string{"repo": "z"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListBuilds(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("ListBuilds(%+v) = %v, want %v", tt.f, ids(got), tt.want)
			}
		})
	}
}

func testResults(t *testing.T, s state.Store) {
	ctx := context.Background()
	var rs []state.Result
	var want []string
	for i := range 1200 {
		jid := fmt.Sprintf("%064x", i)
		want = append(want, jid)
		if i%2 == 0 {
			rs = append(rs, state.Result{JobID: jid, OutputDigest: id('d'), AttemptID: fmt.Sprint("a", i), BuildID: 1, Finished: ts(i)})
		}
	}
	if err := s.Commit(ctx, &state.Batch{Results: rs}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Results(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 600 {
		t.Fatalf("Results found %d, want 600", len(got))
	}
	if r := got[fmt.Sprintf("%064x", 4)]; r.AttemptID != "a4" || !r.Finished.Equal(ts(4)) || r.OutputDigest != id('d') {
		t.Errorf("result 4 = %+v", r)
	}
	del := fmt.Sprintf("%064x", 0)
	if err := s.Commit(ctx, &state.Batch{DeleteResults: []string{del}}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Results(ctx, []string{del})
	if len(got) != 0 {
		t.Errorf("deleted result still there")
	}
}

func testWorkers(t *testing.T, s state.Store) {
	ctx := context.Background()
	w := state.Worker{Name: "w1", TokenHash: id('h'), Labels: map[string]string{"os": "linux"}, Slots: 4, Version: "v1", LastSeen: ts(1)}
	if err := s.Commit(ctx, &state.Batch{Workers: []state.Worker{w}}); err != nil {
		t.Fatal(err)
	}
	w.Slots, w.LastSeen = 8, ts(2)
	if err := s.Commit(ctx, &state.Batch{Workers: []state.Worker{w, {Name: "w0", TokenHash: id('i')}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "w0" || !reflect.DeepEqual(got[1], w) {
		t.Errorf("Workers = %+v", got)
	}
}

func testConcurrent(t *testing.T, s state.Store) {
	ctx := context.Background()
	bid := newBuild(t, s, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				err := s.Commit(ctx, &state.Batch{Jobs: []state.Job{{BuildID: bid, JobID: fmt.Sprintf("%063x%d", g*10+i, g%10), Name: fmt.Sprint(g, "-", i), State: api.JobQueued}}})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	jobs, err := s.Jobs(ctx, bid)
	if err != nil || len(jobs) != 80 {
		t.Errorf("Jobs = %d, %v; want 80", len(jobs), err)
	}
}

// testCreatedJobsRewritten: the jobs a build is created with, finished
// or not, in any number (a store may keep finished ones in one record),
// read back whole and counted; a later write of any of them replaces it.
func testCreatedJobsRewritten(t *testing.T, s state.Store) {
	ctx := context.Background()
	const n = 1000
	var jobs []state.Job
	for i := range n {
		j := state.Job{JobID: fmt.Sprintf("%064x", i), Name: fmt.Sprint("j", i), Seq: i, State: api.JobCached,
			OutputDigest: id('d'), Finished: ts(1)}
		switch i % 4 {
		case 1:
			j.State, j.Worker, j.ExitCode, j.Error, j.Started = api.JobFailed, "w1", intp(-3), "exit -3\nwith ünïcode", ts(0)
		case 2:
			j.State, j.OutputDigest, j.Finished = api.JobWaiting, "", time.Time{}
		}
		jobs = append(jobs, j)
	}
	bid := newBuild(t, s, nil, jobs...)
	other := newBuild(t, s, nil, jobs[:3]...)
	want := slices.Clone(jobs)
	for i := range want {
		want[i].BuildID = bid
	}
	check := func(step string) {
		t.Helper()
		got, err := s.Jobs(ctx, bid)
		if err != nil {
			t.Fatalf("%s: Jobs: %v", step, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: Jobs = %d jobs, want %d", step, len(got), len(want))
		}
		counts := map[api.JobState]int{}
		for i := range want {
			counts[want[i].State]++
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("%s: job %d = %+v, want %+v", step, i, got[i], want[i])
			}
		}
		if jc, ok := s.(state.JobCounter); ok {
			got, err := jc.JobCounts(ctx, []int64{bid})
			if err != nil || !reflect.DeepEqual(got[bid], counts) {
				t.Errorf("%s: JobCounts = %v, %v; want %v", step, got, err, counts)
			}
		}
	}
	check("created")
	// Rewrite a cached, a failed and a waiting job, twice.
	for round, st := range []api.JobState{api.JobSucceeded, api.JobCancelled} {
		var batch state.Batch
		for _, i := range []int{4, 5, 6} {
			want[i].State, want[i].Worker, want[i].ExitCode, want[i].Error = st, "w2", intp(round), ""
			want[i].Started, want[i].Finished = ts(2), ts(3+round)
			batch.Jobs = append(batch.Jobs, want[i])
		}
		if err := s.Commit(ctx, &batch); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprint("rewrite ", round))
	}
	// The other build's jobs of the same IDs are its own.
	got, err := s.Jobs(ctx, other)
	if err != nil || len(got) != 3 || got[0].State != api.JobCached || got[1].State != api.JobFailed || got[2].State != api.JobWaiting {
		t.Errorf("other build's Jobs = %+v, %v", got, err)
	}
}

// testCreatedJobsFailedCommit: a commit that rewrites a job a build was
// created with and fails (another of its jobs belongs to no build)
// changes nothing, and the job is rewritten by the next commit that
// succeeds (a store that keeps the job in a set still finds it there).
func testCreatedJobsFailedCommit(t *testing.T, s state.Store) {
	ctx := context.Background()
	jobs := []state.Job{
		{JobID: id('a'), Name: "a", Seq: 0, State: api.JobCached, OutputDigest: id('d'), Finished: ts(1)},
		{JobID: id('b'), Name: "b", Seq: 1, State: api.JobCached, OutputDigest: id('d'), Finished: ts(1)},
	}
	bid := newBuild(t, s, nil, jobs...)
	rerun := jobs[0]
	rerun.BuildID, rerun.State, rerun.Worker, rerun.Started, rerun.Finished = bid, api.JobSucceeded, "w1", ts(2), ts(3)
	orphan := state.Job{BuildID: bid + 1000, JobID: id('c'), Name: "c", State: api.JobQueued}
	counts := func(step string, want api.JobState) {
		t.Helper()
		if jc, ok := s.(state.JobCounter); ok {
			want := map[api.JobState]int{want: 1}
			want[api.JobCached]++
			got, err := jc.JobCounts(ctx, []int64{bid})
			if err != nil || !reflect.DeepEqual(got[bid], want) {
				t.Errorf("%s: JobCounts = %v, %v; want %v", step, got[bid], err, want)
			}
		}
	}
	// No Jobs between the commits: it would show the store the job
	// where it is.
	for range 2 {
		if err := s.Commit(ctx, &state.Batch{Jobs: []state.Job{rerun, orphan}}); err == nil {
			t.Fatal("commit of a job of a missing build succeeded")
		}
		counts("after a failed commit", api.JobCached)
	}
	if err := s.Commit(ctx, &state.Batch{Jobs: []state.Job{rerun}}); err != nil {
		t.Fatal(err)
	}
	counts("after a commit", api.JobSucceeded)
	got, err := s.Jobs(ctx, bid)
	if err != nil || len(got) != 2 || !reflect.DeepEqual(got[0], rerun) || got[1].State != api.JobCached {
		t.Errorf("Jobs = %+v, %v; want a rerun, b cached", got, err)
	}
}
