package journal

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

var updateSample = flag.Bool("update-sample", false, "regenerate testdata/v1 (only when adding a new format version)")

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, opts Options) *Journal {
	t.Helper()
	j, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func ghEvent(repo string, n int) *pubsubtypes.Event {
	return &pubsubtypes.Event{Source: pubsubtypes.SourceGitHub, Type: "issues", DeliveryID: fmt.Sprintf("d-%d", n),
		GitHub: &pubsubtypes.GitHubEvent{Action: "opened", RepoOwner: "o", Repo: repo, IssueNumber: n}}
}

func appendN(t *testing.T, j *Journal, from, to int) []pubsubtypes.Event {
	t.Helper()
	var out []pubsubtypes.Event
	for i := from; i < to; i++ {
		ev, dup, err := j.Append(context.Background(), ghEvent("r", i), []byte(fmt.Sprintf(`{"n":%d}`, i)), fmt.Sprintf("key-%d", i))
		if err != nil || dup {
			t.Fatalf("append %d: dup=%v err=%v", i, dup, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestAppendReplay(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 2048})
	id := j.ID()
	evs := appendN(t, j, 1, 40)
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || ev.JournalID != id || ev.Time.T().IsZero() {
			t.Fatalf("event %d: seq %d journal %q time %v", i, ev.Seq, ev.JournalID, ev.Time)
		}
		if i > 0 && !ev.Time.T().After(evs[i-1].Time.T()) {
			t.Fatalf("times not strictly increasing at %d", i)
		}
	}
	if s := j.Stats(); s.Segments < 2 {
		t.Fatalf("expected several segments with SegmentBytes 2048, got %+v", s)
	}
	j.Close()

	j2 := open(t, Options{Dir: dir, SegmentBytes: 2048})
	if j2.ID() != id {
		t.Errorf("journal ID changed across reopen: %s → %s", id, j2.ID())
	}
	got := j2.Recent(pubsubtypes.Cursor{}, pubsubtypes.Filter{}, 1000)
	if len(got) != len(evs) {
		t.Fatalf("replayed %d events, want %d", len(got), len(evs))
	}
	for i, ev := range got {
		want := evs[len(evs)-1-i]
		if ev.Seq != want.Seq || !ev.Time.T().Equal(want.Time.T()) || ev.GitHub.IssueNumber != want.GitHub.IssueNumber || ev.DeliveryID != want.DeliveryID {
			t.Errorf("replayed %+v, want %+v", ev, want)
		}
	}
	raw, err := j2.Raw(7)
	if err != nil || string(raw) != `{"n":7}` {
		t.Errorf("Raw(7) = %q, %v", raw, err)
	}
	// Numbering and dedup continue after the replay.
	if _, dup, _ := j2.Append(context.Background(), ghEvent("r", 3), nil, "key-3"); !dup {
		t.Error("a key appended before the restart was not recognised as a duplicate")
	}
	more := appendN(t, j2, 40, 41)
	if more[0].Seq != 40 || !more[0].Time.T().After(evs[len(evs)-1].Time.T()) {
		t.Errorf("after reopen: seq %d time %v", more[0].Seq, more[0].Time)
	}
}

func TestDedupConcurrent(t *testing.T) {
	j := open(t, Options{Dir: t.TempDir()})
	var wg sync.WaitGroup
	var mu sync.Mutex
	dups, seqs := 0, map[int64]bool{}
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev, dup, err := j.Append(context.Background(), ghEvent("r", 1), []byte(`{}`), "same-delivery")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if dup {
				dups++
			}
			seqs[ev.Seq] = true
		}()
	}
	wg.Wait()
	if dups != 31 || len(seqs) != 1 {
		t.Errorf("32 concurrent appends of one key: %d duplicates, %d distinct seqs; want 31 and 1", dups, len(seqs))
	}
	if s := j.Stats(); s.Events != 1 {
		t.Errorf("journal holds %d events, want 1", s.Events)
	}
	// No key: never deduplicated.
	for i := 0; i < 2; i++ {
		if _, dup, err := j.Append(context.Background(), ghEvent("r", 2), nil, ""); dup || err != nil {
			t.Errorf("keyless append: dup=%v err=%v", dup, err)
		}
	}
}

// histogramCount reads the number of observations of a histogram.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0, 0
}

