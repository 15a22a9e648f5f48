package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recordsEnd walks the records of a segment file and returns where they
// end (before any zero padding) and the file's size.
func recordsEnd(t *testing.T, path string) (end, size int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := len(magic)
	for off+headerLen <= len(b) {
		hdr := b[off : off+headerLen]
		if bytes.Equal(hdr, make([]byte, headerLen)) {
			break
		}
		off += headerLen + int(binary.LittleEndian.Uint32(hdr[4:])) + int(binary.LittleEndian.Uint32(hdr[8:]))
	}
	return int64(off), int64(len(b))
}

// spareReady reports whether the housekeeper has a spare segment ready.
func spareReady(j *Journal) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.spare != nil
}

// fillIntoPreallocated appends events (from n on) until the active
// segment is a preallocated one, waiting for the housekeeper to prepare
// it, and returns the next n.
func fillIntoPreallocated(t *testing.T, j *Journal, dir string, n int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		path := lastSegment(t, dir)
		if end, size := recordsEnd(t, path); size > end && end > int64(len(magic)) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatal("no preallocated segment after 10s")
		}
		if j.fsizeForTest() >= j.opts.SegmentBytes/2 {
			for !spareReady(j) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		appendN(t, j, n, n+1)
		n++
	}
}

// fsizeForTest reads the writer's position; appends are synchronous in
// these tests, so the writer is idle.
func (j *Journal) fsizeForTest() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fsize
}

func TestPreallocatedSegments(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 4096
	j := open(t, Options{Dir: dir, SegmentBytes: segBytes})
	n := fillIntoPreallocated(t, j, dir, 1)
	path := lastSegment(t, dir)
	end, size := recordsEnd(t, path)
	if size != segBytes {
		t.Errorf("preallocated segment is %d bytes, want %d", size, segBytes)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b[end:], make([]byte, size-end)) {
		t.Error("bytes after the records of a preallocated segment are not zeros")
	}
	if spares, _ := filepath.Glob(filepath.Join(dir, "*"+spareExt)); len(spares) > 1 {
		t.Errorf("spare files %v; want at most one", spares)
	}
	j.Close()
	if spares, _ := filepath.Glob(filepath.Join(dir, "*"+spareExt)); len(spares) != 0 {
		t.Errorf("spare files %v left after Close", spares)
	}

	// Reopened, the journal replays up to the padding and writes over it.
	j2 := open(t, Options{Dir: dir, SegmentBytes: segBytes})
	if s := j2.Stats(); s.LastSeq != int64(n-1) || s.Events != n-1 {
		t.Fatalf("reopened: %+v, want %d events", s, n-1)
	}
	appendN(t, j2, n, n+1)
	if end2, size2 := recordsEnd(t, path); size2 != segBytes || end2 <= end {
		t.Errorf("after an append on reopen: records end at %d (was %d), file %d bytes; want written over the padding", end2, end, size2)
	}
	j2.Close()
	j3 := open(t, Options{Dir: dir, SegmentBytes: segBytes})
	if s := j3.Stats(); s.LastSeq != int64(n) {
		t.Fatalf("reopened twice: %+v, want last seq %d", s, n)
	}
	for seq := int64(1); seq <= int64(n); seq++ {
		if raw, err := j3.Raw(seq); err != nil || string(raw) != fmt.Sprintf(`{"n":%d}`, seq) {
			t.Fatalf("Raw(%d) = %q, %v", seq, raw, err)
		}
	}
}

