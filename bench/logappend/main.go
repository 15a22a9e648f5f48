// Command logappend measures tryd's mutation log (maintner/mutlog and
// maintner/logsync) beside baselines run in the same process, for
// bench/log-append.sh:
//
//   - durable append throughput: C concurrent appenders of S-byte payloads
//     to a disk-backed mutlog.Log (group commit, fdatasync before Append
//     returns), against the same appenders each writing its record and
//     calling fdatasync itself under a mutex (one sync per mutation);
//   - follower catch-up: a fresh logsync.Follower syncing the log over
//     loopback HTTP into an empty cache, against plain HTTP GETs of the
//     same segments into io.Discard;
//   - tail latency: from Append returning to a tailing follower's callback
//     receiving the record, against a loopback HTTP round trip.
//
// It prints one "RESULT key=value ..." line.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

func main() {
	dir := flag.String("dir", "", "scratch directory on the disk to measure (required)")
	conc := flag.Int("c", 64, "concurrent appenders")
	size := flag.Int("size", 500, "payload bytes")
	dur := flag.Duration("d", 3*time.Second, "duration of each append phase")
	catchupMB := flag.Int("catchup-mb", 64, "minimum log size for the catch-up phase, MiB")
	tailN := flag.Int("tail-n", 300, "tail latency samples")
	flag.Parse()
	if *dir == "" {
		log.Fatal("logappend: -dir is required")
	}
	payload := make([]byte, *size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}

	base := baselineAppend(filepath.Join(*dir, "baseline.mutlog"), *conc, *dur, payload)
	log.Printf("baseline (one fdatasync per append, %d writers): %.0f/s", *conc, base)

	st, err := mutlog.NewDiskStore(filepath.Join(*dir, "log"))
	check(err)
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st})
	check(err)
	defer l.Close()
	rate, p50, p99 := tryAppend(l, *conc, *dur, payload)
	log.Printf("tryd (group commit, %d writers): %.0f/s, Append p50 %.2f ms p99 %.2f ms", *conc, rate, p50, p99)

	// Top up the log for the catch-up phase with batched appends.
	batch := make([][]byte, 256)
	for i := range batch {
		batch[i] = payload
	}
	for l.Size() < int64(*catchupMB)<<20 {
		_, err := l.Append(context.Background(), batch...)
		check(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	h, err := logsync.NewHandler(logsync.HandlerOptions{Source: l})
	check(err)
	mux := http.NewServeMux()
	mux.Handle("/logs", h)
	mux.Handle("/logs/", h)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/logs"

	raw := rawDownload(url, l.Segments())
	f, err := logsync.NewFollower(logsync.FollowerOptions{URL: url, CacheDir: filepath.Join(*dir, "cache")})
	check(err)
	defer f.Close()
	total := l.Size()
	start := time.Now()
	var n int64
	check(f.Sync(context.Background(), mutlog.Position{}, func(mutlog.Position, []byte) error { n++; return nil }))
	catchup := float64(total) / (1 << 20) / time.Since(start).Seconds()
	log.Printf("catch-up: %d records, %.1f MiB at %.1f MiB/s (raw HTTP %.1f MiB/s)", n, float64(total)/(1<<20), catchup, raw)

	tail50, tail90, tail99, fromCall50 := tailLatency(l, f, *tailN, payload)
	rtt := roundTrip(url + "?startseg=999999")
	log.Printf("tail: Append return -> follower p50 %.3f ms p90 %.3f ms p99 %.3f ms (from Append call p50 %.3f ms); loopback HTTP round trip p50 %.3f ms", tail50, tail90, tail99, fromCall50, rtt)

	fmt.Printf("RESULT append_rate=%.0f append_baseline=%.0f append_p50_ms=%.2f append_p99_ms=%.2f catchup_mibs=%.1f catchup_raw_mibs=%.1f tail_p50_ms=%.3f tail_p90_ms=%.3f tail_p99_ms=%.3f tail_from_call_p50_ms=%.3f rtt_p50_ms=%.3f\n",
		rate, base, p50, p99, catchup, raw, tail50, tail90, tail99, fromCall50, rtt)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// baselineAppend: each appender frames its record, writes it and calls
// fdatasync, under one mutex (a log has one order): one sync per mutation.
func baselineAppend(path string, conc int, d time.Duration, payload []byte) float64 {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	check(err)
	defer fh.Close()
	var mu sync.Mutex
	var off int64
	var count atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				mu.Lock()
				rec := reclog.AppendRecord(nil, off, payload)
				_, err := fh.WriteAt(rec, off)
				if err == nil {
					err = unix.Fdatasync(int(fh.Fd()))
				}
				off += int64(len(rec))
				mu.Unlock()
				check(err)
				count.Add(1)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds()
}

func tryAppend(l *mutlog.Log, conc int, d time.Duration, payload []byte) (rate, p50, p99 float64) {
	var mu sync.Mutex
	var lat []float64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for time.Now().Before(deadline) {
				t0 := time.Now()
				_, err := l.Append(context.Background(), payload)
				check(err)
				mine = append(mine, ms(time.Since(t0)))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	rate = float64(len(lat)) / time.Since(start).Seconds()
	return rate, pct(lat, 50), pct(lat, 99)
}

func rawDownload(url string, segs []mutlog.SegmentInfo) float64 {
	var total int64
	start := time.Now()
	for _, s := range segs {
		res, err := http.Get(fmt.Sprintf("%s/%d", url, s.Number))
		check(err)
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		check(err)
		total += n
	}
	return float64(total) / (1 << 20) / time.Since(start).Seconds()
}

// tailLatency appends one record at a time while a follower tails, and
// measures from Append returning (and from calling it) to delivery.
func tailLatency(l *mutlog.Log, f *logsync.Follower, n int, payload []byte) (p50, p90, p99, fromCall50 float64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		seq int
		at  time.Time
	}
	ch := make(chan seen, n+1)
	var seq atomic.Int64
	seq.Store(-1)
	ready := make(chan struct{})
	segs := l.Segments()
	last := segs[len(segs)-1]
	end := mutlog.Position{Segment: last.Number, Offset: last.Size}
	go func() {
		close(ready)
		err := f.Run(ctx, end, func(pos mutlog.Position, p []byte) error {
			ch <- seen{int(seq.Load()), time.Now()}
			return nil
		})
		if ctx.Err() == nil {
			check(err)
		}
	}()
	<-ready
	time.Sleep(100 * time.Millisecond) // let the follower reach its long poll
	var afterRet, afterCall []float64
	for i := range n {
		seq.Store(int64(i))
		t0 := time.Now()
		_, err := l.Append(context.Background(), payload)
		check(err)
		t1 := time.Now()
		s := <-ch
		if s.seq != i {
			log.Fatalf("tail: saw record %d, want %d", s.seq, i)
		}
		afterRet = append(afterRet, ms(max(0, s.at.Sub(t1))))
		afterCall = append(afterCall, ms(s.at.Sub(t0)))
	}
	return pct(afterRet, 50), pct(afterRet, 90), pct(afterRet, 99), pct(afterCall, 50)
}

func roundTrip(url string) float64 {
	var lat []float64
	for range 200 {
		t0 := time.Now()
		res, err := http.Get(url)
		check(err)
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		lat = append(lat, ms(time.Since(t0)))
	}
	return pct(lat, 50)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}
