package trybot_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/ingest"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/trybot/client"
)

// TestCorpusDiverges checks the trybot when maintnerd's log is replaced
// by a different history in the middle of a run: maintnerd restored from
// a backup taken before the change's latest patch set, which then goes
// on ingesting (so its log diverges from what the trybot followed). The
// trybot must notice (logsync.ErrDiverged), follow the new history with
// a new corpus and close the old one; the running try run must not be
// superseded by the older state the restored corpus shows at first, and
// must post its result once; runs already finished must not post again;
// and a change voted on the new history must run.
func TestCorpusDiverges(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "go")
	// "check" passes at once for changes with fast.txt, else when the
	// marker exists.
	builders := []config.Builder{{Name: "check", Steps: []config.Step{{Name: "test",
		Shell: "test -f fast.txt || while [ ! -e " + marker + " ]; do sleep 0.05; done"}}}}
	s := startStack(t, trystack.Options{Builders: builders})
	ctx := t.Context()

	// The trybot follows the logs through a switch, which first
	// forwards to the stack's maintnerd.
	orig, err := url.Parse(s.MaintnerdURL)
	if err != nil {
		t.Fatal(err)
	}
	var logs atomic.Pointer[http.Handler]
	fwd := http.Handler(httputil.NewSingleHostReverseProxy(orig))
	logs.Store(&fwd)
	sw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*logs.Load()).ServeHTTP(w, r) }))
	t.Cleanup(sw.Close)
	dir := t.TempDir()
	opts := s.TrybotOptions(dir)
	opts.Log = testLogger(t)
	opts.LogsURL = sw.URL + "/logs"
	tb := runTrybot(t, opts)
	runs, err := client.New(serveAPI(t, tb), nil)
	if err != nil {
		t.Fatal(err)
	}
	vote := func(n, ps int) {
		t.Helper()
		if err := s.Gerrit.Vote(ctx, n, ps, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
			t.Fatal(err)
		}
	}

	// A change tested and reported on the old history.
	a, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "fast", map[string]string{"fast.txt": "1\n"})
	if err != nil {
		t.Fatal(err)
	}
	vote(a, 1)
	waitFor(t, "TryBot-Result on the first change", 60*time.Second, func() bool { return resultVote(s, a, 1) != 0 })
	// A second change, at patch set 1, which the backup will hold.
	b, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "slow", map[string]string{"ok.txt": "1\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the corpus to have the second change", 30*time.Second, func() bool { _, _, ps := change(s, b); return ps == 1 })

	// The backup: a copy of maintnerd's log as it is now.
	backup := filepath.Join(t.TempDir(), "backup")
	copyLog(t, s.LogsURL, backup)

	// Patch set 2 is voted and its run starts (and waits).
	if _, _, err := s.Gerrit.UploadPatchSet(ctx, b, s.Owner, map[string]string{"ok.txt": "2\n"}, "second"); err != nil {
		t.Fatal(err)
	}
	vote(b, 2)
	var run client.Run
	waitFor(t, "the run of patch set 2 to build", 60*time.Second, func() bool {
		rl, err := runs.Runs(ctx, client.ListOptions{Change: int32(b)})
		if err != nil || len(rl) != 1 || len(rl[0].Builds) != 1 || rl[0].Builds[0].BuildID == 0 {
			return false
		}
		run = rl[0]
		return len(trybotMessages(s, b, 2)) == 1
	})

	// maintnerd is restored from the backup: its log is shorter than
	// what the trybot followed, and its corpus shows change b at patch
	// set 1 only.
	restored := restoreMaintnerd(t, s, backup)
	logs.Store(&restored.handler)
	sw.CloseClientConnections() // the follower's long poll ends; it asks again
	waitFor(t, "the trybot to follow the restored log", 30*time.Second, func() bool { return restored.longPolls.Load() > 0 })
	// Its scan of the restored corpus, which shows patch set 1 only,
	// leaves the run alone.
	time.Sleep(300 * time.Millisecond)
	if r, err := runs.Run(ctx, run.ID); err != nil || r.State.Finished() {
		t.Fatalf("the run of patch set 2 on the restored log's older state: %+v, %v; want it running", r, err)
	}
	// The restored maintnerd catches up with Gerrit, in a history of its
	// own: patch set 2 and its vote, then a third change.
	if err := restored.ing.Sync(ctx, s.Project, b); err != nil {
		t.Fatal(err)
	}
	// fastChange creates a change that passes at once, votes it and
	// waits for its result, with m ingesting it.
	fastChange := func(m *restoredMaintnerd, subject string) int {
		t.Helper()
		n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, subject, map[string]string{"fast.txt": subject + "\n"})
		if err != nil {
			t.Fatal(err)
		}
		vote(n, 1)
		if err := m.ing.Sync(ctx, s.Project, n); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "TryBot-Result on change "+subject, 60*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
		return n
	}
	c := fastChange(restored, "after")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result on patch set 2", 60*time.Second, func() bool { return resultVote(s, b, 2) != 0 })
	if err := restored.ing.Sync(ctx, s.Project, b); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a second result would come now
	for _, tc := range []struct {
		name   string
		n      int
		ps     int32
		msgs   int
		result int8
	}{
		{"first change", a, 1, 2, 1},
		{"second change, patch set 1", b, 1, 0, 0},
		{"second change, patch set 2", b, 2, 2, 1},
		{"third change", c, 1, 2, 1},
	} {
		if m := trybotMessages(s, tc.n, tc.ps); len(m) != tc.msgs || resultVote(s, tc.n, tc.ps) != tc.result {
			t.Errorf("%s: trybot messages %q, TryBot-Result %+d; want %d messages and %+d", tc.name, m, resultVote(s, tc.n, tc.ps), tc.msgs, tc.result)
		}
	}
	if r, err := runs.Run(ctx, run.ID); err != nil || r.State != client.StateSucceeded {
		t.Errorf("run of patch set 2: %+v, %v; want succeeded", r, err)
	}

	// The restored log is restored again, from a copy lacking its last
	// records, so that it diverges after its first (sealed) segments:
	// the old corpus, which maps them through its follower's cache, must
	// be closed, leaving each mapped once, by the new corpus's cache.
	backup2 := filepath.Join(t.TempDir(), "backup2")
	copyLog(t, sw.URL+"/logs", backup2)
	fastChange(restored, "lost")
	cache := filepath.Join(dir, "logcache")
	sealed := mappedSegments(t, cache)
	if len(sealed) == 0 {
		t.Fatalf("no sealed segment of the log cache is mapped: the restored log should have several")
	}
	restored2 := restoreMaintnerd(t, s, backup2)
	logs.Store(&restored2.handler)
	sw.CloseClientConnections()
	waitFor(t, "the trybot to follow the log restored again", 30*time.Second, func() bool { return restored2.longPolls.Load() > 0 })
	for path, n := range mappedSegments(t, cache) {
		if n != 1 {
			t.Errorf("%s is mapped %d times, want once (the replaced corpus was not closed)", path, n)
		}
	}
}

