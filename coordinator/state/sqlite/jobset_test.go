package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

func TestJobSetRoundTrip(t *testing.T) {
	code := -1
	tests := []struct {
		name string
		jobs []state.Job
	}{
		{"empty", nil},
		{"one", []state.Job{{JobID: "a", Name: "hello", OutputDigest: "d"}}},
		{"every field", []state.Job{
			{JobID: "x", Name: "naïve\n\x00", Seq: -5, Worker: "w", OutputDigest: "sha256:00", ExitCode: &code, Error: "boom",
				Started: time.Unix(0, 1).UTC(), Finished: time.Unix(1_700_000_000, 999).UTC()},
			{JobID: "y", Seq: 1 << 40},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.jobs {
				tt.jobs[i].BuildID, tt.jobs[i].State = 7, api.JobFailed
			}
			got, err := decodeJobSet(encodeJobSet(tt.jobs), 7, api.JobFailed)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.jobs) || (len(got) > 0 && !reflect.DeepEqual(got, tt.jobs)) {
				t.Errorf("decoded %+v, want %+v", got, tt.jobs)
			}
		})
	}
}

func TestJobSetCorrupt(t *testing.T) {
	good := encodeJobSet([]state.Job{{JobID: "a", Name: "hello"}})
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(good, 0)},
		{"huge count", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"bad exit tag", func() []byte {
			b := encodeJobSet([]state.Job{{}})
			b[2+5] = 7 // after the count and five empty fields
			return b
		}()},
		{"string past the end", []byte{1, 1, 0x7f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeJobSet(tt.b, 1, api.JobCached); !errors.Is(err, errBadJobSet) {
				t.Errorf("decode = %v, want errBadJobSet", err)
			}
		})
	}
}

func FuzzDecodeJobSet(f *testing.F) {
	code := 3
	f.Add(encodeJobSet(nil))
	f.Add(encodeJobSet([]state.Job{{JobID: "a", Name: "b", Seq: 2, ExitCode: &code, Error: "e", Finished: time.Unix(5, 0)}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		jobs, err := decodeJobSet(b, 1, api.JobCached)
		if err != nil {
			if !errors.Is(err, errBadJobSet) {
				t.Fatalf("error %v does not wrap errBadJobSet", err)
			}
			return
		}
		// What decodes encodes back to a set that decodes the same.
		again, err := decodeJobSet(encodeJobSet(jobs), 1, api.JobCached)
		if err != nil || len(again) != len(jobs) || (len(jobs) > 0 && !reflect.DeepEqual(again, jobs)) {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, jobs)
		}
	})
}

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
	s.sets = newSetIndex(60) // room for one build's hashes at a time
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
	if s.sets.size > 60 {
		t.Errorf("index holds %d, more than its bound", s.sets.size)
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
