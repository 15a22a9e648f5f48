// Package storetest is the conformance suite every mutlog.Store must pass:
// segment listing, ranged reads, the single-writer claim, append
// preconditions, sealing, truncation, and a Log running on top of the
// store across reopenings. Call Test from the store's own tests.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// Factory makes a new, empty storage location for one subtest and returns
// a function that opens a fresh handle on it, as a new process would
// (handles must not share in-memory state that a restart would lose).
type Factory func(t *testing.T) (open func() mutlog.Store)

// Test runs the conformance suite against the stores made by f.
func Test(t *testing.T, f Factory) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open func() mutlog.Store)
	}{
		{"Empty", testEmpty},
		{"AppendSealRead", testAppendSealRead},
		{"AppendPreconditions", testPreconditions},
		{"SingleWriter", testSingleWriter},
		{"Truncate", testTruncate},
		{"LogReopen", testLogReopen},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f(t)) })
	}
}

func sum224(b []byte) string {
	s := sha256.Sum224(b)
	return hex.EncodeToString(s[:])
}

func readSeg(t *testing.T, s mutlog.Store, num int, off, n int64) []byte {
	t.Helper()
	rc, err := s.ReadSegment(context.Background(), num, off, n)
	if err != nil {
		t.Fatalf("ReadSegment(%d, %d, %d): %v", num, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("ReadSegment(%d, %d, %d): read: %v", num, off, n, err)
	}
	return b
}

func segments(t *testing.T, s mutlog.Store) []mutlog.SegmentInfo {
	t.Helper()
	segs, err := s.Segments(context.Background())
	if err != nil {
		t.Fatalf("Segments: %v", err)
	}
	return segs
}

func writer(t *testing.T, s mutlog.Store) mutlog.Writer {
	t.Helper()
	w, err := s.OpenWriter(context.Background())
	if err != nil {
		t.Fatalf("OpenWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func testEmpty(t *testing.T, open func() mutlog.Store) {
	s := open()
	if segs := segments(t, s); len(segs) != 0 {
		t.Fatalf("new store lists %v", segs)
	}
	if _, err := s.ReadSegment(context.Background(), 0, 0, 0); !errors.Is(err, mutlog.ErrNotFound) {
		t.Fatalf("ReadSegment on empty store: %v, want ErrNotFound", err)
	}
}

func testAppendSealRead(t *testing.T, open func() mutlog.Store) {
	ctx := context.Background()
	s := open()
	w := writer(t, s)
	seg0 := reclog.AppendRecord(nil, 0, []byte("first"))
	more := reclog.AppendRecord(nil, int64(len(seg0)), []byte("second"))
	if err := w.Append(ctx, 0, 0, seg0); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, int64(len(seg0)), more); err != nil {
		t.Fatal(err)
	}
	seg0 = append(seg0, more...)
	want := []mutlog.SegmentInfo{{Number: 0, Size: int64(len(seg0)), SHA224: sum224(seg0)}}
	if got := segments(t, open()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Segments = %v, want %v", got, want)
	}
	if err := w.Seal(ctx, 0, sum224(seg0)); err != nil {
		t.Fatal(err)
	}
	seg1 := reclog.AppendRecord(nil, 0, []byte("third"))
	if err := w.Append(ctx, 1, 0, seg1); err != nil {
		t.Fatal(err)
	}
	want = []mutlog.SegmentInfo{
		{Number: 0, Size: int64(len(seg0)), SHA224: sum224(seg0), Sealed: true},
		{Number: 1, Size: int64(len(seg1)), SHA224: sum224(seg1)},
	}
	s2 := open()
	if got := segments(t, s2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Segments = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name   string
		num    int
		off, n int64
		want   []byte
	}{
		{"whole sealed", 0, 0, int64(len(seg0)), seg0},
		{"sealed middle", 0, 3, 5, seg0[3:8]},
		{"sealed tail", 0, int64(len(seg0)) - 2, 2, seg0[len(seg0)-2:]},
		{"growing", 1, 0, int64(len(seg1)), seg1},
		{"empty range", 1, 4, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readSeg(t, s2, tc.num, tc.off, tc.n); !bytes.Equal(got, tc.want) {
				t.Fatalf("read %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		num    int
		off, n int64
		want   error
	}{
		{"missing segment", 2, 0, 1, mutlog.ErrNotFound},
		{"beyond sealed end", 0, int64(len(seg0)), 1, mutlog.ErrRange},
		{"beyond growing end", 1, 1, int64(len(seg1)), mutlog.ErrRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := s2.ReadSegment(ctx, tc.num, tc.off, tc.n)
			if err == nil {
				rc.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func testPreconditions(t *testing.T, open func() mutlog.Store) {
	ctx := context.Background()
	s := open()
	w := writer(t, s)
	rec := reclog.AppendRecord(nil, 0, []byte("x"))
	if err := w.Append(ctx, 0, 0, rec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		num  int
		off  int64
	}{
		{"offset behind", 0, 0},
		{"offset ahead", 0, 100},
		{"next segment while growing", 1, 0},
		{"skipped segment", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.Append(ctx, tc.num, tc.off, []byte("zzz")); !errors.Is(err, mutlog.ErrConflict) {
				t.Fatalf("Append(%d, %d): %v, want ErrConflict", tc.num, tc.off, err)
			}
		})
	}
	if err := w.Seal(ctx, 0, sum224(rec)); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, int64(len(rec)), []byte("zzz")); !errors.Is(err, mutlog.ErrConflict) {
		t.Fatalf("Append to sealed segment: %v, want ErrConflict", err)
	}
	want := []mutlog.SegmentInfo{{Number: 0, Size: int64(len(rec)), SHA224: sum224(rec), Sealed: true}}
	if got := segments(t, open()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after refused writes: %v, want %v", got, want)
	}
}

func testSingleWriter(t *testing.T, open func() mutlog.Store) {
	ctx := context.Background()
	w, err := open().OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w2, err := open().OpenWriter(ctx); !errors.Is(err, mutlog.ErrLocked) {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("second OpenWriter: %v, want ErrLocked", err)
	}
	if _, err := mutlog.Open(ctx, mutlog.Options{Store: open()}); !errors.Is(err, mutlog.ErrLocked) {
		t.Fatalf("mutlog.Open with a writer present: %v, want ErrLocked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w3, err := open().OpenWriter(ctx)
	if err != nil {
		t.Fatalf("OpenWriter after Close: %v", err)
	}
	w3.Close()
}

func testTruncate(t *testing.T, open func() mutlog.Store) {
	ctx := context.Background()
	w := writer(t, open())
	a := reclog.AppendRecord(nil, 0, []byte("keep"))
	b := reclog.AppendRecord(nil, int64(len(a)), []byte("drop"))
	if err := w.Append(ctx, 0, 0, append(append([]byte(nil), a...), b[:5]...)); err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(ctx, 0, int64(len(a))); err != nil {
		t.Fatal(err)
	}
	s := open()
	if got := readSeg(t, s, 0, 0, int64(len(a))); !bytes.Equal(got, a) {
		t.Fatalf("after truncate: %q", got)
	}
	if segs := segments(t, s); len(segs) != 1 || segs[0].Size != int64(len(a)) {
		t.Fatalf("after truncate: %v", segs)
	}
	if err := w.Append(ctx, 0, int64(len(a)), b); err != nil {
		t.Fatalf("append after truncate: %v", err)
	}
}

func testLogReopen(t *testing.T, open func() mutlog.Store) {
	ctx := context.Background()
	l, err := mutlog.Open(ctx, mutlog.Options{Store: open(), MaxSegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if _, err := l.Append(ctx, []byte(fmt.Sprintf("writer %d mutation %d %s", w, i, bytes.Repeat([]byte("p"), i)))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := l.Segments()
	if len(want) < 3 {
		t.Fatalf("expected several segments, got %d", len(want))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := open()
	if got := segments(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("store lists %v, log had %v", got, want)
	}
	l2, err := mutlog.Open(ctx, mutlog.Options{Store: s, MaxSegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	n := 0
	if err := l2.ForEach(ctx, mutlog.Position{}, func(pos mutlog.Position, p []byte) error {
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("reopened log has %d records, want 100", n)
	}
	if _, err := l2.Append(ctx, []byte("after reopen")); err != nil {
		t.Fatal(err)
	}
}
