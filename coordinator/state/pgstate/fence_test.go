package pgstate

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// TestCommitHeld: a fenced commit writes the records of the builds its
// replica still owns, skips (and names) those another replica claimed
// after the lease expired, and writes records of other kinds; an
// unfenced Commit writes everything.
func TestCommitHeld(t *testing.T) {
	ctx := context.Background()
	s := open(t, sharedPG.Server(t).NewDatabase(t))
	a, b := state.Owner{ID: "a", URL: "http://a"}, state.Owner{ID: "b", URL: "http://b"}
	now := time.Unix(1000, 0)
	var mine, lost int64
	for _, id := range []*int64{&mine, &lost} {
		var err error
		*id, err = s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.HoldBuild(ctx, *id, a, now, now.Add(time.Second)); !ok || err != nil {
			t.Fatalf("HoldBuild(%d) = %v, %v", *id, ok, err)
		}
	}
	// a's lease of lost expires unrenewed, and b claims it; a's lease of
	// mine is still valid.
	later := now.Add(2 * time.Second)
	if _, err := s.pool.Exec(ctx, `UPDATE builds SET lease_expires=$1 WHERE id=$2`, later.Add(time.Hour).UnixNano(), mine); err != nil {
		t.Fatal(err)
	}
	ids, err := s.ClaimBuilds(ctx, b, 10, later, later.Add(time.Second))
	if err != nil || !slices.Equal(ids, []int64{lost}) {
		t.Fatalf("b claimed %v, %v; want [%d]", ids, err, lost)
	}

	records := func(build int64, tag string) state.Batch {
		return state.Batch{
			Builds:   []state.BuildUpdate{{ID: build, State: api.BuildSucceeded, Finished: later}},
			Jobs:     []state.Job{{BuildID: build, JobID: "j" + tag, Name: "j", State: api.JobSucceeded}},
			Attempts: []state.Attempt{{ID: "at" + tag, BuildID: build, JobID: "j" + tag, Worker: "w", State: api.AttemptSucceeded, Started: now}},
			Results:  []state.Result{{JobID: "j" + tag, OutputDigest: "d", AttemptID: "at" + tag, BuildID: build, Finished: later}},
		}
	}
	batch := records(mine, "1")
	other := records(lost, "2")
	batch.Builds = append(batch.Builds, other.Builds...)
	batch.Jobs = append(batch.Jobs, other.Jobs...)
	batch.Attempts = append(batch.Attempts, other.Attempts...)
	batch.Results = append(batch.Results, other.Results...)
	batch.Workers = []state.Worker{{Name: "w", TokenHash: "h", Slots: 1}}
	foreign, err := s.CommitHeld(ctx, "a", &batch)
	if err != nil || !slices.Equal(foreign, []int64{lost}) {
		t.Fatalf("CommitHeld = %v, %v; want foreign [%d]", foreign, err, lost)
	}

	tests := []struct {
		name  string
		build int64
		tag   string
		want  bool
	}{
		{"owned build", mine, "1", true},
		{"build another replica took", lost, "2", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sb, err := s.Build(ctx, tc.build)
			if err != nil {
				t.Fatal(err)
			}
			jobs, _ := s.Jobs(ctx, tc.build)
			atts, _ := s.Attempts(ctx, tc.build)
			rs, _ := s.Results(ctx, []string{"j" + tc.tag})
			got := []bool{sb.State == api.BuildSucceeded, len(jobs) == 1, len(atts) == 1, len(rs) == 1}
			for i, what := range []string{"build update", "job", "attempt", "result"} {
				if got[i] != tc.want {
					t.Errorf("%s written = %v, want %v", what, got[i], tc.want)
				}
			}
		})
	}
	ws, err := s.Workers(ctx)
	if err != nil || len(ws) != 1 {
		t.Errorf("workers = %v, %v; want the one of the batch", ws, err)
	}

	// Unfenced, the same records are written.
	if err := s.Commit(ctx, &other); err != nil {
		t.Fatal(err)
	}
	if atts, _ := s.Attempts(ctx, lost); len(atts) != 1 {
		t.Errorf("unfenced Commit wrote %d attempts, want 1", len(atts))
	}
	if _, err := s.CommitHeld(ctx, "", &other); err == nil {
		t.Error("CommitHeld with an empty owner succeeded")
	}
}

// BenchmarkCommitHeldJobs is BenchmarkCommitJobs with the commits a
// replica makes, fenced by its leases.
func BenchmarkCommitHeldJobs(b *testing.B) { benchCommitJobs(b, "r1") }

