package coordinator

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
)

// statCounter is the real artifact store, counting Stats.
type statCounter struct {
	artifacts.Store
	n atomic.Int64
}

func (s *statCounter) Stat(ctx context.Context, digest string) (int64, error) {
	s.n.Add(1)
	return s.Store.Stat(ctx, digest)
}

// sameOutputs are jobs with one output (their IDs differ by a command
// the test worker does not run).
const sameOutputs = `{"jobs": [
	{"name": "a", "source_mode": "none", "commands": [{"argv": ["true", "a"]}, {"write_file": {"path": "o", "content": "same"}}]},
	{"name": "b", "source_mode": "none", "commands": [{"argv": ["true", "b"]}, {"write_file": {"path": "o", "content": "same"}}]},
	{"name": "c", "source_mode": "none", "commands": [{"argv": ["true", "c"]}, {"write_file": {"path": "o", "content": "same"}}]},
	{"name": "d", "source_mode": "none", "commands": [{"argv": ["true", "d"]}, {"write_file": {"path": "o", "content": "same"}}]}]}`

// TestOutputStatSkipped: results naming an output that running builds
// pin, and that the store confirmed while pinned, need no Stat for
// outputCheckTTL; once nothing pins it, a result naming it is checked
// again (here: it was deleted, and the result is refused).
func TestOutputStatSkipped(t *testing.T) { forEachBackend(t, testOutputStatSkipped) }

func testOutputStatSkipped(t *testing.T, be backend) {
	clock := newFakeClock()
	var arts *statCounter
	e := newEnv(t, be, envOpts{clock: clock, mod: func(o *Options) {
		o.PollTimeout = time.Hour
		arts = &statCounter{Store: o.Artifacts}
		o.Artifacts = arts
	}})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(sameOutputs, api.PriorityTry)
	resp := w.mustPoll(4, nil)
	if len(resp.Assignments) != 4 {
		t.Fatalf("%d assignments, want 4", len(resp.Assignments))
	}
	var results []api.AttemptResult
	for _, as := range resp.Assignments {
		results = append(results, w.output(as))
	}
	digest := results[0].OutputDigest
	steps := []struct {
		name    string
		advance time.Duration
		stats   int64 // Stats the result costs
	}{
		{"first: nothing pins it", 0, 1},
		{"pinned: confirmed while pinned", 0, 1},
		{"confirmed and pinned", 0, 0},
		{"confirmation too old", outputCheckTTL, 1},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		before := arts.n.Load()
		var running []string
		for _, r := range results[i+1:] {
			running = append(running, r.AttemptID)
		}
		if resp := w.mustPoll(0, running, results[i]); len(resp.Rejected) > 0 {
			t.Fatalf("%s: result rejected", st.name)
		}
		if got := arts.n.Load() - before; got != st.stats {
			t.Errorf("%s: %d Stats, want %d", st.name, got, st.stats)
		}
	}
	if b := e.build(sub.BuildID); b.State != api.BuildSucceeded {
		t.Fatalf("build %s", b.State)
	}

	// Nothing pins the output any more: it may go, and a result naming
	// it then must not be taken on trust.
	if err := arts.Store.Delete(context.Background(), digest); err != nil {
		t.Fatal(err)
	}
	sub2 := e.submit(`{"jobs": [{"name": "e", "source_mode": "none", "commands": [{"argv": ["true", "e"]}, {"write_file": {"path": "o", "content": "same"}}]}]}`, api.PriorityTry)
	resp = w.mustPoll(1, nil)
	if len(resp.Assignments) != 1 {
		t.Fatalf("%d assignments, want 1", len(resp.Assignments))
	}
	zero := 0
	w.mustPoll(0, nil, api.AttemptResult{AttemptID: resp.Assignments[0].AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: digest, OutputSize: 1})
	j := jobByName(e.build(sub2.BuildID), "e")
	if len(j.Attempts) == 0 || j.Attempts[0].State != api.AttemptError || !strings.Contains(j.Attempts[0].Error, "not in the artifact store") {
		t.Errorf("result naming a deleted output: job %+v", j)
	}
}
