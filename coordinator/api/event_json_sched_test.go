package api

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEventAppendJSON(t *testing.T) {
	code, neg := 0, -1
	for _, tc := range []struct {
		name string
		e    Event
	}{
		{name: "zero", e: Event{}},
		{name: "job started", e: Event{Index: 7, Type: EventJobStarted, Time: time.Date(2026, 11, 21, 13, 0, 0, 123456789, time.UTC), JobID: "ab12", JobName: "vet ./...", State: JobRunning, AttemptID: "a1", Worker: "w1"}},
		{name: "job finished", e: Event{Index: 8, Type: EventJobFinished, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), JobID: "ab12", State: JobFailed, ExitCode: &code, Error: `exit "status" 1 <&>`}},
		{name: "negative exit code", e: Event{Type: EventJobFinished, ExitCode: &neg}},
		{name: "log chunk", e: Event{Type: EventLog, Data: "line 1\nline\t2 \u2028 é \xff\x00", Offset: 1 << 40}},
		{name: "build finished", e: Event{Type: EventBuildFinished, BuildState: BuildFailed, Count: 3, Epoch: "e1"}},
		{name: "year out of range", e: Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(&tc.e)
			if err != nil {
				want = []byte("null")
			}
			if got := tc.e.AppendJSON(nil); string(got) != string(want) {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzEventAppendJSON(f *testing.F) {
	f.Add(1, "job_started", int64(1700000000123456789), "id", "name", "running", "att", "w", true, 1, "err", "data", int64(5), "succeeded", 2, "ep")
	f.Add(0, "", int64(0), "", "", "", "", "", false, 0, "", "", int64(0), "", 0, "")
	f.Add(-3, "<x>", int64(-1), "\"", "\\", "\u2029", "\xff", "&", true, -9, "\n", "\x7f", int64(-5), "é", -1, "\x00")
	f.Fuzz(func(t *testing.T, index int, typ string, nanos int64, jobID, jobName, st, att, worker string, hasCode bool, code int, errMsg, data string, off int64, bst string, count int, epoch string) {
		e := Event{Index: index, Type: EventType(typ), Time: time.Unix(0, nanos).UTC(), Epoch: epoch, JobID: jobID, JobName: jobName, State: JobState(st),
			AttemptID: att, Worker: worker, Error: errMsg, Data: data, Offset: off, BuildState: BuildState(bst), Count: count}
		if hasCode {
			e.ExitCode = &code
		}
		want, err := json.Marshal(&e)
		if err != nil {
			want = []byte("null")
		}
		if got := e.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkEventJSON compares AppendJSON with json.Marshal on a typical
// job event.
func BenchmarkEventJSON(b *testing.B) {
	e := Event{Index: 7, Type: EventJobStarted, Time: time.Now(), JobID: "ee7e636a3c255f56d747677e48839b3aaf9c176aa9060a032ed6e8818e976f62",
		JobName: "j123", State: JobRunning, AttemptID: "0289df86e7d0425d", Worker: "w1"}
	b.Run("Marshal", func(b *testing.B) {
		for range b.N {
			json.Marshal(&e)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf = e.AppendJSON(buf[:0])
		}
	})
}