func TestGroupCommit(t *testing.T) {
	reg := prometheus.NewRegistry()
	j := open(t, Options{Dir: t.TempDir(), Registry: reg})
	const n = 256
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, _, err := j.Append(context.Background(), ghEvent("r", i), make([]byte, 2000), fmt.Sprint(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	writes, records := histogramCount(t, reg, "tryd_pubsubhelper_journal_batch_records")
	if records != n {
		t.Errorf("batches hold %v records, want %d", records, n)
	}
	if writes >= n {
		t.Errorf("%d concurrent appends took %d fsyncs; group commit should share them", n, writes)
	}
	fsyncs, _ := histogramCount(t, reg, "tryd_pubsubhelper_journal_fsync_seconds")
	if fsyncs == 0 || fsyncs > writes {
		t.Errorf("%d fsyncs for %d writes", fsyncs, writes)
	}
	t.Logf("%d appends in %d writes and %d fsyncs", n, writes, fsyncs)
}

// lastSegment returns the path of the newest segment in dir.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no segments")
	}
	return names[len(names)-1]
}

func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string, size int64)
	}{
		{"partial header", func(t *testing.T, path string, size int64) { appendBytes(t, path, []byte{1, 2, 3, 4, 5}) }},
		{"partial record", func(t *testing.T, path string, size int64) { os.Truncate(path, size-3) }},
		{"garbage record", func(t *testing.T, path string, size int64) {
			appendBytes(t, path, append(make([]byte, 28), []byte("not a record at all")...))
		}},
		{"flipped bit in last record", func(t *testing.T, path string, size int64) {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			defer f.Close()
			b := []byte{0}
			f.ReadAt(b, size-2)
			b[0] ^= 0x40
			f.WriteAt(b, size-2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir})
			appendN(t, j, 1, 6)
			j.Close()
			path := lastSegment(t, dir)
			st, _ := os.Stat(path)
			tc.tear(t, path, st.Size())

			reg := prometheus.NewRegistry()
			j2 := open(t, Options{Dir: dir, Registry: reg})
			s := j2.Stats()
			wantLast := int64(5)
			if tc.name == "partial record" || tc.name == "flipped bit in last record" {
				wantLast = 4 // the damaged last record is cut
			}
			if s.LastSeq != wantLast {
				t.Fatalf("after tearing: last seq %d, want %d", s.LastSeq, wantLast)
			}
			appendN(t, j2, 100, 102)
			j2.Close()
			j3 := open(t, Options{Dir: dir})
			if s := j3.Stats(); s.Events != int(wantLast)+2 {
				t.Errorf("after cut, append and reopen: %d events, want %d", s.Events, wantLast+2)
			}
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(b)
	f.Close()
}

func TestCorruptOlderSegmentIsSkippedNotCut(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 1024})
	appendN(t, j, 1, 30)
	j.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(names)
	if len(names) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(names))
	}
	victim := names[0]
	before, _ := os.ReadFile(victim)
	damaged := append([]byte(nil), before...)
	damaged[len(magic)+headerLen+2] ^= 0xff // inside the first record's metadata
	os.WriteFile(victim, damaged, 0o644)

	reg := prometheus.NewRegistry()
	j2 := open(t, Options{Dir: dir, SegmentBytes: 1024, Registry: reg})
	after, _ := os.ReadFile(victim)
	if len(after) != len(damaged) {
		t.Errorf("an older segment was modified on open (%d → %d bytes)", len(damaged), len(after))
	}
	s := j2.Stats()
	if s.LastSeq != 29 || s.FirstSeq <= 1 {
		t.Errorf("stats %+v: want later segments intact (last 29) and the damaged one skipped", s)
	}
}

