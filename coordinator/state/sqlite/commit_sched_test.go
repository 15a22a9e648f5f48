package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
	"github.com/tryd-ci/tryd/coordinator/state/statetest"
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

// BenchmarkCachedBuild: see statetest.BenchCachedBuild. A build with
// its graph and a set costs ~6 ms of CPU, with 10,000 rows ~45 ms.
func BenchmarkCachedBuild(b *testing.B) {
	statetest.BenchCachedBuild(b, func(b *testing.B) state.Store {
		s, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "state.db")})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}, nil)
}
