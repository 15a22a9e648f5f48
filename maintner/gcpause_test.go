package maintner

import (
	"runtime/debug"
	"testing"
)

// TestPauseGC checks that overlapping loads pause the collector once and
// that the setting from before the first is back after the last, in
// either order of ending.
func TestPauseGC(t *testing.T) {
	gcPercent := func() int {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	orig := debug.SetGCPercent(73)
	defer debug.SetGCPercent(orig)
	for _, tc := range []struct {
		name        string
		firstEnds   bool
		resumeTwice bool
	}{
		{name: "first ends first", firstEnds: true},
		{name: "last ends first"},
		{name: "resume called twice", firstEnds: true, resumeTwice: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := pauseGC()
			if p := gcPercent(); p != -1 {
				t.Fatalf("during a load GC percent = %d, want -1", p)
			}
			b := pauseGC()
			if tc.firstEnds {
				a()
				if tc.resumeTwice {
					a()
				}
			} else {
				b()
			}
			if p := gcPercent(); p != -1 {
				t.Fatalf("while one load still runs GC percent = %d, want -1", p)
			}
			if tc.firstEnds {
				b()
			} else {
				a()
			}
			if p := gcPercent(); p != 73 {
				t.Fatalf("after the loads GC percent = %d, want 73", p)
			}
		})
	}
}
