package maintner

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"

	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// Loading pauses the garbage collector.
//
// Almost everything a load allocates stays live (it is the corpus), so
// the collections that run while the heap grows find little garbage:
// with the default GOGC each one marks the whole corpus built so far,
// and together they cost about a quarter of a load's CPU time. With the
// collector paused for the length of the load, the heap ends at the
// load's total allocation, which the load keeps close to what the corpus
// holds (records are decoded into recycled buffers, text stays in the
// log); with GOGC=100 the heap may anyway grow to twice what was live at
// the last collection. The collector is resumed, with the setting it had
// before, as soon as the load ends, and its first cycle frees what the
// load left over.
//
// A paused collector must not mean unbounded memory: the process may do
// other work meanwhile ("tryd dev" runs every component in one process)
// and a log may be far larger than usual. So the pause also sets a soft
// memory limit (debug.SetMemoryLimit) of what the process used when the
// load began plus loadBudget for the load; the runtime collects anyway
// as the process nears it. A normal load allocates well under its
// budget and never reaches it. A lower limit set by the operator
// (GOMEMLIMIT) is kept.
//
// The collector's settings belong to the process, and a process may
// load several corpora at once ("tryd dev" runs maintnerd, the trybot
// and the dashboard, each with its own): the first load to start pauses
// it, each load adds its budget to the limit, and the last to end
// restores both settings. This is the package's only process-wide state,
// because it mirrors the runtime's. Options.LoadWithGC opts a corpus
// out.
var gcPause struct {
	mu         sync.Mutex
	n          int   // loads in progress that paused the collector
	saved      int   // the GC percent before the first of them
	savedLimit int64 // the memory limit before the first of them
	limit      int64 // the limit while they run, before clamping to savedLimit
}

// loadBudget is the memory a load of segments segments may allocate
// before the collector runs in spite of the pause: twice the log's size
// (a load allocates about three quarters of it) plus room for small
// logs.
func loadBudget(segments int) int64 {
	return 2*int64(segments)*mutlog.DefaultMaxSegmentSize + 256<<20
}

// pauseGC pauses the collector until the returned function is called,
// for a load that may allocate up to budget bytes.
func pauseGC(budget int64) (resume func()) {
	gcPause.mu.Lock()
	if gcPause.n == 0 {
		gcPause.saved = debug.SetGCPercent(-1)
		gcPause.savedLimit = debug.SetMemoryLimit(-1)
		gcPause.limit = processMemory()
	}
	gcPause.n++
	gcPause.limit = addClamped(gcPause.limit, budget)
	debug.SetMemoryLimit(min(gcPause.limit, gcPause.savedLimit))
	gcPause.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			gcPause.mu.Lock()
			gcPause.n--
			if gcPause.n == 0 {
				debug.SetGCPercent(gcPause.saved)
				debug.SetMemoryLimit(gcPause.savedLimit)
			}
			gcPause.mu.Unlock()
		})
	}
}

// processMemory is the memory the Go runtime holds from the system, the
// figure the memory limit is compared with.
func processMemory() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(min(s[0].Value.Uint64(), math.MaxInt64))
}

// addClamped returns a+b (both non-negative) without overflowing.
func addClamped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
