package logsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// ref is what a consumer keeps of a delivered record: where its payload
// lies in the cache, in which generation, and (for the test) what it was.
type ref struct {
	gen uint32
	seg int
	off int64
	p   string
}

// refOf makes the ref of a record delivered at pos.
func refOf(r *CacheReader, pos mutlog.Position, p []byte) ref {
	return ref{gen: r.Generation(), seg: pos.Segment, off: pos.Offset + int64(reclog.HeaderLen(pos.Offset, len(p))), p: string(p)}
}

func (x ref) read(r *CacheReader) (string, error) {
	b := make([]byte, len(x.p))
	err := r.ReadAt(b, x.gen, x.seg, x.off)
	return string(b), err
}

// runCollect runs f in the background, keeping the refs of the records
// it delivers, each read back while it is delivered. wait(n) waits
// until n records were delivered (and fails the test if any read back
// wrong); wait(-1) waits for Run to return and returns its error. The
// refs are in *refs once wait returned.
func runCollect(ctx context.Context, f *Follower, r *CacheReader) (refs *[]ref, wait func(n int) error) {
	refs = new([]ref)
	var mu sync.Mutex
	var bad error
	delivered := make(chan struct{}, 10000)
	errc := make(chan error, 1)
	go func() {
		errc <- f.Run(ctx, mutlog.Position{}, func(pos mutlog.Position, p []byte) error {
			x := refOf(r, pos, p)
			got, err := x.read(r)
			mu.Lock()
			if (err != nil || got != x.p) && bad == nil {
				bad = fmt.Errorf("record at %v read back while delivered: %q, %v", pos, got, err)
			}
			*refs = append(*refs, x)
			mu.Unlock()
			delivered <- struct{}{}
			return nil
		})
	}()
	seen := 0
	var runErr error
	done := false
	wait = func(n int) error {
		timeout := time.After(20 * time.Second)
		for (n < 0 && !done) || seen < n {
			select {
			case <-delivered:
				seen++
			case runErr = <-errc:
				done = true
				if n >= 0 {
					return fmt.Errorf("Run returned %v after %d of %d records", runErr, seen, n)
				}
			case <-timeout:
				return fmt.Errorf("%d of %d records delivered in 20s", seen, n)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if bad != nil {
			return bad
		}
		return runErr
	}
	return refs, wait
}

// collect runs f until it has delivered n records and returns their refs.
func collect(t *testing.T, f *Follower, r *CacheReader, n int) []ref {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refs, wait := runCollect(ctx, f, r)
	if err := wait(n); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := wait(-1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	return *refs
}

// TestCacheReaderAcrossSeals follows a log whose segments are sealed
// while the follower tails it (its growing cache file is renamed each
// time) and reads every delivered record back through a reader, at
// delivery and at the end.
func TestCacheReaderAcrossSeals(t *testing.T) {
	l := newLog(t, 512)
	appendN(t, l, "a", 30)
	srv := serve(t, l, time.Minute)
	f := newFollower(t, srv.URL+"/logs", t.TempDir())
	r := f.Reader()
	defer r.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refs, wait := runCollect(ctx, f, r)
	for round := range 8 {
		wait(30 + round*15)
		appendN(t, l, fmt.Sprintf("r%d", round), 15)
	}
	wait(30 + 8*15)
	cancel()
	if err := wait(-1); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	want := logRecords(t, l)
	if len(*refs) != len(want) {
		t.Fatalf("delivered %d records, log has %d", len(*refs), len(want))
	}
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("log has %d segments, want several seals", len(segs))
	}
	// Reading back after the seals, from a closed follower too.
	f.Close()
	for i, x := range *refs {
		if got, err := x.read(r); err != nil || got != want[i].p {
			t.Fatalf("record %d at %d:%d reads %q, %v; want %q", i, x.seg, x.off, got, err, want[i].p)
		}
	}
	// Sealed segments are read from mappings, the growing one from its
	// file.
	r.c.mu.RLock()
	for i, s := range r.c.segs {
		sealed := i < len(segs)-1
		if runtime.GOOS == "linux" && sealed != (s.m != nil) {
			t.Errorf("segment %d: sealed %v, mapped %v", i, sealed, s.m != nil)
		}
		if s.size != segs[i].Size {
			t.Errorf("segment %d: %d bytes verified, log has %d", i, s.size, segs[i].Size)
		}
	}
	r.c.mu.RUnlock()

	last := (*refs)[len(*refs)-1]
	for _, tc := range []struct {
		name string
		x    ref
		want error
	}{
		{"past the verified end", ref{gen: last.gen, seg: last.seg, off: last.off, p: last.p + "xx"}, ErrNotCached},
		{"unknown segment", ref{seg: len(segs), p: "x"}, ErrNotCached},
		{"negative segment", ref{seg: -1, p: "x"}, ErrNotCached},
		{"negative offset", ref{seg: 0, off: -1, p: "x"}, ErrNotCached},
		{"offset overflowing", ref{seg: 0, off: 1<<63 - 1, p: "x"}, ErrNotCached},
		{"future generation", ref{gen: last.gen + 1, seg: 0, p: "x"}, ErrNotCached},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.x.read(r); !errors.Is(err, tc.want) {
				t.Errorf("ReadAt: %v, want %v", err, tc.want)
			}
		})
	}
	r.Close()
	if _, err := (*refs)[0].read(r); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want os.ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if r.c.segs != nil {
		t.Error("files still open after the follower and its reader closed")
	}
}

