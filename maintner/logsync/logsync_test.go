package logsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// newLog opens a disk-backed log with small segments.
func newLog(t *testing.T, maxSeg int64) *mutlog.Log {
	t.Helper()
	st, err := mutlog.NewDiskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st, MaxSegmentSize: maxSeg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendN(t *testing.T, l *mutlog.Log, tag string, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(context.Background(), []byte(fmt.Sprintf("%s-%04d %s", tag, i, bytes.Repeat([]byte("."), i%40)))); err != nil {
			t.Fatal(err)
		}
	}
}

// swapSource lets a test replace the log behind a running server.
type swapSource struct{ p atomic.Pointer[mutlog.Log] }

func (s *swapSource) Segments() []mutlog.SegmentInfo { return s.p.Load().Segments() }
func (s *swapSource) WaitSizeNot(ctx context.Context, n int64) (int64, error) {
	return s.p.Load().WaitSizeNot(ctx, n)
}
func (s *swapSource) ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error) {
	return s.p.Load().ReadSegment(ctx, num, off, n)
}

// serve starts a /logs server on 127.0.0.1:0 for src.
func serve(t *testing.T, src Source, poll time.Duration) *httptest.Server {
	t.Helper()
	h, err := NewHandler(HandlerOptions{Source: src, PollTimeout: poll, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/logs", h)
	mux.Handle("/logs/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type rec struct {
	pos mutlog.Position
	p   string
}

func logRecords(t *testing.T, l *mutlog.Log) []rec {
	t.Helper()
	var out []rec
	if err := l.ForEach(context.Background(), mutlog.Position{}, func(pos mutlog.Position, p []byte) error {
		out = append(out, rec{pos, string(p)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func newFollower(t *testing.T, url, dir string) *Follower {
	t.Helper()
	f, err := NewFollower(FollowerOptions{URL: url, CacheDir: dir, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func syncAll(t *testing.T, f *Follower, from mutlog.Position) ([]rec, error) {
	t.Helper()
	var out []rec
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := f.Sync(ctx, from, func(pos mutlog.Position, p []byte) error {
		out = append(out, rec{pos, string(p)})
		return nil
	})
	return out, err
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestIndex(t *testing.T) {
	l := newLog(t, 512)
	srv := serve(t, l, 50*time.Millisecond)
	get := func(t *testing.T, path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, b
	}
	if res, b := get(t, "/logs"); res.StatusCode != 200 || string(b) != "[]" || res.Header.Get("X-Sum-Segment-Size") != "0" {
		t.Fatalf("empty log index: %s %q", res.Status, b)
	}
	appendN(t, l, "m", 40)
	segs := l.Segments()
	res, b := get(t, "/logs")
	var idx []SegmentJSON
	if err := json.Unmarshal(b, &idx); err != nil || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("index %q: %v", b, err)
	}
	var sum int64
	for i, s := range segs {
		want := SegmentJSON{Number: s.Number, Size: s.Size, SHA224: s.SHA224, URL: fmt.Sprintf("/logs/%d", s.Number)}
		if idx[i] != want {
			t.Fatalf("index[%d] = %+v, want %+v", i, idx[i], want)
		}
		sum += s.Size
	}
	if res.Header.Get("X-Sum-Segment-Size") != fmt.Sprint(sum) || len(idx) < 3 {
		t.Fatalf("X-Sum-Segment-Size %q, want %d (%d segments)", res.Header.Get("X-Sum-Segment-Size"), sum, len(idx))
	}
	for _, tc := range []struct {
		name   string
		path   string
		hdr    []string
		status int
		body   []byte
	}{
		{"waitsizenot differs answers at once", fmt.Sprintf("/logs?waitsizenot=%d", sum-1), nil, 200, nil},
		{"waitsizenot equal times out with 304", fmt.Sprintf("/logs?waitsizenot=%d", sum), nil, 304, nil},
		{"startseg", "/logs?startseg=1", nil, 200, nil},
		{"bad waitsizenot", "/logs?waitsizenot=abc", nil, 400, nil},
		{"negative waitsizenot", "/logs?waitsizenot=-1", nil, 400, nil},
		{"bad startseg", "/logs?startseg=x", nil, 400, nil},
		{"whole segment", "/logs/1", nil, 200, segBytes(t, l, 1)},
		{"range", "/logs/1", []string{"Range", "bytes=10-19"}, 206, segBytes(t, l, 1)[10:20]},
		{"open range of growing", fmt.Sprintf("/logs/%d", len(segs)-1), []string{"Range", "bytes=5-"}, 206, segBytes(t, l, len(segs)-1)[5:]},
		{"range beyond end", "/logs/0", []string{"Range", fmt.Sprintf("bytes=%d-", segs[0].Size)}, 416, nil},
		{"missing segment", "/logs/99", nil, 404, nil},
		{"bad segment number", "/logs/-1", nil, 400, nil},
		{"segment number with sign", "/logs/+1", nil, 400, nil},
		{"unknown path", "/logs/1/x", nil, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, b := get(t, tc.path, tc.hdr...)
			if res.StatusCode != tc.status {
				t.Fatalf("%s: %s %q", tc.path, res.Status, b)
			}
			if tc.body != nil && !bytes.Equal(b, tc.body) {
				t.Fatalf("%s: body differs (%d bytes, want %d)", tc.path, len(b), len(tc.body))
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/logs", nil)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 405 {
		t.Fatalf("POST: %v %v", res.Status, err)
	}
}

func segBytes(t *testing.T, l *mutlog.Log, num int) []byte {
	t.Helper()
	for _, s := range l.Segments() {
		if s.Number == num {
			rc, err := l.ReadSegment(context.Background(), num, 0, s.Size)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			return b
		}
	}
	t.Fatalf("no segment %d", num)
	return nil
}

func TestLongPollWakes(t *testing.T) {
	l := newLog(t, 0)
	appendN(t, l, "a", 1)
	srv := serve(t, l, time.Minute)
	size := l.Size()
	done := make(chan []SegmentJSON, 1)
	go func() {
		res, err := http.Get(fmt.Sprintf("%s/logs?waitsizenot=%d", srv.URL, size))
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		defer res.Body.Close()
		var idx []SegmentJSON
		json.NewDecoder(res.Body).Decode(&idx)
		done <- idx
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("long poll answered before the log changed")
	default:
	}
	appendN(t, l, "b", 1)
	select {
	case idx := <-done:
		if len(idx) != 1 || idx[0].Size != l.Size() {
			t.Fatalf("index after wake: %+v", idx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not wake")
	}
}

func TestFollowerCatchUpResumeAndTail(t *testing.T) {
	l := newLog(t, 2048)
	appendN(t, l, "first", 150)
	srv := serve(t, l, time.Minute)
	dir := t.TempDir()
	f := newFollower(t, srv.URL+"/logs", dir)
	got, err := syncAll(t, f, mutlog.Position{})
	if err != nil {
		t.Fatal(err)
	}
	if want := logRecords(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("follower delivered %d records, log has %d", len(got), len(want))
	}
	// The cache has the disk layout: sealed names carry the server's sums.
	var n int
	if err := mutlog.ForEachDir(dir, mutlog.DirOptions{VerifySHA224: true}, func(mutlog.Position, []byte) error { n++; return nil }); err != nil || n != len(got) {
		t.Fatalf("ForEachDir on cache: %d records, %v", n, err)
	}
	for _, s := range l.Segments() {
		name := mutlog.GrowingName(s.Number)
		if s.Sealed {
			name = mutlog.SealedName(s.Number, s.SHA224)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("cache lacks %s", name)
		}
	}
	downloaded := counter(t, f.m.downloaded)
	f.Close()

	// A second follower resumes from the cache: it downloads only what
	// is new, and still delivers from the start (or from a position).
	appendN(t, l, "second", 10)
	f2 := newFollower(t, srv.URL+"/logs", dir)
	all := logRecords(t, l)
	from := all[100].pos
	got, err = syncAll(t, f2, from)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(all[100:]) {
		t.Fatalf("resumed from %v: %d records, want %d", from, len(got), len(all)-100)
	}
	var newBytes int64
	for _, r := range all[150:] {
		newBytes += int64(len(fmt.Sprintf("REC@%x+%x=", r.pos.Offset, len(r.p)))) + int64(len(r.p))
	}
	if d := counter(t, f2.m.downloaded); d > float64(newBytes)+2048 || downloaded < 1000 {
		t.Fatalf("resumed follower downloaded %v bytes for %d new bytes", d, newBytes)
	}

	// Tail: records appended while Run waits arrive without polling
	// delays.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan rec, 1000)
	errc := make(chan error, 1)
	caughtUp := make(chan mutlog.Position, 100)
	f2.opts.CaughtUp = func(end mutlog.Position) { caughtUp <- end }
	go func() {
		errc <- f2.Run(ctx, all[len(all)-1].pos, func(pos mutlog.Position, p []byte) error {
			ch <- rec{pos, string(p)}
			return nil
		})
	}()
	if r := <-ch; r != all[len(all)-1] {
		t.Fatalf("first tailed record %v", r)
	}
	lastSeg := l.Segments()[len(l.Segments())-1]
	if end := <-caughtUp; end != (mutlog.Position{Segment: lastSeg.Number, Offset: lastSeg.Size}) {
		t.Fatalf("CaughtUp(%v), want the end of segment %d (%d)", end, lastSeg.Number, lastSeg.Size)
	}
	for i := range 30 {
		start := time.Now()
		pos, err := l.Append(context.Background(), []byte(fmt.Sprintf("tail-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			if r.pos != pos[0] || r.p != fmt.Sprintf("tail-%d", i) {
				t.Fatalf("tailed %v, want %v tail-%d", r, pos[0], i)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("tail took %v", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("tail did not deliver")
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func TestSecondFollowerOnCacheFails(t *testing.T) {
	dir := t.TempDir()
	newFollower(t, "http://127.0.0.1:1/logs", dir)
	if _, err := NewFollower(FollowerOptions{URL: "http://127.0.0.1:1/logs", CacheDir: dir}); !errors.Is(err, mutlog.ErrLocked) {
		t.Fatalf("second follower: %v", err)
	}
}

func TestFollowerOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FollowerOptions
	}{
		{"no url", FollowerOptions{CacheDir: t.TempDir()}},
		{"not http", FollowerOptions{URL: "file:///etc/passwd", CacheDir: t.TempDir()}},
		{"no cache dir", FollowerOptions{URL: "http://x/logs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFollower(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestFollowerCorruptCache(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, dir string)
	}{
		{"flipped byte in sealed segment", func(t *testing.T, dir string) {
			m, _ := filepath.Glob(filepath.Join(dir, "0001.*.mutlog"))
			flip(t, m[0], 30)
		}},
		{"flipped byte in growing segment", func(t *testing.T, dir string) {
			m, _ := filepath.Glob(filepath.Join(dir, "*.growing.mutlog"))
			flip(t, m[0], 3)
		}},
		{"truncated growing segment", func(t *testing.T, dir string) {
			m, _ := filepath.Glob(filepath.Join(dir, "*.growing.mutlog"))
			os.Truncate(m[0], 7)
		}},
		{"garbage appended to growing segment", func(t *testing.T, dir string) {
			m, _ := filepath.Glob(filepath.Join(dir, "*.growing.mutlog"))
			fh, _ := os.OpenFile(m[0], os.O_APPEND|os.O_WRONLY, 0)
			fh.Write([]byte("REC@garbage"))
			fh.Close()
		}},
		{"missing middle segment", func(t *testing.T, dir string) {
			m, _ := filepath.Glob(filepath.Join(dir, "0001.*.mutlog"))
			os.Remove(m[0])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLog(t, 1024)
			appendN(t, l, "c", 60)
			srv := serve(t, l, time.Minute)
			dir := t.TempDir()
			f := newFollower(t, srv.URL+"/logs", dir)
			if _, err := syncAll(t, f, mutlog.Position{}); err != nil {
				t.Fatal(err)
			}
			f.Close()
			tc.corrupt(t, dir)
			f2 := newFollower(t, srv.URL+"/logs", dir)
			got, err := syncAll(t, f2, mutlog.Position{})
			if err != nil {
				t.Fatal(err)
			}
			if want := logRecords(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after repair: %d records, want %d", len(got), len(want))
			}
		})
	}
}

func flip(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFollowerServerRewound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second func(t *testing.T, first *mutlog.Log) *mutlog.Log
	}{
		{"different history", func(t *testing.T, _ *mutlog.Log) *mutlog.Log {
			l := newLog(t, 1024)
			appendN(t, l, "other", 70)
			return l
		}},
		{"shorter history", func(t *testing.T, _ *mutlog.Log) *mutlog.Log {
			l := newLog(t, 1024)
			appendN(t, l, "h", 25)
			return l
		}},
		{"same prefix then different", func(t *testing.T, _ *mutlog.Log) *mutlog.Log {
			l := newLog(t, 1024)
			appendN(t, l, "h", 45)
			appendN(t, l, "fork", 10)
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := newLog(t, 1024)
			appendN(t, first, "h", 50)
			src := &swapSource{}
			src.p.Store(first)
			srv := serve(t, src, time.Minute)
			f := newFollower(t, srv.URL+"/logs", t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var mu sync.Mutex
			var got []rec
			errc := make(chan error, 1)
			caught := make(chan struct{})
			go func() {
				errc <- f.Run(ctx, mutlog.Position{}, func(pos mutlog.Position, p []byte) error {
					mu.Lock()
					got = append(got, rec{pos, string(p)})
					if len(got) == 50 {
						close(caught)
					}
					mu.Unlock()
					return nil
				})
			}()
			<-caught
			second := tc.second(t, first)
			src.p.Store(second)
			appendN(t, first, "wake", 1) // wakes the follower's long poll on the old log
			err := <-errc
			var de *DivergedError
			if !errors.As(err, &de) || !errors.Is(err, ErrDiverged) {
				t.Fatalf("Run after rewind: %v, want *DivergedError", err)
			}
			t.Logf("Run: %v", err)
			// Starting over yields exactly the new history.
			again, err := syncAll(t, f, mutlog.Position{})
			if err != nil {
				t.Fatal(err)
			}
			if want := logRecords(t, second); fmt.Sprint(again) != fmt.Sprint(want) {
				t.Fatalf("after rewind: %d records, want %d", len(again), len(want))
			}
		})
	}
}

// badServer serves a log whose index or bytes lie.
func TestFollowerBadServer(t *testing.T) {
	l := newLog(t, 0)
	appendN(t, l, "x", 5)
	seg := segBytes(t, l, 0)
	sum := sha256.Sum224(seg)
	good := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name    string
		index   string
		segment []byte
	}{
		{"wrong sha224", fmt.Sprintf(`[{"number":0,"size":%d,"sha224":"%s","url":"/logs/0"}]`, len(seg), good[:55]+"0"), seg},
		{"bytes differ from sha224", fmt.Sprintf(`[{"number":0,"size":%d,"sha224":"%s","url":"/logs/0"}]`, len(seg), good), append([]byte("X"), seg[1:]...)},
		{"not json", `<html>`, seg},
		{"gap in numbers", fmt.Sprintf(`[{"number":1,"size":%d,"sha224":"%s","url":"/logs/0"}]`, len(seg), good), seg},
		{"huge segment", fmt.Sprintf(`[{"number":0,"size":%d,"sha224":"%s","url":"/logs/0"}]`, int64(1)<<40, good), seg},
		{"short body", fmt.Sprintf(`[{"number":0,"size":%d,"sha224":"%s","url":"/logs/0"}]`, len(seg), good), seg[:10]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/logs" {
					io.WriteString(w, tc.index)
					return
				}
				w.Write(tc.segment) // ignores Range: the follower copes with 200
			}))
			defer srv.Close()
			f := newFollower(t, srv.URL+"/logs", t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			n := 0
			err := f.Sync(ctx, mutlog.Position{}, func(mutlog.Position, []byte) error { n++; return nil })
			if !errors.Is(err, context.DeadlineExceeded) || n != 0 {
				t.Fatalf("Sync: %v after %d records; want retries and nothing delivered", err, n)
			}
			if counter(t, f.m.errors) == 0 {
				t.Fatal("no errors counted")
			}
		})
	}
}

// FuzzParseIndex checks the index parser never panics and accepts only
// well-formed lists.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"number":0,"size":12,"sha224":"0baf37e57aa17c93cea6e86aa065ab9a840426c7864ef3583c20d2b5","url":"/logs/0"}]`))
	f.Add([]byte(`[{"number":0,"size":-1,"sha224":"","url":""}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		segs, err := parseIndex(b)
		if err != nil {
			return
		}
		for i, s := range segs {
			if s.Number != i || s.Size <= 0 || len(s.SHA224) != 56 || s.URL == "" {
				t.Fatalf("accepted bad entry %+v", s)
			}
		}
	})
}

// TestFollowerFromLaterPosition checks that a follower started near the
// end fetches only the segments it needs, and that a later full sync on
// the same cache fills the gap.
func TestFollowerFromLaterPosition(t *testing.T) {
	l := newLog(t, 1024)
	appendN(t, l, "p", 120)
	srv := serve(t, l, time.Minute)
	all := logRecords(t, l)
	segs := l.Segments()
	lastSeg := segs[len(segs)-1]
	from := mutlog.Position{Segment: lastSeg.Number, Offset: 0}
	dir := t.TempDir()
	f := newFollower(t, srv.URL+"/logs", dir)
	got, err := syncAll(t, f, from)
	if err != nil {
		t.Fatal(err)
	}
	var want []rec
	for _, r := range all {
		if !r.pos.Less(from) {
			want = append(want, r)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("from %v: %d records, want %d", from, len(got), len(want))
	}
	if d := counter(t, f.m.downloaded); d != float64(lastSeg.Size) {
		t.Fatalf("downloaded %v bytes, want only the last segment's %d", d, lastSeg.Size)
	}
	f.Close()
	f2 := newFollower(t, srv.URL+"/logs", dir)
	got, err = syncAll(t, f2, mutlog.Position{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("full sync after partial: %d records, want %d", len(got), len(all))
	}
	if d := counter(t, f2.m.downloaded); d != float64(l.Size()-lastSeg.Size) {
		t.Fatalf("full sync downloaded %v bytes, want %d", d, l.Size()-lastSeg.Size)
	}
}

// FuzzHandler sends arbitrary paths and queries to the handler: it must
// not panic and must answer with a status from its vocabulary.
func FuzzHandler(f *testing.F) {
	f.Add("/logs", "waitsizenot=0")
	f.Add("/logs/0", "")
	f.Add("/logs/-1", "startseg=2")
	f.Add("/logs/99999999999999999999", "")
	f.Add("/logs", "waitsizenot=1&startseg=-3")
	st, err := mutlog.NewDiskStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st, MaxSegmentSize: 256})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	for i := range 20 {
		l.Append(context.Background(), []byte(fmt.Sprintf("fuzz %d", i)))
	}
	h, err := NewHandler(HandlerOptions{Source: l, PollTimeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		req := httptest.NewRequest(http.MethodGet, "http://x/", nil)
		req.URL.Path, req.URL.RawQuery = path, query
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 200, 206, 304, 400, 404, 416:
		default:
			t.Fatalf("%s?%s: status %d", path, query, w.Code)
		}
	})
}
