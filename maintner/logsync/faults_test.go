package logsync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/mutlog/gcsstore"
)

// TestFollowerOverGCSStore serves a log kept in (fake, in-process) GCS:
// sealed segments are read back from the store with ranges.
func TestFollowerOverGCSStore(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "log"})
	st, err := gcsstore.New(gcsstore.Options{Client: srv.Client(), Bucket: "log", Prefix: "maintner/"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st, MaxSegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	appendN(t, l, "gcs", 80)
	hs := serve(t, l, time.Minute)
	f := newFollower(t, hs.URL+"/logs", t.TempDir())
	got, err := syncAll(t, f, mutlog.Position{})
	if err != nil {
		t.Fatal(err)
	}
	if want := logRecords(t, l); fmt.Sprint(got) != fmt.Sprint(want) || len(l.Segments()) < 3 {
		t.Fatalf("follower got %d records, log has %d in %d segments", len(got), len(want), len(l.Segments()))
	}
}

// TestClosedLog checks that a long poll on a closed log answers 503, so
// clients retry elsewhere or later instead of polling a dead log.
func TestClosedLog(t *testing.T) {
	l := newLog(t, 0)
	appendN(t, l, "c", 1)
	hs := serve(t, l, time.Minute)
	done := make(chan int, 1)
	go func() {
		res, err := http.Get(fmt.Sprintf("%s/logs?waitsizenot=%d", hs.URL, l.Size()))
		if err != nil {
			t.Error(err)
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case code := <-done:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not end when the log closed")
	}
	if _, err := l.WaitSizeNot(context.Background(), l.Size()); !errors.Is(err, mutlog.ErrClosed) {
		t.Fatalf("WaitSizeNot on closed log: %v", err)
	}
}

// TestFollowerStuckIndex checks that an index request that never answers
// (a dead connection) is abandoned after IndexTimeout and retried.
func TestFollowerStuckIndex(t *testing.T) {
	l := newLog(t, 0)
	appendN(t, l, "s", 5)
	h, err := NewHandler(HandlerOptions{Source: l})
	if err != nil {
		t.Fatal(err)
	}
	var stuck atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/logs" && stuck.Add(1) <= 2 {
			<-r.Context().Done() // never answer
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	f, err := NewFollower(FollowerOptions{URL: hs.URL + "/logs", CacheDir: t.TempDir(), IndexTimeout: 50 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := syncAll(t, f, mutlog.Position{})
	if err != nil || len(got) != 5 || stuck.Load() < 3 {
		t.Fatalf("Sync: %d records, %v, after %d index requests", len(got), err, stuck.Load())
	}
}
