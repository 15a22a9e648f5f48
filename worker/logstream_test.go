package worker

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// sink records appended chunks the way the coordinator's log endpoint
// does: a chunk at the wrong offset is refused.
type sink struct {
	mu     sync.Mutex
	log    bytes.Buffer
	calls  int
	failN  int   // fail the next n sends
	failE  error // with this error (default: a timeout, unreachable)
	gone   bool
	chunks []int
}

func (s *sink) send(ctx context.Context, off int64, chunk []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.gone {
		return 0, api.ErrConflict
	}
	if s.failN > 0 {
		s.failN--
		if s.failE != nil {
			return 0, s.failE
		}
		return 0, context.DeadlineExceeded
	}
	if off != int64(s.log.Len()) {
		return 0, api.ErrConflict
	}
	s.log.Write(chunk)
	s.chunks = append(s.chunks, len(chunk))
	return int64(s.log.Len()), nil
}

func TestLogStream(t *testing.T) {
	tests := []struct {
		name      string
		max       int64
		writes    []string
		failN     int
		failE     error
		want      string
		truncated bool
	}{
		{name: "small", max: 1000, writes: []string{"hello ", "world\n"}, want: "hello world\n"},
		{name: "chunked", max: 1000, writes: []string{strings.Repeat("x", 25)}, want: strings.Repeat("x", 25)},
		{name: "retried after errors", max: 1000, writes: []string{"abc"}, failN: 2, want: "abc"},
		// A replica the worker failed over to answers 503 until the
		// worker registers there: the end of the log waits for it.
		{name: "retried while unavailable", max: 1000, writes: []string{"abc"}, failN: closeTries + 3, failE: api.ErrUnavailable, want: "abc"},
		{name: "given up while unreachable", max: 1000, writes: []string{"abc"}, failN: 1000, want: ""},
		{name: "truncated", max: 150, writes: []string{strings.Repeat("y", 40), strings.Repeat("z", 200)}, truncated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{failN: tt.failN, failE: tt.failE}
			l := newLogStream(s.send, tt.max, 10, 5*time.Millisecond, nil)
			l.retryWait = time.Millisecond
			for _, w := range tt.writes {
				if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			l.Close(context.Background(), 10*time.Second)
			got := s.log.String()
			if tt.truncated {
				marker := truncationMarker(tt.max)
				if !strings.HasSuffix(got, marker) || int64(len(got)) != tt.max || !l.Truncated() {
					t.Fatalf("truncated log (%d bytes, truncated=%v) = %q", len(got), l.Truncated(), got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("log = %q, want %q", got, tt.want)
			}
			for _, n := range s.chunks {
				if n > 10 {
					t.Errorf("chunk of %d bytes exceeds 10", n)
				}
			}
		})
	}
}

func TestLogStreamGoneStopsJob(t *testing.T) {
	s := &sink{gone: true}
	stopped := make(chan struct{})
	l := newLogStream(s.send, 1000, 10, time.Millisecond, func() { close(stopped) })
	l.Write([]byte("output"))
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("a 409 from the coordinator did not stop the job")
	}
	l.Close(context.Background(), 10*time.Second)
}
