package pgstate

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// lastByKeyRef is lastByKey's definition: the last element of each key,
// in order.
func lastByKeyRef(xs []string) []string {
	var out []string
	for i, x := range xs {
		if !slices.Contains(xs[i+1:], x) {
			out = append(out, x)
		}
	}
	return out
}

func TestLastByKey(t *testing.T) {
	many := func(n int, dup func(i int) bool) []string {
		var xs []string
		for i := range n {
			if dup(i) {
				xs = append(xs, "k0")
			} else {
				xs = append(xs, fmt.Sprint("k", i))
			}
		}
		return xs
	}
	tests := []struct {
		name string
		xs   []string
	}{
		{"empty", nil},
		{"one", []string{"a"}},
		{"distinct", []string{"a", "b", "c"}},
		{"repeat first", []string{"a", "b", "a"}},
		{"repeat last", []string{"a", "b", "b"}},
		{"all same", []string{"a", "a", "a"}},
		{"small distinct", many(smallBatch, func(int) bool { return false })},
		{"large distinct", many(3*smallBatch, func(int) bool { return false })},
		{"large repeats", many(3*smallBatch, func(i int) bool { return i%5 == 0 })},
		{"large repeat at end", many(3*smallBatch, func(i int) bool { return i == 3*smallBatch-1 })},
	}
	seen := map[string]int{"stale": 7} // left over from an earlier call
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.xs)
			got := lastByKey(in, func(s *string) string { return *s }, seen)
			if want := lastByKeyRef(tc.xs); !slices.Equal(got, want) {
				t.Errorf("lastByKey(%q) = %q, want %q", tc.xs, got, want)
			}
			if !slices.Equal(in, tc.xs) {
				t.Errorf("lastByKey changed its input to %q", in)
			}
		})
	}
}

func TestBatchBuilds(t *testing.T) {
	b := &state.Batch{
		Builds:   []state.BuildUpdate{{ID: 9}},
		Jobs:     []state.Job{{BuildID: 3}, {BuildID: 9}, {BuildID: 3}},
		Attempts: []state.Attempt{{BuildID: 5}},
		Results:  []state.Result{{BuildID: 1}, {BuildID: 5}},
	}
	c := column[pgInt8]{v: []pgInt8{42, 43, 44, 45, 46, 47, 48, 49}} // an earlier batch's
	batchBuilds(b, &c)
	if want := []pgInt8{1, 3, 5, 9}; !slices.Equal(c.v, want) {
		t.Errorf("batchBuilds = %v, want %v", c.v, want)
	}
	batchBuilds(&state.Batch{}, &c)
	if len(c.v) != 0 {
		t.Errorf("batchBuilds of an empty batch = %v", c.v)
	}
}

