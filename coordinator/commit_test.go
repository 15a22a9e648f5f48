package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// flakyStore fails commits while failing is set, like a full disk.
type flakyStore struct {
	state.Store
	failing atomic.Bool
}

func (f *flakyStore) Commit(ctx context.Context, b *state.Batch) error {
	if f.failing.Load() {
		return errors.New("disk full")
	}
	return f.Store.Commit(ctx, b)
}

func TestCommitFailuresAreRetriedAndReported(t *testing.T) {
	forEachBackend(t, testCommitFailuresAreRetriedAndReported)
}

func testCommitFailuresAreRetriedAndReported(t *testing.T, be backend) {
	ctx := context.Background()
	inner := be.openDB(t, be.newDB(t))
	store := &flakyStore{Store: inner}
	c := newCommitter(store, logging.Discard(), newMetrics(nil))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.run(cctx); close(done) }()
	defer func() { cancel(); <-done }()

	bid, err := inner.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
	if err != nil {
		t.Fatal(err)
	}
	store.failing.Store(true)
	tk := c.build(state.BuildUpdate{ID: bid, State: api.BuildSucceeded})
	select {
	case <-tk:
		t.Fatal("ticket closed although the commit failed")
	case <-time.After(300 * time.Millisecond):
	}
	if c.lastErr() == nil {
		t.Error("lastErr is nil while commits fail")
	}
	// A newer change of the same record wins over the failed one.
	tk = c.build(state.BuildUpdate{ID: bid, State: api.BuildFailed, Error: "newer"})
	store.failing.Store(false)
	select {
	case <-tk:
	case <-time.After(5 * time.Second):
		t.Fatal("commit not retried")
	}
	if c.lastErr() != nil {
		t.Errorf("lastErr after recovery: %v", c.lastErr())
	}
	b, err := inner.Build(ctx, bid)
	if err != nil || b.State != api.BuildFailed || b.Error != "newer" {
		t.Errorf("build after retry = %+v, %v", b, err)
	}
}

// TestFailureLogOncePerRun: a run of failures (a database outage) is
// logged when it starts and when it ends, whatever the number of
// attempts; the attempts between are at debug level.
func TestFailureLogOncePerRun(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		want     []string // messages at info level and above
	}{
		{"no failure", 0, nil},
		{"one failure", 1, []string{"commit state failed; retrying (logged again once it succeeds)", "commit state succeeds again"}},
		{"an outage", 50, []string{"commit state failed; retrying (logged again once it succeeds)", "commit state succeeds again"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := logrus.New()
			var buf testenv.Buffer
			l.SetOutput(&buf)
			l.SetFormatter(&logrus.JSONFormatter{})
			f := failureLog{log: l, what: "commit state"}
			for range 2 { // two runs
				for range tc.failures {
					f.fail(errors.New("connection refused"))
				}
				f.ok()
				f.ok()
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var e struct{ Msg string }
				if line != "" && json.Unmarshal([]byte(line), &e) == nil {
					got = append(got, e.Msg)
				}
			}
			want := append(append([]string(nil), tc.want...), tc.want...)
			if !slices.Equal(got, want) {
				t.Errorf("logged %q, want %q", got, want)
			}
		})
	}
}
