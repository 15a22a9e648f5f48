package jobset

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

func TestRoundTrip(t *testing.T) {
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
			got, err := Decode(Encode(tt.jobs), 7, api.JobFailed)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.jobs) || (len(got) > 0 && !reflect.DeepEqual(got, tt.jobs)) {
				t.Errorf("decoded %+v, want %+v", got, tt.jobs)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	good := Encode([]state.Job{{JobID: "a", Name: "hello"}})
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
			b := Encode([]state.Job{{}})
			b[2+5] = 7 // after the count and five empty fields
			return b
		}()},
		{"string past the end", []byte{1, 1, 0x7f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.b, 1, api.JobCached); !errors.Is(err, ErrBad) {
				t.Errorf("decode = %v, want ErrBad", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	code := 3
	f.Add(Encode(nil))
	f.Add(Encode([]state.Job{{JobID: "a", Name: "b", Seq: 2, ExitCode: &code, Error: "e", Finished: time.Unix(5, 0)}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		jobs, err := Decode(b, 1, api.JobCached)
		if err != nil {
			if !errors.Is(err, ErrBad) {
				t.Fatalf("error %v does not wrap ErrBad", err)
			}
			return
		}
		// What decodes encodes back to a set that decodes the same.
		again, err := Decode(Encode(jobs), 1, api.JobCached)
		if err != nil || len(again) != len(jobs) || (len(jobs) > 0 && !reflect.DeepEqual(again, jobs)) {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, jobs)
		}
	})
}

// TestCandidates: a commit reads the sets of the builds the index does
// not know and of the jobs whose hashes it holds, and no others.
func TestCandidates(t *testing.T) {
	x := NewIndex(MaxIndex)
	_, _, hs := x.Split([]state.Job{{JobID: "a", State: api.JobCached}, {JobID: "b", State: api.JobCached}, {JobID: "q", State: api.JobQueued}})
	x.Put(1, hs)
	x.Put(2, nil)
	jobs := []state.Job{
		{BuildID: 1, JobID: "a"}, {BuildID: 1, JobID: "q"}, {BuildID: 1, JobID: "c"},
		{BuildID: 2, JobID: "a"},
		{BuildID: 3, JobID: "a"}, {BuildID: 3, JobID: "z"},
	}
	got := x.Candidates(jobs)
	want := map[int64]map[string]bool{1: {"a": true}, 3: {"a": true, "z": true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Candidates = %v, want %v", got, want)
	}
	if got := x.Candidates(jobs[1:4]); got != nil {
		t.Errorf("Candidates of jobs in no set = %v, want none", got)
	}
}
