package maintner

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/tryd-ci/tryd/maintner/mutlog"
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
			a := pauseGC(1 << 30)
			if p := gcPercent(); p != -1 {
				t.Fatalf("during a load GC percent = %d, want -1", p)
			}
			b := pauseGC(1 << 30)
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

// TestPauseGCMemoryLimit checks that a paused collector still has a
// memory limit to collect at, that an operator's lower limit is kept, and
// that the limit from before the load is back afterwards.
func TestPauseGCMemoryLimit(t *testing.T) {
	origLimit := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(origLimit)
	for _, tc := range []struct {
		name     string
		operator int64 // limit before the load
		budget   int64
		want     func(during int64) bool
		desc     string
	}{
		{
			name:     "no operator limit",
			operator: math.MaxInt64,
			budget:   64 << 20,
			want: func(during int64) bool {
				return during >= 64<<20 && during < math.MaxInt64
			},
			desc: "a finite limit of at least the budget",
		},
		{
			name:     "operator limit is lower",
			operator: 32 << 20,
			budget:   1 << 40,
			want:     func(during int64) bool { return during == 32<<20 },
			desc:     "the operator's 32 MiB",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(tc.operator)
			resume := pauseGC(tc.budget)
			during := debug.SetMemoryLimit(-1)
			resume()
			if !tc.want(during) {
				t.Errorf("memory limit during the load = %d, want %s", during, tc.desc)
			}
			if after := debug.SetMemoryLimit(-1); after != tc.operator {
				t.Errorf("memory limit after the load = %d, want %d", after, tc.operator)
			}
		})
	}
}

// TestLoadBudget checks that a load's budget grows with the log, so that
// a large log is not collected in the middle of its load.
func TestLoadBudget(t *testing.T) {
	if small, large := loadBudget(1), loadBudget(64); large <= small || large < 64*mutlog.DefaultMaxSegmentSize {
		t.Errorf("loadBudget(1) = %d, loadBudget(64) = %d: want a budget larger than a 64-segment log", small, large)
	}
}
