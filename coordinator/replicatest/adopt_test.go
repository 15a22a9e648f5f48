package replicatest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
)

// failedOver is a worker (w1) whose replica died while it ran an
// attempt: replica a dispatched the attempt (its log began there) and
// then lost the build's lease to holder (a replica that never runs:
// HoldBuild with until), and was closed; the worker registered with
// replica b listing the attempt.
type failedOver struct {
	a, b    *replica
	arts    artifacts.Store
	cl      *api.Client // w1's client of b
	worker  string      // w1's worker ID on b
	build   int64
	attempt string
	reg     *api.RegisterResponse
}

// failOver sets up failedOver with the build's lease held by holder
// for hold from the moment a loses it.
func failOver(t *testing.T, holder string, hold time.Duration) *failedOver {
	t.Helper()
	dsn, arts := sharedStores(t)
	a := newReplica(t, dsn, "replica-a", arts)
	b := newReplica(t, dsn, "replica-b", arts)
	wa, rega := a.register(t, "w1", inWorkerToken)
	sub, err := a.client(t, inClientToken).Submit(t.Context(), inGraph("failover"))
	if err != nil {
		t.Fatal(err)
	}
	resp := pollUntil(t, wa, api.PollRequest{WorkerID: rega, FreeSlots: 1}, "an assignment",
		func(r *api.PollResponse) bool { return len(r.Assignments) == 1 })
	id := resp.Assignments[0].AttemptID
	if _, err := wa.AppendLog(t.Context(), id, 0, []byte("start\n")); err != nil {
		t.Fatal(err)
	}
	// A gap in the log of an attempt a dispatched itself is refused.
	if _, err := wa.AppendLog(t.Context(), id, 100, []byte("gap\n")); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("log with a gap on the replica that dispatched it: %v, want ErrConflict", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if at, err := a.store.Attempt(t.Context(), id); err == nil && at.State == api.AttemptRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attempt was never stored")
		}
	}
	// The lease goes to holder (a's looks expired at now+1h), and a
	// goes away.
	ok, err := a.store.HoldBuild(t.Context(), sub.BuildID, stateOwner(holder, "http://127.0.0.1:1"), time.Now().Add(time.Hour), time.Now().Add(hold))
	if err != nil || !ok {
		t.Fatalf("hand the lease to %s = %v, %v", holder, ok, err)
	}
	a.c.Close()
	cl := b.client(t, inWorkerToken)
	reg, err := cl.Register(t.Context(), api.RegisterRequest{Name: "w1", Slots: 1, Labels: map[string]string{}, Running: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return &failedOver{a: a, b: b, arts: arts, cl: cl, worker: reg.WorkerID, build: sub.BuildID, attempt: id, reg: reg}
}

// poll polls b as w1, listing the attempt as running.
func (f *failedOver) poll(t *testing.T, results ...api.AttemptResult) *api.PollResponse {
	t.Helper()
	resp, err := f.cl.Poll(t.Context(), api.PollRequest{WorkerID: f.worker, Running: []string{f.attempt}, Results: results, WaitMS: 100})
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	return resp
}

// result is a successful result of the attempt, its output stored.
func (f *failedOver) result(t *testing.T) api.AttemptResult {
	t.Helper()
	out := []byte("output")
	sum := sha256.Sum256(out)
	digest := hex.EncodeToString(sum[:])
	if err := f.arts.Put(t.Context(), digest, bytes.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	zero := 0
	return api.AttemptResult{AttemptID: f.attempt, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: digest, OutputSize: int64(len(out))}
}

// waitClaimed polls (listing the attempt) until b holds the build (or
// it finished there: a result kept for the claim finishes it); no
// answer may cancel the attempt. b holds the lease in the store a
// moment before it has resumed the build: it counts the claim once it
// has.
func (f *failedOver) waitClaimed(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp := f.poll(t); slices.Contains(resp.Cancel, f.attempt) {
			t.Fatal("the attempt was cancelled while its build waited for the claim")
		}
		l, err := f.b.store.BuildLease(t.Context(), f.build, time.Now())
		if err == nil && (l.Held && l.Owner.ID == "replica-b" && f.b.counter(t, "tryd_coordinator_builds_claimed_total") > 0 || !l.Running) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica b did not claim the build within 10s: %+v, %v", l, err)
		}
	}
}

