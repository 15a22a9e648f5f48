package worker

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestGoPool(t *testing.T) {
	for _, tc := range []struct {
		name       string
		concurrent int // functions running at once
		rounds     int
		maxSpawned int
	}{
		{name: "one at a time reuses one goroutine", concurrent: 1, rounds: 200, maxSpawned: 2},
		{name: "four at a time", concurrent: 4, rounds: 50, maxSpawned: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			p := newGoPool()
			ran := 0
			var mu sync.Mutex
			for range tc.rounds {
				var wg sync.WaitGroup
				wg.Add(tc.concurrent)
				for range tc.concurrent {
					p.Go(func() {
						defer wg.Done()
						mu.Lock()
						ran++
						mu.Unlock()
					})
				}
				wg.Wait()
				// Let the goroutines get back to waiting for work (a
				// Go call racing with one on its way back starts
				// another goroutine, which is allowed but rare).
				time.Sleep(100 * time.Microsecond)
			}
			p.close()
			if ran != tc.concurrent*tc.rounds {
				t.Errorf("ran %d functions, want %d", ran, tc.concurrent*tc.rounds)
			}
			if p.spawned > tc.maxSpawned || p.spawned < tc.concurrent {
				t.Errorf("started %d goroutines for %d functions %d at a time, want %d to %d", p.spawned, ran, tc.concurrent, tc.concurrent, tc.maxSpawned)
			}
			for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines after close, %d before", runtime.NumGoroutine(), before)
				}
			}
		})
	}
}
