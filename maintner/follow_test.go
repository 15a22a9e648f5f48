package maintner_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/logsync"
)

func TestFollowerCorpusTracksLeader(t *testing.T) {
	l := openLog(t, t.TempDir())
	leader := newCorpus(t, maintner.Options{Appender: l})
	h, err := logsync.NewHandler(logsync.HandlerOptions{Source: l})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/logs", h)
	mux.Handle("/logs/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ms := corpusgen.Sample(false)
	if err := leader.LogBatch(ctx, ms[:5]...); err != nil {
		t.Fatal(err)
	}

	f, err := logsync.NewFollower(logsync.FollowerOptions{URL: srv.URL + "/logs", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	follower := newCorpus(t, maintner.Options{})
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- follower.Follow(followCtx, f) }()

	waitRecords := func(n int64) {
		t.Helper()
		for {
			_, changed := follower.Watch()
			if follower.Stats().Records >= n {
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatalf("follower has %d records, want %d", follower.Stats().Records, n)
			}
		}
	}
	waitRecords(5)
	if err := leader.LogBatch(ctx, ms[5:]...); err != nil {
		t.Fatal(err)
	}
	waitRecords(int64(len(ms)))
	// The follower holds text in memory and the leader leaves it in the
	// log, but they count the same: every figure is equal, and so are
	// those of a maintnerd restarted on the log.
	restarted := newCorpus(t, maintner.Options{})
	if _, err := restarted.LoadLog(ctx, l); err != nil {
		t.Fatal(err)
	}
	want := leader.Stats()
	if want.TextBytes == 0 {
		t.Error("leader counts no text")
	}
	for name, c := range map[string]*maintner.Corpus{"follower": follower, "restarted leader": restarted} {
		if got := c.Stats(); got != want {
			t.Errorf("%s %+v, leader %+v", name, got, want)
		}
	}
	follower.RLock()
	ch := follower.GerritProject(corpusgen.SampleProject).Change(1001)
	if ch == nil || ch.Status != "merged" || ch.Vote(2, "TryBot-Result", corpusgen.BotAccount) != 1 {
		t.Errorf("followed change 1001 = %+v", ch)
	}
	follower.RUnlock()
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v", err)
	}
}
