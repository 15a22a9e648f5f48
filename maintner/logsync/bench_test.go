package logsync

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// BenchmarkCatchUp measures a fresh follower syncing a 32 MiB log over
// loopback HTTP.
func BenchmarkCatchUp(b *testing.B) {
	st, _ := mutlog.NewDiskStore(b.TempDir())
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	p := make([]byte, 500)
	batch := make([][]byte, 256)
	for i := range batch {
		batch[i] = p
	}
	for l.Size() < 32<<20 {
		if _, err := l.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	h, _ := NewHandler(HandlerOptions{Source: l, PollTimeout: time.Second})
	mux := http.NewServeMux()
	mux.Handle("/logs", h)
	mux.Handle("/logs/", h)
	srv := httpTestServer(b, mux)
	b.SetBytes(l.Size())
	for b.Loop() {
		f, err := NewFollower(FollowerOptions{URL: srv + "/logs", CacheDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(context.Background(), mutlog.Position{}, func(mutlog.Position, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

func httpTestServer(b *testing.B, h http.Handler) string {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL
}
