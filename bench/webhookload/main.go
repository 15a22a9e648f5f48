// Command webhookload is the load generator of bench/webhook-intake.sh: it
// sends signed GitHub webhook deliveries (the recorded payloads of
// ../shared/fixtures/github/webhooks, in turn, each with a fresh
// X-GitHub-Delivery) from N concurrent senders over loopback to a
// pubsubhelper for a fixed time, and prints the accepted rate and the
// acknowledgement latency percentiles as one line:
//
//	RESULT accepted=N errors=N rate=R p50_ms=X p99_ms=Y … cpu_us=C
//
// where C is the generator's own CPU time (user+sys) per request sent,
// warm-up included, so that its share of the shared cores is known.
//
// Each sender owns one keep-alive HTTP/1.1 connection, as a webhook
// sender's connection pool would hold, writes each request in one write
// (headers as GitHub sends them, the body signed with HMAC-SHA256 under
// the secret; a payload's signature is computed once, since GitHub signs
// only the body) and reads the response with net/http's parser. It does
// not go through http.Client, whose per-connection reader and writer
// goroutines and per-request allocations would cost about as much CPU
// as the server's work on the same 2 cores and so measure the generator
// rather than the server. Latency is from just before the request is
// written to the end of the response body.
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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
	addr, err := hostPort(*url)
	if err != nil {
		fail(err)
	}

	var (
		sent     atomic.Int64
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
			var c *conn
			var req []byte
			for !stop.Load() {
				n := seq.Add(1)
				p := payloads[int(n)%len(payloads)]
				req = appendRequest(req[:0], addr, p, *prefix, n)
				counted := measure.Load()
				start := time.Now()
				var err error
				keep := false
				if c == nil {
					c, err = dial(addr)
				}
				if err == nil {
					keep, err = c.roundTrip(req)
				}
				d := time.Since(start)
				sent.Add(1)
				if !keep && c != nil {
					c.close()
					c = nil
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
			if c != nil {
				c.close()
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
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("RESULT accepted=%d errors=%d rate=%.0f p50_ms=%.2f p99_ms=%.2f payloads=%d senders=%d seconds=%.1f cpu_us=%.0f\n",
		accepted, errs, float64(accepted)/elapsed.Seconds(), pct(0.50), pct(0.99), len(payloads), *senders, elapsed.Seconds(),
		float64(cpu.Microseconds())/float64(max(sent.Load(), 1)))
	if accepted == 0 {
		os.Exit(1)
	}
}

// hostPort returns the host:port of an http:// base URL.
func hostPort(base string) (string, error) {
	u, err := neturl.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("-url %q: want http://host:port", base)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return u.Host + ":80", nil
	}
	return u.Host, nil
}

// appendRequest appends delivery n of payload p as an HTTP/1.1 request
// with the headers GitHub sends.
func appendRequest(b []byte, host string, p payload, prefix string, n int64) []byte {
	b = append(b, "POST /github-webhook HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: GitHub-Hookshot/webhookload\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(p.body)), 10)
	b = append(b, "\r\nX-GitHub-Event: "...)
	b = append(b, p.event...)
	b = append(b, "\r\nX-GitHub-Delivery: "...)
	b = append(b, prefix...)
	b = append(b, '-')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, "\r\nX-Hub-Signature-256: "...)
	b = append(b, p.sig...)
	b = append(b, "\r\n\r\n"...)
	return append(b, p.body...)
}

// conn is one sender's keep-alive connection.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

func dial(addr string) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096)}, nil
}

func (c *conn) close() { c.nc.Close() }

// roundTrip writes req and reads the whole response; a status other than
// 2xx is an error. keep reports whether the connection can carry the
// next request.
func (c *conn) roundTrip(req []byte) (keep bool, err error) {
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.nc.Write(req); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode/100 != 2 {
		return !resp.Close, fmt.Errorf("status %s", resp.Status)
	}
	return !resp.Close, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "webhookload:", err)
	os.Exit(1)
}