// TestHoldBuildFenced: HoldBuild takes a build nobody holds (never
// held, released, or expired), not one held live, even by its own
// replica; like a claim, it waits for the fence of a commit in flight of
// the build's last holder, so that it never takes the build in the
// middle of that commit; and a claim racing holds of new builds never
// takes one a hold took, nor the reverse.
func TestHoldBuildFenced(t *testing.T) {
	ctx := context.Background()
	s := open(t, sharedPG.Server(t).NewDatabase(t))
	a, b := state.Owner{ID: "a", URL: "http://a"}, state.Owner{ID: "b", URL: "http://b"}
	t0 := time.Unix(1_700_000_000, 0)
	later := t0.Add(time.Hour)
	newBuild := func() int64 {
		t.Helper()
		id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	hold := func(id int64, o state.Owner, now time.Time) bool {
		t.Helper()
		ok, err := s.HoldBuild(ctx, id, o, now, now.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	tests := []struct {
		name  string
		setup func(id int64) // before b holds the build at later
		want  bool
	}{
		{"never held", func(int64) {}, true},
		{"held by another", func(id int64) { hold(id, a, later) }, false},
		{"held by itself", func(id int64) { hold(id, b, later) }, false},
		{"another's lease expired", func(id int64) { hold(id, a, t0) }, true},
		{"released", func(id int64) {
			hold(id, a, later)
			if err := s.ReleaseBuilds(ctx, "a", []int64{id}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"finished", func(id int64) {
			if err := s.Commit(ctx, &state.Batch{Builds: []state.BuildUpdate{{ID: id, State: api.BuildSucceeded, Finished: t0}}}); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := newBuild()
			tc.setup(id)
			if got := hold(id, b, later); got != tc.want {
				t.Errorf("HoldBuild = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("waits for a fenced commit", func(t *testing.T) {
		id := newBuild()
		hold(id, a, t0) // expires at t0+1s
		// a's fenced commit in flight: its fence taken, its writes to
		// come.
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, fenceSQL, []int64{id}); err != nil {
			t.Fatal(err)
		}
		held := make(chan bool, 1)
		go func() {
			ok, err := s.HoldBuild(ctx, id, b, later, later.Add(time.Second))
			if err != nil {
				t.Error(err)
			}
			held <- ok
		}()
		select {
		case ok := <-held:
			t.Fatalf("HoldBuild = %v during the commit, want it to wait", ok)
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := tx.Exec(ctx, `UPDATE builds SET error='a was here' WHERE id=$1 AND owner='a'`, id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if ok := <-held; !ok {
			t.Error("HoldBuild after the commit = false, want true")
		}
		if sb, err := s.Build(ctx, id); err != nil || sb.Error != "a was here" {
			t.Errorf("build = %+v, %v; want a's commit in", sb, err)
		}
	})

	t.Run("racing claims", func(t *testing.T) {
		// Finish what the cases left running, so that claims see only
		// the new builds.
		ids, err := s.UnfinishedBuilds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var done state.Batch
		for _, id := range ids {
			done.Builds = append(done.Builds, state.BuildUpdate{ID: id, State: api.BuildCancelled, Finished: t0})
		}
		if err := s.Commit(ctx, &done); err != nil {
			t.Fatal(err)
		}
		const n = 100
		var mu sync.Mutex
		taken := map[int64][]string{}
		var wg sync.WaitGroup
		created := make(chan int64, n)
		wg.Add(2)
		go func() { // a creates builds and holds them
			defer wg.Done()
			defer close(created)
			for range n {
				id, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				created <- id
				ok, err := s.HoldBuild(ctx, id, a, later, later.Add(time.Hour))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					taken[id] = append(taken[id], "a")
					mu.Unlock()
				}
			}
		}()
		go func() { // b claims whatever is unheld
			defer wg.Done()
			for open := true; open; {
				_, open = <-created
				got, err := s.ClaimBuilds(ctx, b, 10, later, later.Add(time.Hour))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, id := range got {
					taken[id] = append(taken[id], "b")
				}
				mu.Unlock()
			}
		}()
		wg.Wait()
		if len(taken) != n {
			t.Errorf("%d builds taken, want %d", len(taken), n)
		}
		for id, by := range taken {
			if len(by) != 1 {
				t.Errorf("build %d taken by %v", id, by)
			}
		}
	})
}