func TestRetention(t *testing.T) {
	t.Run("age", func(t *testing.T) {
		clk := newClock()
		dir := t.TempDir()
		j := open(t, Options{Dir: dir, SegmentBytes: 1024, RetentionAge: time.Hour, Now: clk.Now})
		appendN(t, j, 1, 20)
		clk.Advance(2 * time.Hour)
		appendN(t, j, 20, 22)
		j.Retain()
		s := j.Stats()
		if s.FirstSeq < 19 || s.LastSeq != 21 {
			t.Errorf("after age retention: %+v; want only the newest segment's events", s)
		}
		if _, err := j.Raw(1); !errors.Is(err, ErrNotFound) {
			t.Errorf("Raw of a deleted event: %v, want ErrNotFound", err)
		}
		if _, dup, _ := j.Append(context.Background(), ghEvent("r", 1), nil, "key-1"); dup {
			t.Error("key of a deleted event still deduplicated")
		}
		if n, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(n) != s.Segments {
			t.Errorf("%d segment files on disk, index says %d", len(n), s.Segments)
		}
	})
	t.Run("size", func(t *testing.T) {
		dir := t.TempDir()
		j := open(t, Options{Dir: dir, SegmentBytes: 1024, RetentionBytes: 4096})
		appendN(t, j, 1, 200)
		s := j.Stats()
		if s.Bytes > 4096+1024+512 || s.LastSeq != 199 || s.FirstSeq == 1 {
			t.Errorf("after size retention: %+v; want about 4 KiB and the newest events", s)
		}
		j.Close()
		j2 := open(t, Options{Dir: dir, SegmentBytes: 1024, RetentionBytes: 4096})
		if s2 := j2.Stats(); s2.FirstSeq != s.FirstSeq || s2.LastSeq != 199 {
			t.Errorf("reopened: %+v, want %+v", s2, s)
		}
	})
	t.Run("memory", func(t *testing.T) {
		clk := newClock()
		j := open(t, Options{RetentionBytes: 2000, RetentionAge: time.Hour, Now: clk.Now})
		appendN(t, j, 1, 100)
		if s := j.Stats(); s.Bytes > 2000 || s.LastSeq != 99 {
			t.Errorf("memory journal over its size limit: %+v", s)
		}
		clk.Advance(2 * time.Hour)
		j.Retain()
		if s := j.Stats(); s.Events != 0 {
			t.Errorf("memory journal kept %d old events", s.Events)
		}
	})
}

func TestWaitWakesPromptly(t *testing.T) {
	j := open(t, Options{Dir: t.TempDir()})
	type result struct {
		ev  *pubsubtypes.Event
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		ev, _, err := j.Wait(context.Background(), pubsubtypes.Cursor{}, pubsubtypes.Filter{}, 10*time.Second)
		res <- result{ev, err, time.Now()}
	}()
	time.Sleep(50 * time.Millisecond) // let the waiter block
	sent := time.Now()
	appendN(t, j, 1, 2)
	r := <-res
	if r.err != nil || r.ev == nil || r.ev.Seq != 1 {
		t.Fatalf("Wait = %+v, %v", r.ev, r.err)
	}
	if d := r.at.Sub(sent); d > 500*time.Millisecond {
		t.Errorf("waiter woke %v after the append", d)
	}
}

func TestWaitTimeoutAndFilter(t *testing.T) {
	j := open(t, Options{Dir: t.TempDir()})
	j.Append(context.Background(), ghEvent("other", 1), nil, "")
	ev, head, err := j.Wait(context.Background(), pubsubtypes.Cursor{JournalID: j.ID()}, pubsubtypes.Filter{Repo: "o/wanted"}, 100*time.Millisecond)
	if err != nil || ev != nil {
		t.Fatalf("Wait = %v, %v; want a timeout", ev, err)
	}
	if head.Seq != 1 || head.JournalID != j.ID() {
		t.Errorf("timeout cursor %+v should pass over the filtered-out event", head)
	}
	j.Append(context.Background(), ghEvent("wanted", 2), nil, "")
	ev, _, err = j.Wait(context.Background(), head, pubsubtypes.Filter{Repo: "o/wanted"}, time.Second)
	if err != nil || ev == nil || ev.GitHub.Repo != "wanted" || ev.Seq != 2 {
		t.Fatalf("Wait = %+v, %v", ev, err)
	}
}

