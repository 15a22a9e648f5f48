package mutlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tryd-ci/tryd/maintner/reclog"
)

func openDisk(t *testing.T, dir string, maxSeg int64) *Log {
	t.Helper()
	st, err := NewDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), Options{Store: st, MaxSegmentSize: maxSeg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

type record struct {
	pos     Position
	payload string
}

func collect(t *testing.T, l *Log) []record {
	t.Helper()
	var got []record
	if err := l.ForEach(context.Background(), Position{}, func(pos Position, p []byte) error {
		got = append(got, record{pos, string(p)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf("mutation %05d %s", i, bytes.Repeat([]byte("x"), i%50)))
}

func TestAppendConcurrentAndReopen(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	st, _ := NewDiskStore(dir)
	l, err := Open(context.Background(), Options{Store: st, MaxSegmentSize: 4096, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 60
	var mu sync.Mutex
	acked := map[string]Position{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := payload(w*each + i)
				pos, err := l.Append(context.Background(), p)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[string(p)] = pos[0]
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got := counterValue(t, l.metrics.appends); got != writers*each {
		t.Errorf("appends metric = %v", got)
	}
	if commits := counterValue(t, l.metrics.commits); commits > writers*each {
		t.Errorf("commits %v > appends", commits)
	}
	segs := l.Segments()
	if len(segs) < 3 {
		t.Fatalf("expected several 4 KiB segments, got %d", len(segs))
	}
	size := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	l2 := openDisk(t, dir, 4096)
	if l2.Size() != size {
		t.Fatalf("reopened size %d, want %d", l2.Size(), size)
	}
	got := collect(t, l2)
	if len(got) != writers*each {
		t.Fatalf("got %d records, want %d", len(got), writers*each)
	}
	for i, r := range got {
		if acked[r.payload] != r.pos {
			t.Fatalf("record %q at %v, Append said %v", r.payload, r.pos, acked[r.payload])
		}
		if i > 0 && !got[i-1].pos.Less(r.pos) {
			t.Fatalf("positions out of order at %d", i)
		}
	}
	// Sealed segments are named by their hash, within the size limit.
	for _, s := range l2.Segments() {
		if s.Size > 4096 {
			t.Errorf("segment %d is %d bytes", s.Number, s.Size)
		}
		b, err := readAll(context.Background(), st, s.Number, s.Size)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum224(b)
		if hex.EncodeToString(sum[:]) != s.SHA224 {
			t.Errorf("segment %d: sha224 mismatch", s.Number)
		}
		if _, err := reclog.Scan("", b, 0, nil); err != nil {
			t.Errorf("segment %d: %v", s.Number, err)
		}
		if s.Sealed {
			if _, err := os.Stat(filepath.Join(dir, SealedName(s.Number, s.SHA224))); err != nil {
				t.Error(err)
			}
		}
	}
	// The directory reader sees the same records.
	var n int
	if err := ForEachDir(dir, DirOptions{VerifySHA224: true}, func(pos Position, p []byte) error {
		if got[n].pos != pos || got[n].payload != string(p) {
			return fmt.Errorf("record %d differs", n)
		}
		n++
		return nil
	}); err != nil || n != len(got) {
		t.Fatalf("ForEachDir: %d records, %v", n, err)
	}
	// From skips earlier records.
	from := got[len(got)/2].pos
	n = 0
	if err := ForEachDir(dir, DirOptions{From: from}, func(pos Position, p []byte) error { n++; return nil }); err != nil || n != len(got)-len(got)/2 {
		t.Fatalf("ForEachDir from %v: %d records, %v", from, n, err)
	}
}

func TestSecondWriterFails(t *testing.T) {
	dir := t.TempDir()
	openDisk(t, dir, 0)
	st, _ := NewDiskStore(dir)
	_, err := Open(context.Background(), Options{Store: st})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	t.Logf("second writer: %v", err)
}

func TestAppendCancelled(t *testing.T) {
	l := openDisk(t, t.TempDir(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled context: %v", err)
	}
	if l.Size() != 0 {
		t.Fatalf("cancelled Append wrote %d bytes", l.Size())
	}
}

func TestTooLarge(t *testing.T) {
	l := openDisk(t, t.TempDir(), 128)
	if _, err := l.Append(context.Background(), make([]byte, 120)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if _, err := l.Append(context.Background(), make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
}

func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tail    func(valid []byte) []byte
		wantErr error
	}{
		{"partial record", func(v []byte) []byte { return reclog.AppendRecord(nil, int64(len(v)), []byte("lost"))[:7] }, nil},
		{"partial payload", func(v []byte) []byte { return reclog.AppendRecord(nil, int64(len(v)), []byte("lost payload"))[:14] }, nil},
		{"zeros", func(v []byte) []byte { return make([]byte, 4096) }, nil},
		{"garbage", func(v []byte) []byte { return []byte("not a record at all") }, nil},
		{"valid record after garbage", func(v []byte) []byte {
			g := []byte("JUNK")
			return reclog.AppendRecord(g, int64(len(v)+len(g)), []byte("after"))
		}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openDisk(t, dir, 0)
			for i := range 5 {
				if _, err := l.Append(context.Background(), payload(i)); err != nil {
					t.Fatal(err)
				}
			}
			want := collect(t, l)
			l.Close()
			path := filepath.Join(dir, GrowingName(0))
			valid, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(valid, tc.tail(valid)...), 0o644); err != nil {
				t.Fatal(err)
			}
			st, _ := NewDiskStore(dir)
			l2, err := Open(context.Background(), Options{Store: st})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open: %v, want %v", err, tc.wantErr)
				}
				t.Logf("Open: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if got := collect(t, l2); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after cut: %v, want %v", got, want)
			}
			if fi, _ := os.Stat(path); fi.Size() != int64(len(valid)) {
				t.Fatalf("file is %d bytes, want %d", fi.Size(), len(valid))
			}
			// Appending continues at the cut.
			if _, err := l2.Append(context.Background(), []byte("next")); err != nil {
				t.Fatal(err)
			}
			if got := collect(t, l2); len(got) != len(want)+1 {
				t.Fatalf("got %d records", len(got))
			}
		})
	}
}

func TestCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	l := openDisk(t, dir, 256)
	for i := range 20 {
		if _, err := l.Append(context.Background(), payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	segs := l.Segments()
	l.Close()
	s := segs[1]
	path := filepath.Join(dir, SealedName(s.Number, s.SHA224))
	os.Chmod(path, 0o644)
	b, _ := os.ReadFile(path)
	b[0] = 'X'
	os.WriteFile(path, b, 0o644)
	st, _ := NewDiskStore(dir)
	if _, err := Open(context.Background(), Options{Store: st, VerifySealed: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with VerifySealed: %v, want ErrCorrupt", err)
	} else {
		t.Logf("Open with VerifySealed: %v", err)
	}
	err := ForEachDir(dir, DirOptions{}, func(Position, []byte) error { return nil })
	var re *reclog.Error
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &re) || re.Offset != 0 || re.Segment != "0001" {
		t.Fatalf("ForEachDir: %v", err)
	}
	t.Logf("ForEachDir: %v", err)
	b[0] = 'R'
	b[len(b)-1] ^= 1
	os.WriteFile(path, b, 0o644)
	if err := ForEachDir(dir, DirOptions{VerifySHA224: true}, func(Position, []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ForEachDir with hash check: %v", err)
	}
}

func TestWaitSizeNot(t *testing.T) {
	l := openDisk(t, t.TempDir(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.WaitSizeNot(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSizeNot on empty log: %v", err)
	}
	got := make(chan int64, 1)
	go func() {
		n, err := l.WaitSizeNot(context.Background(), 0)
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()
	time.Sleep(5 * time.Millisecond)
	if _, err := l.Append(context.Background(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		if n != l.Size() || n == 0 {
			t.Fatalf("WaitSizeNot = %d, size %d", n, l.Size())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitSizeNot did not wake")
	}
	if n, err := l.WaitSizeNot(context.Background(), 0); err != nil || n != l.Size() {
		t.Fatalf("WaitSizeNot with stale size = %d, %v", n, err)
	}
}

func TestReadSegment(t *testing.T) {
	l := openDisk(t, t.TempDir(), 200)
	for i := range 10 {
		if _, err := l.Append(context.Background(), payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range l.Segments() {
		rc, err := l.ReadSegment(context.Background(), s.Number, 0, s.Size)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		sum := sha256.Sum224(b)
		if hex.EncodeToString(sum[:]) != s.SHA224 {
			t.Errorf("segment %d (sealed %v) hash mismatch", s.Number, s.Sealed)
		}
	}
	last := l.Segments()[len(l.Segments())-1]
	for _, tc := range []struct {
		name   string
		num    int
		off, n int64
		want   error
	}{
		{"missing", 99, 0, 1, ErrNotFound},
		{"negative", -1, 0, 1, ErrNotFound},
		{"beyond end", last.Number, last.Size, 1, ErrRange},
		{"negative offset", 0, -1, 1, ErrRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.ReadSegment(context.Background(), tc.num, tc.off, tc.n); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestForEachDirPartialTail reads a directory whose growing segment ends
// inside a record, as a reader racing a writer sees it: complete records
// are delivered, the partial one is not, and there is no error.
func TestForEachDirPartialTail(t *testing.T) {
	dir := t.TempDir()
	l := openDisk(t, dir, 0)
	for i := range 3 {
		if _, err := l.Append(context.Background(), payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	path := filepath.Join(dir, GrowingName(0))
	b, _ := os.ReadFile(path)
	partial := reclog.AppendRecord(nil, int64(len(b)), []byte("partial"))
	os.WriteFile(path, append(b, partial[:len(partial)-3]...), 0o644)
	n := 0
	if err := ForEachDir(dir, DirOptions{}, func(Position, []byte) error { n++; return nil }); err != nil || n != 3 {
		t.Fatalf("ForEachDir: %d records, %v; want 3 and no error", n, err)
	}
}