// mappedSegments counts this process's mappings of each file of the log
// cache dir (sealed segments are mapped), as /proc/self/maps lists them.
func mappedSegments(t *testing.T, dir string) map[string]int {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(maps), "\n") {
		if i := strings.Index(line, dir+"/"); i >= 0 {
			out[line[i:]]++
		}
	}
	return out
}

// copyLog copies the log served at logsURL into dir (a disk store's
// layout), as a backup of maintnerd's data directory would.
func copyLog(t *testing.T, logsURL, dir string) {
	t.Helper()
	f, err := logsync.NewFollower(logsync.FollowerOptions{URL: logsURL, CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(t.Context(), mutlog.Position{}, func(mutlog.Position, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// restoredMaintnerd is a corpus server on a copy of a log, ingesting the
// stack's Gerrit.
type restoredMaintnerd struct {
	handler http.Handler
	ing     *ingest.Gerrit
	// longPolls counts index requests waiting for the log to grow: a
	// follower sends one once it has delivered the whole log.
	longPolls atomic.Int64
}

func restoreMaintnerd(t *testing.T, s *trystack.Stack, dir string) *restoredMaintnerd {
	t.Helper()
	ctx := t.Context()
	st, err := mutlog.NewDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Small segments, so that the restored log has several.
	l, err := mutlog.Open(ctx, mutlog.Options{Store: st, MaxSegmentSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c, err := maintner.New(maintner.Options{Appender: l})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadLog(ctx, l); err != nil {
		t.Fatal(err)
	}
	h, err := logsync.NewHandler(logsync.HandlerOptions{Source: l, Path: "/logs"})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.NewGerrit(ingest.GerritOptions{Corpus: c, URL: s.Gerrit.URL(), Projects: []string{s.Project},
		Dir: t.TempDir(), Reconcile: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := &restoredMaintnerd{ing: ing}
	m.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("waitsizenot") {
			m.longPolls.Add(1)
		}
		h.ServeHTTP(w, r)
	})
	return m
}
