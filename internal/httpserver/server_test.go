package httpserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// start runs a server until the test ends. It returns the server, a
// function that cancels its context, and a channel that yields Serve's
// result once.
func start(t *testing.T, opts Options) (*Server, context.CancelFunc, <-chan error) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- s.Serve(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return s, cancel, done
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthMetricsAndHandler(t *testing.T) {
	healthy := true
	s, _, _ := start(t, Options{
		Component: "test",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello "+r.URL.Path)
		}),
		Health: func(context.Context) error {
			if !healthy {
				return errors.New("disk full")
			}
			return nil
		},
	})
	if code, body := get(t, s.URL()+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	healthy = false
	if code, body := get(t, s.URL()+"/healthz"); code != 503 || !strings.Contains(body, "disk full") {
		t.Errorf("unhealthy /healthz = %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/x/y"); code != 200 || body != "hello /x/y" {
		t.Errorf("handler = %d %q", code, body)
	}
	code, body := get(t, s.URL()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"go_goroutines",
		"process_cpu_seconds_total",
		`tryd_http_requests_total{code="200",component="test",method="GET"}`,
		`tryd_http_requests_total{code="503",component="test",method="GET"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestGracefulShutdownFinishesInFlightRequest(t *testing.T) {
	started := make(chan struct{})
	s, cancel, done := start(t, Options{
		Component: "test",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "finished")
		}),
	})
	type result struct {
		code int
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/slow")
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		resc <- result{resp.StatusCode, string(b), err}
	}()
	<-started
	cancel() // shut down while the request is in flight
	res := <-resc
	if res.err != nil || res.code != 200 || res.body != "finished" {
		t.Errorf("in-flight request = %d %q %v; want 200 finished", res.code, res.body, res.err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after graceful shutdown", err)
	}
	// The listener is closed: new connections fail.
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func TestShutdownEndsLongPolls(t *testing.T) {
	started := make(chan struct{})
	s, cancel, done := start(t, Options{
		Component: "test",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done() // a long-poll that only ends when cancelled
			w.WriteHeader(http.StatusNoContent)
		}),
	})
	go http.Get(s.URL() + "/poll")
	<-started
	t0 := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("shutdown with a long-poll took %v", d)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Options{Component: "x"}); err == nil {
		t.Error("New without Handler succeeded")
	}
	if _, err := New(Options{Handler: http.NotFoundHandler()}); err == nil {
		t.Error("New without Component succeeded")
	}
	first, _, _ := start(t, Options{Component: "x", Handler: http.NotFoundHandler()})
	s, err := New(Options{Component: "y", Handler: http.NotFoundHandler(), Addr: first.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), first.Addr()) {
		t.Errorf("Listen on a busy address = %v, want an error naming it", err)
	}
}
