package heapfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const floor = 64 << 20
	for _, tc := range []struct {
		name string
		live uint64
		want int
	}{
		{"nothing live yet", 0, 100},
		{"almost empty heap is capped", 1 << 10, maxPercent},
		{"1 MiB live collects at the floor", 1 << 20, 6300},
		{"16 MiB live", 16 << 20, 300},
		{"half the floor is the default", 32 << 20, 100},
		{"above the floor is the default", 1 << 30, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percent(tc.live, floor); got != tc.want {
				t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, uint64(floor), got, tc.want)
			}
		})
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRun checks that Run raises GOGC after a collection of this test's
// small heap, and restores the setting when it stops.
func TestRun(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100)) // whatever GOGC the environment set
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, 1<<30)
		close(done)
	}()
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() <= 100 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("GOGC still %d %v after a collection", gogc(), 10*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if got := gogc(); got != 100 {
		t.Errorf("GOGC = %d after Run stopped, want 100 restored", got)
	}
}
