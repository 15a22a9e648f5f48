package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/internal/jobset"
)

// TestJobSetsAfterReopen: a store that did not write a build's sets (a
// restarted coordinator's) finds them when a commit rewrites one of their
// jobs, also after its index forgot the build.
func TestJobSetsAfterReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	var jobs []state.Job
	for i := range 50 {
		jobs = append(jobs, state.Job{JobID: fmt.Sprintf("%064x", i), Name: fmt.Sprint("j", i), Seq: i, State: api.JobCached, OutputDigest: "d"})
	}
	var ids []int64
	for range 3 {
		id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, jobs)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	s.sets = jobset.NewIndex(60) // room for one build's hashes at a time
	for round := range 2 {
		for _, id := range ids {
			j := jobs[round*10+int(id)]
			j.BuildID, j.State = id, api.JobSucceeded
			if err := s.Commit(ctx, &state.Batch{Jobs: []state.Job{j}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	counts, err := s.JobCounts(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		want := map[api.JobState]int{api.JobCached: 48, api.JobSucceeded: 2}
		if !reflect.DeepEqual(counts[id], want) {
			t.Errorf("build %d: counts %v, want %v", id, counts[id], want)
		}
		got, err := s.Jobs(ctx, id)
		if err != nil || len(got) != 50 || got[int(id)].State != api.JobSucceeded || got[10+int(id)].State != api.JobSucceeded || got[0].State != api.JobCached {
			t.Errorf("build %d: Jobs = %d jobs, %v", id, len(got), err)
		}
	}
	if s.sets.Size() > 60 {
		t.Errorf("index holds %d, more than its bound", s.sets.Size())
	}
}

// TestCreatedTwice: a job given twice to CreateBuild is stored once, as
// its last record, as rows of the same key always were.
func TestCreatedTwice(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	a := state.Job{JobID: "a", Name: "a", State: api.JobCached, OutputDigest: "d1"}
	b := state.Job{JobID: "b", Name: "b", Seq: 1, State: api.JobWaiting}
	tests := []struct {
		name string
		jobs []state.Job
		want []state.Job
	}{
		{"finished twice", []state.Job{a, b, {JobID: "a", Name: "a", State: api.JobCached, OutputDigest: "d2"}},
			[]state.Job{{JobID: "a", Name: "a", State: api.JobCached, OutputDigest: "d2"}, b}},
		{"finished, then unfinished", []state.Job{a, b, {JobID: "a", Name: "a", State: api.JobQueued}},
			[]state.Job{{JobID: "a", Name: "a", State: api.JobQueued}, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, tt.jobs)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				tt.want[i].BuildID = id
			}
			got, err := s.Jobs(ctx, id)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Jobs = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
