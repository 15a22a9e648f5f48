package coordinator

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// BenchmarkClaimOffered measures a replica claiming back a build it
// offered (as half the builds of bench/coordinator-replicas.sh are:
// submitted while its workers had no spare slots, claimed once they
// had), on PostgreSQL: each op submits a build of 50 trivial cacheable
// jobs of its own to a replica without workers (so it is offered),
// claims it (claimOne, the claim loop's step) and cancels it. Besides
// ns/op it reports the process's CPU time (user+sys) and allocations of
// the claims alone (claim-cpu-us/op, claim-allocs/op), and of the
// whole op (cpu-us/op); the server's CPU is left out. Graphs are
// decoded before the timer. The cases:
//
//   - kept: the replica kept what it offered and resumes the build from
//     it;
//   - fresh: the store tells the claim fresh but the replica did not
//     keep the build (as when it claims another replica's offer): it
//     reads the build back, but no attempts;
//   - store: the baseline, claims as before fresh claims: every claimed
//     build is read back from the store.
func BenchmarkClaimOffered(b *testing.B) {
	for _, mode := range []string{"kept", "fresh", "store"} {
		b.Run(mode, func(b *testing.B) { benchmarkClaimOffered(b, mode) })
	}
}

func benchmarkClaimOffered(b *testing.B, mode string) {
	const jobs = 50
	e := newEnv(b, postgresBackend, envOpts{mod: func(o *Options) {
		// One replica, without workers: its URL is never called, and
		// its claim loop never claims (no spare slots).
		o.Replica = &ReplicaOptions{ID: "r1", URL: "http://127.0.0.1:1", LeaseTTL: time.Minute}
	}})
	if mode == "store" {
		e.c.rep.freshClaims = nil
	}
	ctx := context.Background()
	reqs := make([]api.SubmitRequest, b.N)
	for i := range reqs {
		g, err := graph.Decode(strings.NewReader(benchGraph(jobs, false, fmt.Sprint(i, "-"))))
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = api.SubmitRequest{Graph: *g}
	}
	var claimCPU, allCPU time.Duration
	var claimAllocs uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for i := range b.N {
		cpu0 := processCPU(b)
		sub, err := e.c.Submit(ctx, reqs[i])
		if err != nil {
			b.Fatal(err)
		}
		if mode == "fresh" {
			e.c.rep.offered.take(sub.BuildID)
		}
		runtime.ReadMemStats(&ms)
		allocs0 := ms.Mallocs
		cpu1 := processCPU(b)
		n, err := e.c.claimOne()
		cpu2 := processCPU(b)
		runtime.ReadMemStats(&ms)
		claimAllocs += ms.Mallocs - allocs0
		if err != nil || n != 1 {
			b.Fatalf("claimed %d builds, %v; want 1", n, err)
		}
		e.c.mu.Lock()
		bd := e.c.builds[sub.BuildID]
		if bd == nil {
			e.c.mu.Unlock()
			b.Fatalf("build %d not resumed", sub.BuildID)
		}
		e.c.cancelBuild(bd, e.c.clock.Now())
		e.c.mu.Unlock()
		claimCPU += cpu2 - cpu1
		allCPU += processCPU(b) - cpu0
	}
	if want, got := map[string]int{"kept": b.N}[mode], int(count(e.c.rep.claimedOffered)); got != want {
		b.Fatalf("%d of %d builds resumed from memory, want %d", got, b.N, want)
	}
	b.ReportMetric(float64(claimCPU.Microseconds())/float64(b.N), "claim-cpu-us/op")
	b.ReportMetric(float64(claimAllocs)/float64(b.N), "claim-allocs/op")
	b.ReportMetric(float64(allCPU.Microseconds())/float64(b.N), "cpu-us/op")
}