// TestCommitColumns writes every kind of column value through commits
// of decreasing sizes (the columns a commit reuses hold more of an
// earlier one), with records repeated within a batch (the last wins),
// fenced and not, and reads them back.
func TestCommitColumns(t *testing.T) {
	ctx := context.Background()
	s := open(t, sharedPG.Server(t).NewSchema(t))
	t0 := time.Unix(1_700_000_000, 123456000).UTC()
	for _, owner := range []string{"", "r1"} {
		for _, n := range []int{3 * smallBatch, smallBatch + 1, smallBatch, 2, 1} {
			t.Run(fmt.Sprintf("owner=%q/n=%d", owner, n), func(t *testing.T) {
				bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning, Created: t0}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if owner != "" {
					if ok, err := s.HoldBuild(ctx, bid, state.Owner{ID: owner, URL: "http://" + owner}, t0, t0.Add(time.Hour)); !ok || err != nil {
						t.Fatalf("HoldBuild = %v, %v", ok, err)
					}
				}
				var b state.Batch
				var wantJobs []state.Job
				var wantAtts []state.Attempt
				wantRes := map[string]state.Result{}
				for i := range n {
					exit := i - 1
					fin := t0.Add(time.Duration(i) * time.Second)
					j := state.Job{BuildID: bid, JobID: fmt.Sprintf("%064x", i), Name: fmt.Sprint("jöb ", i, ` "q" \ {x,y}`), Seq: i,
						State: api.JobSucceeded, Worker: "w", OutputDigest: fmt.Sprint("d", i), ExitCode: &exit, Error: "", Started: t0, Finished: fin}
					a := state.Attempt{ID: fmt.Sprint(bid, "-", i), BuildID: bid, JobID: j.JobID, Worker: "w", State: api.AttemptSucceeded,
						Started: t0, Finished: &fin, ExitCode: &exit, OutputDigest: j.OutputDigest, LogBytes: int64(i) << 33, LogTruncated: i%2 == 1}
					if i%3 == 0 { // unfinished: NULL exit code, zero times
						j.State, j.ExitCode, j.Finished, j.OutputDigest, j.Error = api.JobRunning, nil, time.Time{}, "", "err,{}"
						a.State, a.ExitCode, a.Finished, a.OutputDigest = api.AttemptRunning, nil, nil, ""
					}
					// An earlier version of each record, overwritten
					// in the same batch.
					stale := j
					stale.State, stale.Name = api.JobQueued, "stale"
					staleA := a
					staleA.Worker = "stale"
					b.Jobs = append(b.Jobs, stale)
					b.Attempts = append(b.Attempts, staleA)
					b.Jobs, b.Attempts = append(b.Jobs, j), append(b.Attempts, a)
					wantJobs, wantAtts = append(wantJobs, j), append(wantAtts, a)
					if a.Finished != nil {
						r := state.Result{JobID: j.JobID, OutputDigest: j.OutputDigest, AttemptID: a.ID, BuildID: bid, Finished: fin}
						b.Results = append(b.Results, state.Result{JobID: j.JobID, OutputDigest: "stale", AttemptID: a.ID, BuildID: bid, Finished: fin}, r)
						wantRes[r.JobID] = r
					}
				}
				var err2 error
				if owner == "" {
					err2 = s.Commit(ctx, &b)
				} else {
					var foreign []int64
					foreign, err2 = s.CommitHeld(ctx, owner, &b)
					if len(foreign) != 0 {
						t.Errorf("CommitHeld: foreign builds %v", foreign)
					}
				}
				if err2 != nil {
					t.Fatal(err2)
				}
				jobs, err := s.Jobs(ctx, bid)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(jobs, wantJobs) {
					t.Errorf("Jobs =\n%+v\nwant\n%+v", jobs, wantJobs)
				}
				atts, err := s.Attempts(ctx, bid)
				if err != nil {
					t.Fatal(err)
				}
				if len(atts) != len(wantAtts) {
					t.Fatalf("%d attempts, want %d", len(atts), len(wantAtts))
				}
				for _, want := range wantAtts {
					got, err := s.Attempt(ctx, want.ID)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(*got, want) {
						t.Errorf("Attempt %s = %+v, want %+v", want.ID, *got, want)
					}
				}
				ids := make([]string, 0, len(wantJobs))
				for _, j := range wantJobs {
					ids = append(ids, j.JobID)
				}
				res, err := s.Results(ctx, ids)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(res, wantRes) {
					t.Errorf("Results = %+v, want %+v", res, wantRes)
				}
			})
		}
	}
}

// BenchmarkRestoreBuild reads what a replica reads to resume a build
// it claims (the build, its jobs and its attempts): a build of 200
// jobs, half of them run. One op is one build.
func BenchmarkRestoreBuild(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Options{DSN: sharedPG.Server(b).NewSchema(b), MaxConns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 200
	t0 := time.Unix(1_700_000_000, 0).UTC()
	var jobs []state.Job
	for i := range n {
		jobs = append(jobs, state.Job{JobID: fmt.Sprintf("%064x", i), Name: fmt.Sprint("job", i), Seq: i, State: api.JobQueued})
	}
	bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: make([]byte, 20<<10), State: api.BuildRunning, Created: t0}, jobs)
	if err != nil {
		b.Fatal(err)
	}
	var batch state.Batch
	zero := 0
	for i := range n / 2 {
		fin := t0.Add(time.Second)
		j := jobs[i]
		j.BuildID, j.State, j.Worker, j.OutputDigest, j.ExitCode, j.Started, j.Finished = bid, api.JobSucceeded, "w1", "sha256:d", &zero, t0, fin
		batch.Jobs = append(batch.Jobs, j)
		batch.Attempts = append(batch.Attempts, state.Attempt{ID: fmt.Sprint(bid, "-", i), BuildID: bid, JobID: j.JobID, Worker: "w1",
			State: api.AttemptSucceeded, Started: t0, Finished: &fin, ExitCode: &zero, OutputDigest: "sha256:d"})
	}
	if err := s.Commit(ctx, &batch); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	stop := reportCPU(b, s)
	for range b.N {
		if _, err := s.Build(ctx, bid); err != nil {
			b.Fatal(err)
		}
		if js, err := s.Jobs(ctx, bid); err != nil || len(js) != n {
			b.Fatalf("Jobs: %d, %v", len(js), err)
		}
		if as, err := s.Attempts(ctx, bid); err != nil || len(as) != n/2 {
			b.Fatalf("Attempts: %d, %v", len(as), err)
		}
	}
	stop()
}