func TestCursors(t *testing.T) {
	j := open(t, Options{Dir: t.TempDir()})
	evs := appendN(t, j, 1, 6)
	for _, tc := range []struct {
		name string
		cur  pubsubtypes.Cursor
		want int64 // seq of the next event, 0 for none
	}{
		{"zero cursor is from now on", pubsubtypes.Cursor{}, 0},
		{"seq in this journal", pubsubtypes.Cursor{JournalID: j.ID(), Seq: 2}, 3},
		{"start of this journal", pubsubtypes.Cursor{JournalID: j.ID()}, 1},
		{"seq without journal", pubsubtypes.Cursor{Seq: 4}, 5},
		{"time only (x/build)", pubsubtypes.Cursor{Time: evs[1].Time}, 3},
		{"other journal falls back to time", pubsubtypes.Cursor{JournalID: "0123", Seq: 1000, Time: evs[3].Time}, 5},
		{"other journal without time replays all", pubsubtypes.Cursor{JournalID: "0123", Seq: 1000}, 1},
		{"at the end", evs[4].Cursor(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, head := j.Next(tc.cur, pubsubtypes.Filter{})
			var got int64
			if ev != nil {
				got = ev.Seq
			}
			if got != tc.want {
				t.Errorf("next seq %d, want %d", got, tc.want)
			}
			if ev == nil && (head.Seq != 5 || head.T().Before(evs[4].Time.T())) {
				t.Errorf("head cursor %+v", head)
			}
		})
	}
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	open(t, Options{Dir: dir})
	if j, err := Open(Options{Dir: dir}); err == nil {
		j.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

func TestClosed(t *testing.T) {
	j := open(t, Options{})
	j.Close()
	if _, _, err := j.Append(context.Background(), ghEvent("r", 1), nil, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, _, err := j.Wait(context.Background(), pubsubtypes.Cursor{}, pubsubtypes.Filter{}, time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
}

// TestFormatV1 loads the checked-in sample of format version 1, which
// every later version must keep reading.
func TestFormatV1(t *testing.T) {
	src := filepath.Join("testdata", "v1")
	if *updateSample {
		os.RemoveAll(src)
		clk := newClock()
		j, err := Open(Options{Dir: src, SegmentBytes: 1024, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 12; i++ {
			clk.Advance(time.Second)
			j.Append(context.Background(), ghEvent("sample", i), []byte(fmt.Sprintf(`{"action":"opened","issue":{"number":%d}}`, i)), fmt.Sprintf("delivery-%d", i))
		}
		j.Close()
		os.Remove(filepath.Join(src, "lock"))
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
	}
	j := open(t, Options{Dir: dir, SegmentBytes: 1024, RetentionAge: 100 * 365 * 24 * time.Hour})
	evs := j.Recent(pubsubtypes.Cursor{}, pubsubtypes.Filter{}, 100)
	if len(evs) != 12 {
		t.Fatalf("sample has %d events, want 12", len(evs))
	}
	first := evs[len(evs)-1]
	want := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	if first.Seq != 1 || !first.Time.T().Equal(want) || first.GitHub.Repo != "sample" || first.DeliveryID != "d-1" {
		t.Errorf("first sample event %+v", first)
	}
	raw, err := j.Raw(12)
	if err != nil || string(raw) != `{"action":"opened","issue":{"number":12}}` {
		t.Errorf("Raw(12) = %q, %v", raw, err)
	}
	if _, dup, _ := j.Append(context.Background(), ghEvent("sample", 5), nil, "delivery-5"); !dup {
		t.Error("sample dedup key not loaded")
	}
}

// FuzzReplay opens a journal whose only segment holds arbitrary bytes:
// Open must never panic, must cut whatever does not parse, and the
// journal must then accept and replay new events.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 64))
	if b, err := os.ReadFile(filepath.Join("testdata", "v1", "00000000000000000001.seg")); err == nil {
		f.Add(b[len(magic):])
		f.Add(b[len(magic) : len(b)-7])
		// Preallocated: zeros after the records, and bytes after those.
		f.Add(append(append([]byte(nil), b[len(magic):]...), make([]byte, 100)...))
		f.Add(append(append(append([]byte(nil), b[len(magic):]...), make([]byte, 100)...), 7))
	}
	f.Add(append(make([]byte, headerLen), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), append([]byte(magic), data...), 0o644)
		j, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		before := j.Stats()
		ev, _, err := j.Append(context.Background(), ghEvent("r", 1), []byte("x"), "")
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
		j2, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer j2.Close()
		if s := j2.Stats(); s.Events != before.Events+1 || s.LastSeq != ev.Seq {
			t.Fatalf("reopen: %+v, want %d events ending at %d", s, before.Events+1, ev.Seq)
		}
	})
}

// TestConcurrentAppendsAcrossSegments appends from many goroutines into
// tiny segments, so that writes, fsyncs and rotations overlap, then
// checks every acknowledged event after a reopen.
func TestConcurrentAppendsAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 4096})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[int64]string{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				raw := fmt.Sprintf(`{"w":%d,"i":%d,"pad":"%0300d"}`, w, i, 0)
				ev, _, err := j.Append(context.Background(), ghEvent("r", i), []byte(raw), "")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[ev.Seq] = raw
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if s := j.Stats(); s.Segments < 10 || s.Events != 640 {
		t.Fatalf("stats %+v: want 640 events over many segments", s)
	}
	j.Close()
	j2 := open(t, Options{Dir: dir, SegmentBytes: 4096})
	if s := j2.Stats(); s.Events != 640 || s.LastSeq != 640 {
		t.Fatalf("reopened: %+v", s)
	}
	for seq, raw := range acked {
		got, err := j2.Raw(seq)
		if err != nil || string(got) != raw {
			t.Fatalf("Raw(%d) = %q, %v; want %q", seq, got, err, raw)
		}
	}
}
