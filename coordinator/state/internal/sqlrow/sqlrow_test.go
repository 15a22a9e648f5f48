package sqlrow

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

func TestTimes(t *testing.T) {
	at := time.Unix(1_700_000_000, 123456789).UTC()
	tests := []struct {
		name string
		t    time.Time
		n    int64
	}{
		{"zero", time.Time{}, 0},
		{"time", at, at.UnixNano()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := Nanos(tt.t); n != tt.n {
				t.Errorf("Nanos = %d, want %d", n, tt.n)
			}
			if got := Time(tt.n); !got.Equal(tt.t) {
				t.Errorf("Time = %v, want %v", got, tt.t)
			}
			var p *time.Time
			if !tt.t.IsZero() {
				p = &tt.t
			}
			if n := NanosPtr(p); n != tt.n {
				t.Errorf("NanosPtr = %d, want %d", n, tt.n)
			}
			if got := TimePtr(tt.n); (got == nil) != (p == nil) || got != nil && !got.Equal(*p) {
				t.Errorf("TimePtr = %v, want %v", got, p)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name    string
		labels  map[string]string
		encoded string
	}{
		{"none", nil, "{}"},
		{"empty", map[string]string{}, "{}"},
		{"some", map[string]string{"os": "linux", "arch": "amd64"}, `{"arch":"amd64","os":"linux"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := EncodeLabels(tt.labels); s != tt.encoded {
				t.Errorf("EncodeLabels = %q, want %q", s, tt.encoded)
			}
			got := DecodeLabels(tt.encoded)
			if len(tt.labels) == 0 && got != nil || len(tt.labels) > 0 && !reflect.DeepEqual(got, tt.labels) {
				t.Errorf("DecodeLabels = %v, want %v", got, tt.labels)
			}
		})
	}
	if got := DecodeLabels("not json"); got != nil {
		t.Errorf("DecodeLabels of garbage = %v, want nil", got)
	}
}

// row is a Scanner over fixed values, as a driver would convert them.
type row []any

func (r row) Scan(dest ...any) error {
	if len(dest) != len(r) {
		return errors.New("column count")
	}
	for i, d := range dest {
		v := reflect.ValueOf(d).Elem()
		if r[i] == nil {
			v.SetZero()
			continue
		}
		src := reflect.ValueOf(r[i])
		if v.Kind() == reflect.Pointer {
			p := reflect.New(v.Type().Elem())
			p.Elem().Set(src)
			v.Set(p)
			continue
		}
		v.Set(src)
	}
	return nil
}

func TestScan(t *testing.T) {
	at := time.Unix(1_700_000_000, 5).UTC()
	one := 1
	j, err := ScanJob(row{int64(7), "id", "name", int64(3), "succeeded", "w1", "d", int64(1), "", at.UnixNano(), int64(0)})
	want := state.Job{BuildID: 7, JobID: "id", Name: "name", Seq: 3, State: api.JobSucceeded, Worker: "w1", OutputDigest: "d", ExitCode: &one, Started: at}
	if err != nil || !reflect.DeepEqual(j, want) {
		t.Errorf("ScanJob = %+v, %v; want %+v", j, err, want)
	}
	a, err := ScanAttempt(row{"a", int64(7), "id", "w1", "running", at.UnixNano(), int64(0), nil, "", "", int64(0), false})
	if err != nil || a.ExitCode != nil || a.Finished != nil || !a.Started.Equal(at) || a.State != api.AttemptRunning {
		t.Errorf("ScanAttempt = %+v, %v", a, err)
	}
	w, err := ScanWorker(row{"w1", "hash", `{"os":"linux"}`, int64(4), "v", at.UnixNano()})
	if err != nil || w.Slots != 4 || w.Labels["os"] != "linux" || !w.LastSeen.Equal(at) {
		t.Errorf("ScanWorker = %+v, %v", w, err)
	}
	b, err := ScanBuild(row{int64(7), "try", "{}", "running", "", at.UnixNano(), int64(0), []byte("{}")}, true)
	if err != nil || b.ID != 7 || b.Labels != nil || string(b.Graph) != "{}" || !b.Finished.IsZero() {
		t.Errorf("ScanBuild = %+v, %v", b, err)
	}
	if _, err := ScanResult(row{"too few"}); err == nil {
		t.Error("ScanResult of a short row succeeded")
	}
}
