package coordinator

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// TestAttemptLogBeforeCommitSched checks read-your-writes for an
// attempt's log: once a worker's result was answered (early, before the
// commit) and the build shows the attempt, its log can be read even
// though no row of the attempt is durable yet; an unknown attempt is
// still not found.
func TestAttemptLogBeforeCommitSched(t *testing.T) {
	var gs *gatedStore
	e := newEnv(t, sqliteBackend, envOpts{mod: func(o *Options) {
		gs = &gatedStore{Store: o.Store}
		o.Store = gs
	}})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(`{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["true", "a"]}]}]}`, api.PriorityTry)
	// Nothing of the attempt is committed from here on.
	release := gs.hold()
	defer func() {
		if release != nil {
			release()
		}
	}()
	first := w.mustPoll(1, nil)
	if len(first.Assignments) != 1 {
		t.Fatalf("first poll: %+v", first.Assignments)
	}
	as := first.Assignments[0]
	if _, err := w.c.AppendLog(context.Background(), as.AttemptID, 0, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	zero := 0
	res := api.AttemptResult{AttemptID: as.AttemptID, State: api.AttemptFailed, ExitCode: &zero, Error: "exit status 1"}
	answered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := w.c.PollEarly(context.Background(), api.PollRequest{WorkerID: w.id, Running: nil, Results: []api.AttemptResult{res}, WaitMS: 1000},
			func(*api.PollResponse) { close(answered) })
		done <- err
	}()
	// The result is applied once the build shows it failed (the early
	// part has nothing to carry, so the answer waits for the commit).
	for deadline := time.Now().Add(10 * time.Second); e.build(sub.BuildID).State != api.BuildFailed; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the result was not applied")
		}
	}
	for _, tc := range []struct {
		name, id string
		want     string // "" wants ErrNotFound
	}{
		{name: "finished, not committed", id: as.AttemptID, want: "hello\n"},
		{name: "unknown", id: "0123456789abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := e.client.AttemptLog(context.Background(), tc.id, 0, false)
			if tc.want == "" {
				if !errors.Is(err, api.ErrNotFound) {
					t.Fatalf("AttemptLog: %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AttemptLog: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || string(got) != tc.want {
				t.Fatalf("log %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	release()
	release = nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
