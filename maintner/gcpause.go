package maintner

import (
	"runtime/debug"
	"sync"
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
// The collector's setting belongs to the process, and a process may load
// several corpora at once ("tryd dev" runs maintnerd, the trybot and the
// dashboard, each with its own): the first load to start pauses it and
// the last to end restores it. This is the package's only process-wide
// state, because it mirrors the runtime's. Options.LoadWithGC opts a
// corpus out.
var gcPause struct {
	mu    sync.Mutex
	n     int // loads in progress that paused the collector
	saved int // the GC percent before the first of them
}

// pauseGC pauses the collector until the returned function is called.
func pauseGC() (resume func()) {
	gcPause.mu.Lock()
	if gcPause.n == 0 {
		gcPause.saved = debug.SetGCPercent(-1)
	}
	gcPause.n++
	gcPause.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			gcPause.mu.Lock()
			gcPause.n--
			if gcPause.n == 0 {
				debug.SetGCPercent(gcPause.saved)
			}
			gcPause.mu.Unlock()
		})
	}
}
