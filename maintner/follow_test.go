package maintner_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
)

func TestFollowerCorpusTracksLeader(t *testing.T) {
	l := openLog(t, t.TempDir())
	leader := newCorpus(t, maintner.Options{Appender: l})
	url := serveLogs(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ms := corpusgen.Sample(false)
	if err := leader.LogBatch(ctx, ms[:5]...); err != nil {
		t.Fatal(err)
	}

	f := newFollower(t, url, t.TempDir(), nil)
	follower := newCorpus(t, maintner.Options{})
	fl := startFollow(t, follower, f)
	fl.waitRecords(t, 5)
	if err := leader.LogBatch(ctx, ms[5:]...); err != nil {
		t.Fatal(err)
	}
	fl.waitRecords(t, int64(len(ms)))
	// The follower reads text from its cache and the leader from its
	// log, and they count the same: every figure is equal, and so are
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
	if err := fl.end(); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v", err)
	}
}

// TestFollowBadRecord: a record that does not decode stops Follow, unless
// the corpus was made with FollowSkipsBad, which counts it and applies
// the records after it.
func TestFollowBadRecord(t *testing.T) {
	l := openLog(t, t.TempDir())
	good := corpusgen.Sample(false)
	payloads := make([][]byte, 0, len(good)+1)
	for i, m := range good {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			// A truncated varint: no protobuf decoder accepts it.
			payloads = append(payloads, []byte{0x0a, 0xff})
		}
		payloads = append(payloads, b)
	}
	appendAll(t, l, payloads)
	url := serveLogs(t, l)

	for _, tc := range []struct {
		name string
		skip bool
	}{
		{"stops", false},
		{"skips", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCorpus(t, maintner.Options{FollowSkipsBad: tc.skip})
			fl := startFollow(t, c, newFollower(t, url, t.TempDir(), nil))
			if !tc.skip {
				<-fl.finished
				if fl.err == nil || errors.Is(fl.err, context.Canceled) {
					t.Fatalf("Follow returned %v, want the bad record's error", fl.err)
				}
				if st := c.Stats(); st.Records != 3 || st.BadRecords != 1 {
					t.Errorf("stats %+v, want the 3 records before the bad one and 1 bad", st)
				}
				return
			}
			fl.waitRecords(t, int64(len(good)))
			if st := c.Stats(); st.BadRecords != 1 {
				t.Errorf("stats %+v, want 1 bad record", st)
			}
			if err := fl.end(); !errors.Is(err, context.Canceled) {
				t.Errorf("Follow returned %v", err)
			}
		})
	}
}
