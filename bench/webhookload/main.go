// Command webhookload is the load generator of bench/webhook-intake.sh: it
// sends signed GitHub webhook deliveries (the recorded payloads of
// ../shared/fixtures/github/webhooks, in turn, each with a fresh
// X-GitHub-Delivery) from N concurrent senders over loopback to a
// pubsubhelper for a fixed time, and prints the accepted rate and the
// acknowledgement latency percentiles as one line:
//
//	RESULT accepted=N errors=N rate=R p50_ms=X p99_ms=Y
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type payload struct {
	event string
	body  []byte
	sig   string
}

func main() {
	url := flag.String("url", "", "pubsubhelper base URL")
	secret := flag.String("secret-file", "", "file holding the webhook secret")
	fixtures := flag.String("fixtures", "", "directory of GitHub webhook payloads (<event>/<file>.json)")
	senders := flag.Int("c", 64, "concurrent senders")
	dur := flag.Duration("d", 5*time.Second, "measured duration")
	warm := flag.Duration("warmup", time.Second, "unmeasured warm-up before the measurement")
	prefix := flag.String("id-prefix", "bench", "prefix of delivery IDs (unique per run)")
	flag.Parse()
	if *url == "" || *secret == "" || *fixtures == "" {
		flag.Usage()
		os.Exit(2)
	}
	key, err := os.ReadFile(*secret)
	if err != nil {
		fail(err)
	}
	key = bytes.TrimSpace(key)
	var payloads []payload
	matches, _ := filepath.Glob(filepath.Join(*fixtures, "*", "*.json"))
	sort.Strings(matches)
	for _, p := range matches {
		b, err := os.ReadFile(p)
		if err != nil {
			fail(err)
		}
		if len(b) > 100<<10 {
			continue // keep the mix to typical deliveries
		}
		m := hmac.New(sha256.New, key)
		m.Write(b)
		payloads = append(payloads, payload{event: filepath.Base(filepath.Dir(p)), body: b, sig: "sha256=" + hex.EncodeToString(m.Sum(nil))})
	}
	if len(payloads) == 0 {
		fail(fmt.Errorf("no payloads under %s", *fixtures))
	}
	tr := &http.Transport{MaxIdleConns: *senders * 2, MaxIdleConnsPerHost: *senders * 2, DisableCompression: true}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var (
		seq      atomic.Int64
		measure  atomic.Bool
		stop     atomic.Bool
		mu       sync.Mutex
		lat      []time.Duration
		accepted int64
		errs     int64
		firstErr error
		wg       sync.WaitGroup
	)
	for w := 0; w < *senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var ok, bad int64
			var ferr error
			for !stop.Load() {
				n := seq.Add(1)
				p := payloads[int(n)%len(payloads)]
				req, _ := http.NewRequest("POST", *url+"/github-webhook", bytes.NewReader(p.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", p.event)
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("%s-%d", *prefix, n))
				req.Header.Set("X-Hub-Signature-256", p.sig)
				counted := measure.Load()
				start := time.Now()
				resp, err := hc.Do(req)
				d := time.Since(start)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if !counted || stop.Load() {
					continue
				}
				if err != nil {
					bad++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				ok++
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			accepted += ok
			errs += bad
			if firstErr == nil {
				firstErr = ferr
			}
			mu.Unlock()
		}()
	}
	time.Sleep(*warm)
	measure.Store(true)
	t0 := time.Now()
	time.Sleep(*dur)
	stop.Store(true)
	elapsed := time.Since(t0)
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "webhookload: first error: %v\n", firstErr)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(q * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	fmt.Printf("RESULT accepted=%d errors=%d rate=%.0f p50_ms=%.2f p99_ms=%.2f payloads=%d senders=%d seconds=%.1f\n",
		accepted, errs, float64(accepted)/elapsed.Seconds(), pct(0.50), pct(0.99), len(payloads), *senders, elapsed.Seconds())
	if accepted == 0 {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "webhookload:", err)
	os.Exit(1)
}
