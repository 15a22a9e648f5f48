package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// BenchmarkCommitJobs commits batches of k finished jobs (a job row, an
// attempt row and a result row each), as the coordinator's group commit
// writes them while trivial jobs run; ns/op is per job. Measure CPU with
// /usr/bin/time or -cpuprofile: on a shared machine the wall time
// swings.
func BenchmarkCommitJobs(b *testing.B) {
	for _, k := range []int{1, 3, 8, 32} {
		b.Run("batch="+strconv.Itoa(k), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, Options{Path: filepath.Join(b.TempDir(), "state.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			jobs := make([]state.Job, b.N)
			for i := range jobs {
				jobs[i] = state.Job{JobID: fmt.Sprintf("%064x", i), Name: "j" + strconv.Itoa(i), Seq: i, State: api.JobWaiting}
			}
			bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, jobs)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			zero := 0
			b.ResetTimer()
			for i := 0; i < b.N; i += k {
				batch := &state.Batch{}
				for j := i; j < min(i+k, b.N); j++ {
					job := jobs[j]
					job.BuildID, job.State, job.Worker, job.OutputDigest, job.ExitCode, job.Started, job.Finished = bid, api.JobSucceeded, "w1", "sha256:e3b0", &zero, now, now
					id := fmt.Sprintf("a%015x", j)
					batch.Jobs = append(batch.Jobs, job)
					batch.Attempts = append(batch.Attempts, state.Attempt{ID: id, BuildID: bid, JobID: job.JobID, Worker: "w1", State: api.AttemptSucceeded, Started: now, Finished: &now, ExitCode: &zero, OutputDigest: "sha256:e3b0"})
					batch.Results = append(batch.Results, state.Result{JobID: job.JobID, OutputDigest: "sha256:e3b0", AttemptID: id, BuildID: bid, Finished: now})
				}
				if err := s.Commit(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCachedBuild writes a new build whose 10,000 jobs were all
// cached, with a graph of 1.5 MB, as a fully cached resubmission does:
// "set" passes the jobs to CreateBuild (one job set, what the coordinator
// does), "rows" creates the build without them and commits them as rows
// afterwards, in the arbitrary order of the coordinator's group commit
// (what it did before job sets). cpu-ms/op is the process's CPU time per
// build.
func BenchmarkCachedBuild(b *testing.B) {
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
			s, err := Open(ctx, Options{Path: filepath.Join(b.TempDir(), "state.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				cpu0 := processCPU(b)
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
				cpu += processCPU(b) - cpu0
			}
			b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/op")
		})
	}
}

// processCPU returns the CPU time (user+sys) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