// TestCacheReaderStale checks that references into bytes the follower
// dropped fail with ErrStale, never read other bytes, while references
// before the point where the cache changed still read.
func TestCacheReaderStale(t *testing.T) {
	fork := func(t *testing.T, src *swapSource) *mutlog.Log {
		l := newLog(t, 1024)
		appendN(t, l, "h", 45)
		appendN(t, l, "fork", 10)
		src.p.Store(l)
		return l
	}
	for _, tc := range []struct {
		name string
		// change alters what the follower sees after it delivered the
		// first log, returning the log it should then deliver.
		change func(t *testing.T, src *swapSource, dir string) *mutlog.Log
		// duringRun: the change happens while Run tails, which
		// returns a *DivergedError; else between two runs, and the
		// second refetches without error.
		duringRun bool
	}{
		{"server history diverged during a run", func(t *testing.T, src *swapSource, _ string) *mutlog.Log {
			return fork(t, src)
		}, true},
		{"server history changed between runs", func(t *testing.T, src *swapSource, _ string) *mutlog.Log {
			return fork(t, src)
		}, false},
		{"cached sealed segment corrupt", func(t *testing.T, src *swapSource, dir string) *mutlog.Log {
			m, _ := filepath.Glob(filepath.Join(dir, "0001.*.mutlog"))
			if len(m) != 1 {
				t.Fatalf("cache has no sealed segment 1: %q", m)
			}
			flip(t, m[0], 30)
			return src.p.Load()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := newLog(t, 1024)
			appendN(t, first, "h", 60)
			src := &swapSource{}
			src.p.Store(first)
			srv := serve(t, src, time.Minute)
			dir := t.TempDir()
			f := newFollower(t, srv.URL+"/logs", dir)
			r := f.Reader()
			defer r.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			refs, wait := runCollect(ctx, f, r)
			if err := wait(60); err != nil {
				t.Fatal(err)
			}
			gen := r.Generation()
			if !tc.duringRun {
				cancel()
				if err := wait(-1); !errors.Is(err, context.Canceled) {
					t.Fatal(err)
				}
			}
			want := logRecords(t, tc.change(t, src, dir))
			if tc.duringRun {
				appendN(t, first, "wake", 1) // ends the long poll on the old log
				var de *DivergedError
				if err := wait(-1); !errors.As(err, &de) {
					t.Fatalf("Run after the change: %v, want *DivergedError", err)
				}
			}
			old := *refs
			now := collect(t, f, r, len(want))
			if r.Generation() == gen {
				t.Fatal("the cache changed and its generation did not")
			}
			for i, x := range now {
				if x.p != want[i].p {
					t.Fatalf("record %d: delivered %q, want %q", i, x.p, want[i].p)
				}
			}
			readable, stale := 0, 0
			for _, x := range old[:60] {
				got, err := x.read(r)
				switch {
				case err == nil && got == x.p:
					readable++
				case err == nil:
					t.Fatalf("old reference %d:%d reads %q, was %q", x.seg, x.off, got, x.p)
				case errors.Is(err, ErrStale):
					stale++
				default:
					t.Fatalf("old reference %d:%d: %v, want ErrStale", x.seg, x.off, err)
				}
			}
			t.Logf("%d of %d old references readable, %d stale", readable, len(old), stale)
			if readable == 0 || stale == 0 {
				t.Errorf("want both readable and stale old references")
			}
		})
	}
}
