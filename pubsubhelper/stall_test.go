package pubsubhelper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/pubsubhelper/client"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// TestSlowBodyTimesOut checks that a sender that declares a body and
// stops sending it loses its connection after BodyTimeout instead of
// holding it (and a handler goroutine) forever.
func TestSlowBodyTimesOut(t *testing.T) {
	ts := startServer(t, "", func(o *Options) { o.BodyTimeout = 200 * time.Millisecond })
	for _, tc := range []struct{ name, path, auth string }{
		{"github", "/github-webhook", "X-Hub-Signature-256: sha256=00\r\n"},
		{"gerrit", "/gerrit-webhook", "Authorization: Bearer " + testGerritSecret + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\nX-GitHub-Delivery: slow\r\n%sContent-Length: 1000\r\n\r\n{\"a\":", tc.path, tc.auth)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 400 {
					t.Fatalf("stalled body answered %d", resp.StatusCode)
				}
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection still open 10s after a 200ms body timeout")
			}
			t.Logf("answered or closed after %v (err %v)", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// TestUnsignedBodyNotRead checks that a GitHub delivery without a
// signature is refused as such (401, not a body read error), and within
// BodyTimeout even though net/http drains an unread body before it
// answers.
func TestUnsignedBodyNotRead(t *testing.T) {
	ts := startServer(t, "", func(o *Options) { o.BodyTimeout = 300 * time.Millisecond })
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/github-webhook", pr)
	req.Header.Set("X-GitHub-Event", "issues")
	req.Header.Set("X-GitHub-Delivery", "unsigned")
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		if code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("unsigned delivery not answered while its body is pending")
	}
}

// TestDeclaredLengthNotPreallocated checks that a body's declared
// Content-Length alone does not make the server allocate it: 25 MiB
// declared and a few bytes sent must not cost 25 MiB.
func TestDeclaredLengthNotPreallocated(t *testing.T) {
	ts := startServer(t, "", nil)
	h := ts.Options
	s, err := New(h)
	if err != nil {
		t.Fatal(err)
	}
	handler := s.Handler()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 4; i++ {
		req := httptest.NewRequest(http.MethodPost, "/github-webhook", strings.NewReader(`{"a":1}`))
		req.ContentLength = 25<<20 - 1
		req.Header.Set("X-Hub-Signature-256", "sha256=00")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
		t.Errorf("4 requests declaring 25 MiB allocated %d MiB", got>>20)
	}
}

// TestSubscribeAbandonsSilentPoll checks that a subscription whose server
// accepted a long poll and went silent gives the poll up after its
// timeout plus PollGrace and polls again, rather than waiting forever.
func TestSubscribeAbandonsSilentPoll(t *testing.T) {
	polls := make(chan struct{}, 100)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	c, err := client.New(srv.URL, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- c.Subscribe(ctx, pubsubtypes.Cursor{}, pubsubtypes.Filter{}, client.SubscribeOptions{
			WaitOptions: client.WaitOptions{Timeout: 100 * time.Millisecond},
			PollGrace:   200 * time.Millisecond,
			MinBackoff:  10 * time.Millisecond,
		}, func(context.Context, *pubsubtypes.Event) error { return nil })
	}()
	for i := 0; i < 2; i++ {
		select {
		case <-polls:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d polls in 10s: the silent poll was never abandoned", i)
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe returned %v, want context.Canceled", err)
	}
}
