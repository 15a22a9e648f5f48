package statetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// BenchCachedBuild writes a new build whose 10,000 jobs were all cached,
// with a graph of 1.5 MB, as a fully cached resubmission does: "set"
// passes the jobs to CreateBuild (one job set in a state.JobSetter, what
// the coordinator does with one), "rows" creates the build without them
// and commits them as rows afterwards, in the arbitrary order of the
// coordinator's group commit (what it does with other stores, and did
// before job sets). cpu-ms/op is this process's CPU time per build.
// newStore returns an empty store; serverCPU, if not nil, returns a
// function that reads the CPU time the store's server has used so far
// (false: unknown), reported as server-cpu-ms/op.
func BenchCachedBuild(b *testing.B, newStore func(b *testing.B) state.Store, serverCPU func(b *testing.B, s state.Store) func() (time.Duration, bool)) {
	const n = 10000
	now := time.Now()
	jobs := make([]state.Job, n)
	for i := range jobs {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		jobs[i] = state.Job{JobID: hex.EncodeToString(sum[:]), Name: "j" + strconv.Itoa(i), Seq: i, State: api.JobCached,
			OutputDigest: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Finished: now}
	}
	graph := bytes.Repeat([]byte("x"), 1500<<10)
	shuffled := slices.Clone(jobs)
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, k int) { shuffled[i], shuffled[k] = shuffled[k], shuffled[i] })
	for _, mode := range []string{"set", "rows"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			s := newStore(b)
			defer s.Close()
			var server func() (time.Duration, bool)
			var server0 time.Duration
			ok := false
			if serverCPU != nil {
				server = serverCPU(b, s)
				server0, ok = server()
			}
			cpu0 := ProcessCPU(b)
			b.ResetTimer()
			for range b.N {
				created := jobs
				if mode == "rows" {
					created = nil
				}
				bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: graph, State: api.BuildRunning, Created: now}, created)
				if err != nil {
					b.Fatal(err)
				}
				batch := &state.Batch{Builds: []state.BuildUpdate{{ID: bid, State: api.BuildSucceeded, Finished: now}}}
				if mode == "rows" {
					batch.Jobs = slices.Clone(shuffled)
					for i := range batch.Jobs {
						batch.Jobs[i].BuildID = bid
					}
				}
				if err := s.Commit(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((ProcessCPU(b)-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
			if ok {
				if server1, ok := server(); ok {
					b.ReportMetric(float64((server1-server0).Microseconds())/1e3/float64(b.N), "server-cpu-ms/op")
				}
			}
		})
	}
}

// ProcessCPU returns the CPU time (user+sys) this process has used.
func ProcessCPU(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