// log reads the attempt's log from b.
func (f *failedOver) log(t *testing.T) string {
	t.Helper()
	rc, err := f.b.client(t, inClientToken).AttemptLog(t.Context(), f.attempt, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	log, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(log)
}

// checkOneRun checks that the build succeeded with the attempt, its
// only one.
func (f *failedOver) checkOneRun(t *testing.T) {
	t.Helper()
	b, err := f.b.client(t, inClientToken).Wait(t.Context(), f.build, nil)
	if err != nil || b.State != api.BuildSucceeded {
		t.Fatalf("build = %+v, %v", b, err)
	}
	if at := b.Jobs[0].Attempts; len(at) != 1 || at[0].ID != f.attempt || at[0].State != api.AttemptSucceeded {
		t.Errorf("attempts %+v, want only %s, succeeded", at, f.attempt)
	}
}

// TestFailoverAdoptsRunningAttempt: a worker whose replica died
// registers with another one listing its running attempt, of a build
// the dead replica's lease still holds. The attempt is not cancelled:
// once the lease expires the new replica claims the build and adopts
// it, and the job runs once. Its log continues (the part the dead
// replica received is a notice), also what it sent before the claim:
// a job that ends before the claim keeps the end of its log. A result
// reported before the claim is answered "later", applied at the claim,
// and acknowledged when sent again.
func TestFailoverAdoptsRunningAttempt(t *testing.T) {
	tests := []struct {
		name string
		// early reports the result before the claim.
		early bool
	}{
		{"result after the claim", false},
		{"result before the claim", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The dead replica's lease expires before b could take
			// it for a live one (adoptLive, 900ms).
			f := failOver(t, "dead", 600*time.Millisecond)
			// Before the claim: stored, the dead replica's 6 bytes
			// standing as a notice.
			if n, err := f.cl.AppendLog(t.Context(), f.attempt, 6, []byte("end\n")); err != nil || n != 10 {
				t.Fatalf("log before the claim = %d, %v; want 10 bytes", n, err)
			}
			if !tt.early {
				f.waitClaimed(t)
				if n, err := f.cl.AppendLog(t.Context(), f.attempt, 10, []byte("more\n")); err != nil || n != 15 {
					t.Fatalf("log after the claim = %d, %v; want 15 bytes", n, err)
				}
				if log := f.log(t); len(log) != 15 || !strings.HasSuffix(log, "\nend\nmore\n") {
					t.Errorf("log = %q, want 6 bytes standing for the dead replica's part, then end, more", log)
				}
				// Only the part before the first chunk here stood
				// elsewhere: a later gap is the worker's error.
				if _, err := f.cl.AppendLog(t.Context(), f.attempt, 20, []byte("gap\n")); !errors.Is(err, api.ErrConflict) {
					t.Errorf("log with a gap after the first chunk here: %v, want ErrConflict", err)
				}
				if resp := f.poll(t, f.result(t)); len(resp.Rejected)+len(resp.ResultsLater) > 0 {
					t.Errorf("result after the claim: %+v", resp)
				}
				f.checkOneRun(t)
				return
			}
			resp := f.poll(t, f.result(t))
			if !slices.Equal(resp.ResultsLater, []string{f.attempt}) || len(resp.Rejected)+len(resp.Cancel) > 0 {
				t.Fatalf("result before the claim answered %+v, want it in results_later only", resp)
			}
			f.waitClaimed(t)
			f.checkOneRun(t) // applied at the claim
			if log := f.log(t); len(log) != 10 || !strings.HasSuffix(log, "\nend\n") {
				t.Errorf("log = %q, want 6 bytes standing for the dead replica's part, then its end", log)
			}
			// Sent again: acknowledged, not rejected.
			if resp := f.poll(t, f.result(t)); len(resp.Rejected)+len(resp.ResultsLater)+len(resp.Cancel) > 0 {
				t.Errorf("result sent again after the claim: %+v", resp)
			}
		})
	}
}

// TestFailoverAttemptOfHeldBuild: the attempt a worker lists when it
// registers is of a build another replica holds, and keeps holding: a
// live one (its lease outlives the time a dead replica's would have
// expired in), or one that claimed the build meanwhile. The replica
// cannot adopt it and cancels it (its worker is not connected to the
// holder); it claims nothing.
func TestFailoverAttemptOfHeldBuild(t *testing.T) {
	tests := []struct {
		name string
		// claimedBy, if set, takes the lease from the dead holder
		// after the registration.
		holder, claimedBy string
	}{
		{"live holder", "alive", ""},
		{"claimed by another replica", "dead", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := failOver(t, tt.holder, time.Hour)
			start := time.Now()
			if resp := f.poll(t); slices.Contains(resp.Cancel, f.attempt) {
				t.Fatal("the attempt was cancelled at once")
			}
			if tt.claimedBy != "" {
				ok, err := f.b.store.HoldBuild(t.Context(), f.build, stateOwner(tt.claimedBy, "http://127.0.0.1:1"), time.Now().Add(2*time.Hour), time.Now().Add(3*time.Hour))
				if err != nil || !ok {
					t.Fatalf("claim by %s = %v, %v", tt.claimedBy, ok, err)
				}
			}
			pollUntil(t, f.cl, api.PollRequest{WorkerID: f.worker, Running: []string{f.attempt}}, "a cancel",
				func(r *api.PollResponse) bool { return slices.Contains(r.Cancel, f.attempt) })
			t.Logf("cancelled %v after the registration", time.Since(start).Round(time.Millisecond))
			// Its worker stops it on a conflict.
			if _, err := f.cl.AppendLog(t.Context(), f.attempt, 6, []byte("end\n")); !errors.Is(err, api.ErrConflict) {
				t.Errorf("log after the cancel: %v, want ErrConflict", err)
			}
			if n := f.b.counter(t, "tryd_coordinator_builds_claimed_total"); n != 0 {
				t.Errorf("b claimed %v builds, want 0", n)
			}
		})
	}
}
