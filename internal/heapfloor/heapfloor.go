// Package heapfloor keeps the Go garbage collector's heap goal above a
// floor, for processes whose live heap is small but whose allocation
// rate is high.
//
// With the runtime's default (GOGC=100) a collection starts when the heap
// has grown to twice what the last one left live, and at 4 MB at least.
// tryd's servers keep a few MB live while they allocate tens of KiB per
// job, webhook or request, so they collected every few hundred jobs, and
// the collector was a fifth to a quarter of a busy coordinator's CPU
// (bench/coordinator-replicas.sh; most of it is each cycle's fixed work,
// not marking). Run sets GOGC, after each collection it observes, so that
// the next one comes when the heap reaches max(floor, 2 x live): a
// process with little live data grows to the floor before collecting,
// one with more behaves as with GOGC=100. GOMEMLIMIT, if set, still
// bounds the heap (the runtime collects earlier to stay under it).
package heapfloor

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultFloor is the heap goal floor tryd's processes use: small next to
// the memory a server has, large next to what they keep live.
const DefaultFloor = 64 << 20

// interval is how often Run looks for a finished collection. The live
// heap changes slowly; until the first look the runtime's default holds.
const interval = time.Second

// maxPercent bounds GOGC for an almost empty heap.
const maxPercent = 10000

// Percent returns the GOGC that makes the heap goal max(floor, 2 x live)
// for a live heap of live bytes.
func Percent(live, floor uint64) int {
	if live == 0 || live >= floor/2 {
		return 100
	}
	return int(min(maxPercent, (floor-live)*100/live))
}

// Run adjusts GOGC after every collection until ctx ends, then restores
// the setting it found. Callers skip it when the environment sets GOGC:
// an operator's choice stands.
func Run(ctx context.Context, floor uint64) {
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}
	metrics.Read(samples)
	if samples[2].Value.Kind() != metrics.KindUint64 {
		return
	}
	orig := int(samples[2].Value.Uint64())
	defer debug.SetGCPercent(orig)
	var cycles uint64
	set := orig
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(samples)
		if samples[0].Value.Kind() == metrics.KindUint64 && samples[1].Value.Kind() == metrics.KindUint64 {
			if n := samples[0].Value.Uint64(); n != cycles {
				cycles = n
				// Only a change worth a tenth: setting GOGC takes the
				// heap lock and recomputes the pacer.
				if p := Percent(samples[1].Value.Uint64(), floor); p*10 < set*9 || p*10 > set*11 {
					debug.SetGCPercent(p)
					set = p
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