func TestPreallocatedTornTail(t *testing.T) {
	const segBytes = 4096
	for _, tc := range []struct {
		name     string
		tear     func(f *os.File, end, size int64)
		dropLast bool
	}{
		{"garbage at the end of the padding", func(f *os.File, end, size int64) { f.WriteAt([]byte("junk"), size-4) }, false},
		{"partial header after the records", func(f *os.File, end, size int64) { f.WriteAt([]byte{1, 2, 3, 4, 5}, end) }, false},
		{"record header without its record", func(f *os.File, end, size int64) {
			var hdr [headerLen]byte
			binary.LittleEndian.PutUint32(hdr[4:], 10)
			binary.LittleEndian.PutUint32(hdr[8:], 10)
			f.WriteAt(hdr[:], end)
		}, false},
		{"flipped bit in the last record", func(f *os.File, end, size int64) {
			b := []byte{0}
			f.ReadAt(b, end-2)
			b[0] ^= 0x40
			f.WriteAt(b, end-2)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, SegmentBytes: segBytes})
			n := fillIntoPreallocated(t, j, dir, 1)
			j.Close()
			path := lastSegment(t, dir)
			end, size := recordsEnd(t, path)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			tc.tear(f, end, size)
			f.Close()

			reg := prometheus.NewRegistry()
			j2 := open(t, Options{Dir: dir, SegmentBytes: segBytes, Registry: reg})
			want := int64(n - 1)
			if tc.dropLast {
				want--
			}
			if s := j2.Stats(); s.LastSeq != want {
				t.Fatalf("after tearing: last seq %d, want %d", s.LastSeq, want)
			}
			if got := counterValue(t, reg, "tryd_pubsubhelper_journal_torn_tails_total"); got != 1 {
				t.Errorf("torn tails counted: %v, want 1", got)
			}
			if _, size2 := recordsEnd(t, path); size2 >= size {
				t.Errorf("segment still %d bytes after the cut", size2)
			}
			appendN(t, j2, 1000, 1002)
			j2.Close()
			j3 := open(t, Options{Dir: dir, SegmentBytes: segBytes})
			if s := j3.Stats(); s.LastSeq != want+2 || s.Events != int(want)+2 {
				t.Errorf("after cut, append and reopen: %+v, want %d events ending at %d", s, want+2, want+2)
			}
		})
	}
}

// TestZeroPaddedOlderSegment: an older segment may end in zeros (it was
// preallocated, then SegmentBytes shrank); its records load and it is
// not reported as corrupt.
func TestZeroPaddedOlderSegment(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 1024})
	appendN(t, j, 1, 20)
	j.Close()
	first := filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segExt))
	f, err := os.OpenFile(first, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 3000))
	f.Close()
	reg := prometheus.NewRegistry()
	j2 := open(t, Options{Dir: dir, SegmentBytes: 1024, Registry: reg})
	if s := j2.Stats(); s.Events != 19 || s.FirstSeq != 1 {
		t.Errorf("stats %+v, want all 19 events", s)
	}
	if got := counterValue(t, reg, "tryd_pubsubhelper_journal_corrupt_segments_total"); got != 0 {
		t.Errorf("corrupt segments counted: %v", got)
	}
}

// TestStaleSparesRemoved: spare segments a crash left are deleted on
// open and never read as segments.
func TestStaleSparesRemoved(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendN(t, j, 1, 3)
	j.Close()
	stale := filepath.Join(dir, "spare-7"+spareExt)
	os.WriteFile(stale, append([]byte(magic), make([]byte, 100)...), 0o644)
	j2 := open(t, Options{Dir: dir})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale spare still there: %v", err)
	}
	if s := j2.Stats(); s.Events != 2 {
		t.Errorf("stats %+v", s)
	}
	if _, _, err := j2.Append(context.Background(), ghEvent("r", 9), []byte(`{}`), "k9"); err != nil {
		t.Fatal(err)
	}
}

// counterValue reads a counter without labels; 0 if it was never set.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestShortZeroTail: a preallocated segment whose records end less than
// a record header before its end loads without a torn tail.
func TestShortZeroTail(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendN(t, j, 1, 4)
	j.Close()
	path := lastSegment(t, dir)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, headerLen-3))
	f.Close()
	reg := prometheus.NewRegistry()
	j2 := open(t, Options{Dir: dir, Registry: reg})
	if s := j2.Stats(); s.Events != 3 {
		t.Errorf("stats %+v, want 3 events", s)
	}
	if got := counterValue(t, reg, "tryd_pubsubhelper_journal_torn_tails_total"); got != 0 {
		t.Errorf("torn tails counted: %v, want 0", got)
	}
	appendN(t, j2, 4, 6)
	j2.Close()
	j3 := open(t, Options{Dir: dir})
	if s := j3.Stats(); s.Events != 5 || s.LastSeq != 5 {
		t.Errorf("after append and reopen: %+v, want 5 events", s)
	}
}
