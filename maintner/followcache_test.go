package maintner_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// followHelperEnv, when set to "URL|CACHEDIR", makes the test binary a
// follower process (for TestFollowAfterKill9) instead of running tests.
const followHelperEnv = "TRYD_MAINTNER_FOLLOW_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(followHelperEnv); spec != "" {
		os.Exit(followHelper(spec))
	}
	os.Exit(m.Run())
}

// followHelper follows the log at url into a corpus until it is killed,
// printing the record count each time it caught up.
func followHelper(spec string) int {
	url, dir, _ := strings.Cut(spec, "|")
	var c *maintner.Corpus
	f, err := logsync.NewFollower(logsync.FollowerOptions{URL: url, CacheDir: dir,
		CaughtUp: func(mutlog.Position) { fmt.Printf("caught up %d\n", c.Stats().Records) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err = maintner.New(maintner.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Fprintln(os.Stderr, c.Follow(context.Background(), f))
	return 3
}

// swapSource serves whichever log it holds, so that a test can replace
// a server's history under its followers.
type swapSource struct{ p atomic.Pointer[mutlog.Log] }

func (s *swapSource) Segments() []mutlog.SegmentInfo { return s.p.Load().Segments() }
func (s *swapSource) WaitSizeNot(ctx context.Context, n int64) (int64, error) {
	return s.p.Load().WaitSizeNot(ctx, n)
}
func (s *swapSource) ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error) {
	return s.p.Load().ReadSegment(ctx, num, off, n)
}

// serveLogs serves src's /logs with logsync.Handler on 127.0.0.1:0 and
// returns the index URL.
func serveLogs(t testing.TB, src logsync.Source) string {
	t.Helper()
	h, err := logsync.NewHandler(logsync.HandlerOptions{Source: src})
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
	return srv.URL + "/logs"
}

// generated returns the record payloads of a corpusgen history of about
// size bytes.
func generated(t testing.TB, size int64, seed uint64, gerritShare float64) [][]byte {
	t.Helper()
	var out [][]byte
	err := corpusgen.Generate(context.Background(), corpusgen.Options{Size: size, Seed: seed, GerritShare: gerritShare}, func(p []byte) error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// segLog opens a disk log in dir with segments of at most maxSeg bytes
// (0: the default).
func segLog(t testing.TB, dir string, maxSeg int64) *mutlog.Log {
	t.Helper()
	st, err := mutlog.NewDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st, MaxSegmentSize: maxSeg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendAll appends payloads in batches of 200 records.
func appendAll(t testing.TB, l *mutlog.Log, payloads [][]byte) {
	t.Helper()
	for b := range slices.Chunk(payloads, 200) {
		if _, err := l.Append(context.Background(), b...); err != nil {
			t.Fatal(err)
		}
	}
}

func newFollower(t testing.TB, url, dir string, caughtUp func(mutlog.Position)) *logsync.Follower {
	t.Helper()
	f, err := logsync.NewFollower(logsync.FollowerOptions{URL: url, CacheDir: dir, CaughtUp: caughtUp,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// following is a Follow running in the background: once finished is
// closed, err is what it returned.
type following struct {
	c        *maintner.Corpus
	stop     context.CancelFunc
	finished chan struct{}
	err      error
}

func startFollow(t testing.TB, c *maintner.Corpus, f *logsync.Follower) *following {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl := &following{c: c, stop: cancel, finished: make(chan struct{})}
	go func() {
		fl.err = c.Follow(ctx, f)
		close(fl.finished)
	}()
	t.Cleanup(func() { fl.end() })
	return fl
}

// end stops Follow and returns what it returned.
func (fl *following) end() error {
	fl.stop()
	<-fl.finished
	return fl.err
}

// waitRecords waits until the corpus has applied n records (or Follow
// ended).
func (fl *following) waitRecords(t testing.TB, n int64) {
	t.Helper()
	deadline := time.After(45 * time.Second)
	for {
		_, changed := fl.c.Watch()
		if got := fl.c.Stats().Records; got >= n {
			if got > n {
				t.Fatalf("follower applied %d records, the log has %d", got, n)
			}
			return
		}
		select {
		case <-changed:
		case <-fl.finished:
			t.Fatalf("Follow returned %v after %d of %d records", fl.err, fl.c.Stats().Records, n)
		case <-deadline:
			t.Fatalf("follower has %d records, want %d", fl.c.Stats().Records, n)
		}
	}
}

// corpusTexts reads every long text of c (issue, comment and review
// bodies, patch set commit messages) through c.Text, keyed by what it
// is. refs counts the texts left in the log rather than held in memory;
// failed lists texts that could not be read, with the error.
func corpusTexts(c *maintner.Corpus) (texts map[string]string, refs int, failed map[string]error) {
	texts, failed = map[string]string{}, map[string]error{}
	c.RLock()
	defer c.RUnlock()
	add := func(key string, t maintner.Text) {
		if t.Len() == 0 {
			return
		}
		if !t.InMemory() {
			refs++
		}
		s, err := c.Text(t)
		if err != nil {
			failed[key] = err
			return
		}
		texts[key] = s
	}
	for _, r := range c.GitHubRepos() {
		for _, is := range r.Issues() {
			key := fmt.Sprintf("%s#%d", r.FullName(), is.Number)
			add(key+" body", is.Body)
			for _, cm := range is.Comments {
				add(fmt.Sprintf("%s comment %d", key, cm.ID), cm.Body)
			}
			for _, rv := range is.Reviews {
				add(fmt.Sprintf("%s review %d", key, rv.ID), rv.Body)
			}
		}
	}
	for _, p := range c.GerritProjects() {
		for _, ch := range p.Changes() {
			for _, ps := range ch.PatchSets {
				if gc := p.Commit(ps.Commit); gc != nil {
					add(fmt.Sprintf("%s/%d/%d %s", p.Name, ch.Number, ps.Number, ps.Commit), gc.Msg)
				}
			}
		}
	}
	return texts, refs, failed
}

// loadDirTexts loads dir as maintnerd would after a restart and returns
// its texts and stats.
func loadDirTexts(t testing.TB, dir string) (map[string]string, int, maintner.Stats) {
	t.Helper()
	c := newCorpus(t, maintner.Options{})
	defer c.Close()
	if err := c.LoadDir(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	texts, refs, failed := corpusTexts(c)
	if len(failed) > 0 {
		t.Fatalf("LoadDir of %s: %d texts unreadable: %v", dir, len(failed), failed)
	}
	return texts, refs, c.Stats()
}

// sameTexts compares a follower's texts with those of a LoadDir of the
// leader's log.
func sameTexts(t testing.TB, what string, got map[string]string, gotRefs int, want map[string]string, wantRefs int) {
	t.Helper()
	if len(want) < 50 || wantRefs < 50 {
		t.Fatalf("the log has only %d texts (%d in the log): too few to compare", len(want), wantRefs)
	}
	if gotRefs != wantRefs {
		t.Errorf("%s leaves %d texts in the log, LoadDir %d", what, gotRefs, wantRefs)
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("%s lacks %s", what, k)
		} else if g != want[k] {
			t.Errorf("%s: %s = %.60q, LoadDir %.60q", what, k, g, want[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s has %d texts, LoadDir %d", what, len(got), len(want))
	}
}

// likeLoadDir checks that c, a follower of the log in dir, has the stats
// and reads every text as a LoadDir of dir, and returns those texts.
func likeLoadDir(t testing.TB, what string, c *maintner.Corpus, dir string) (texts map[string]string, refs int) {
	t.Helper()
	want, wantRefs, wantStats := loadDirTexts(t, dir)
	got, gotRefs, failed := corpusTexts(c)
	for k, err := range failed {
		t.Errorf("%s: %s: %v", what, k, err)
	}
	sameTexts(t, what, got, gotRefs, want, wantRefs)
	if s := c.Stats(); s != wantStats {
		t.Errorf("%s stats %+v, LoadDir %+v", what, s, wantStats)
	}
	return want, wantRefs
}

// TestFollowTextMatchesLoadDir follows a log that grows across many
// segment seals (the follower's growing cache file is renamed each time)
// and checks that every text the follower reads back is the text a
// LoadDir of the leader's log reads, and is read from the cache, not
// held in memory.
func TestFollowTextMatchesLoadDir(t *testing.T) {
	logDir := t.TempDir()
	l := segLog(t, logDir, 64<<10)
	payloads := generated(t, 1200<<10, 3, 0.4)
	url := serveLogs(t, l)
	appendAll(t, l, payloads[:len(payloads)/4])

	cacheDir := t.TempDir()
	f := newFollower(t, url, cacheDir, nil)
	c := newCorpus(t, maintner.Options{})
	fl := startFollow(t, c, f)
	fl.waitRecords(t, int64(len(payloads)/4))
	// The rest arrives while the follower tails, in batches that seal
	// segments under it.
	n := len(payloads) / 4
	for b := range slices.Chunk(payloads[n:], len(payloads)/8) {
		appendAll(t, l, b)
		n += len(b)
		fl.waitRecords(t, int64(n))
	}
	fl.waitRecords(t, int64(len(payloads)))
	if n := len(l.Segments()); n < 10 {
		t.Fatalf("the log has %d segments, want many seals", n)
	}

	want, wantRefs := likeLoadDir(t, "follower", c, logDir)

	// The text stays readable after Follow returns and the follower is
	// closed (the corpus holds its own reader), until the corpus is
	// closed.
	if err := fl.end(); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v", err)
	}
	f.Close()
	if got, _, failed := corpusTexts(c); len(failed) > 0 || len(got) != len(want) {
		t.Errorf("after the follower closed: %d texts, %d unreadable", len(got), len(failed))
	}
	c.Close()
	if _, _, failed := corpusTexts(c); len(failed) != wantRefs {
		t.Errorf("after Close, %d texts read from the cache fail, want %d", len(failed), wantRefs)
	}
	if err := c.Follow(context.Background(), f); !errors.Is(err, maintner.ErrNotEmpty) {
		t.Errorf("Follow on a used corpus: %v, want ErrNotEmpty", err)
	}
}

// liveHeap returns the heap in use (and allocated) after a collection,
// once build has run, minus what was in use before, keeping what build
// returned alive.
func liveHeap(build func() any) (inuse, alloc int64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := build()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return int64(after.HeapInuse) - int64(before.HeapInuse), int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

// TestFollowHeap follows a corpus with a lot of text and compares the
// heap it keeps with that of LoadDir of the same log, and with the heap
// of a follower applying records without positions (Apply: text copied
// into memory, as Follow did before it kept references into the cache).
// Run with -v for the figures.
func TestFollowHeap(t *testing.T) {
	logDir := t.TempDir()
	l := segLog(t, logDir, 4<<20)
	// GitHub-heavy: issue and comment bodies are most of its bytes.
	appendAll(t, l, generated(t, 12<<20, 7, 0.05))
	url := serveLogs(t, l)
	cacheDir := t.TempDir()
	ctx := context.Background()

	// follow runs a fresh follower on the cache until it has caught up
	// with the (unchanging) log, applying each record with apply.
	follow := func(run func(ctx context.Context, f *logsync.Follower) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		f := newFollower(t, url, cacheDir, func(mutlog.Position) { cancel() })
		defer f.Close()
		if err := run(ctx, f); !errors.Is(err, context.Canceled) {
			t.Fatalf("follow: %v", err)
		}
	}
	// The first follower downloads the log: the measured ones read the
	// cache, so that all three build from the same bytes.
	follow(func(ctx context.Context, f *logsync.Follower) error {
		return f.Run(ctx, mutlog.Position{}, func(mutlog.Position, []byte) error { return nil })
	})

	var loaded, followed, applied *maintner.Corpus
	loadIn, loadAlloc := liveHeap(func() any {
		loaded = newCorpus(t, maintner.Options{})
		if err := loaded.LoadDir(ctx, logDir); err != nil {
			t.Fatal(err)
		}
		return loaded
	})
	wantTexts, _, wantStats := loadDirTexts(t, logDir)
	loaded.Close()
	loaded = nil
	followIn, followAlloc := liveHeap(func() any {
		followed = newCorpus(t, maintner.Options{})
		follow(func(ctx context.Context, f *logsync.Follower) error { return followed.Follow(ctx, f) })
		return followed
	})
	likeLoadDir(t, "follower", followed, logDir)
	followed.Close()
	followed = nil
	applyIn, applyAlloc := liveHeap(func() any {
		applied = newCorpus(t, maintner.Options{})
		follow(func(ctx context.Context, f *logsync.Follower) error {
			return f.Run(ctx, mutlog.Position{}, func(_ mutlog.Position, p []byte) error { return applied.Apply(p) })
		})
		return applied
	})
	if s := applied.Stats(); s != wantStats {
		t.Fatalf("applied stats %+v, LoadDir %+v", s, wantStats)
	}
	applied = nil

	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	t.Logf("log %s, text %s in %d texts; heap in use (allocated) after GC: LoadDir %s (%s), Follow %s (%s), Follow copying text (before) %s (%s)",
		mib(l.Size()), mib(wantStats.TextBytes), len(wantTexts), mib(loadIn), mib(loadAlloc), mib(followIn), mib(followAlloc), mib(applyIn), mib(applyAlloc))
	t.Logf("follow-heap: Follow/LoadDir %.2f, copying/LoadDir %.2f, copying/Follow %.2f",
		float64(followIn)/float64(loadIn), float64(applyIn)/float64(loadIn), float64(applyIn)/float64(followIn))
	// A follower's heap is a loaded corpus's, within a small factor
	// (it applies record by record, so its slices grow by appending
	// rather than being cut from a loader's slabs); copying the text
	// costs at least its size on top, which this bound excludes.
	bound := loadIn*3/2 + 1<<20
	if followIn > bound {
		t.Errorf("Follow keeps %s in use, more than %s (1.5 × LoadDir's %s + 1 MiB)", mib(followIn), mib(bound), mib(loadIn))
	}
	if applyIn <= bound || applyIn < followIn+wantStats.TextBytes/2 {
		t.Errorf("copying the text keeps only %s in use, within %s: the log has too little text for this test to mean anything", mib(applyIn), mib(bound))
	}
}

// TestFollowDivergence replaces the server's history under a follower:
// Follow reports logsync.ErrDiverged, the old corpus's text after the
// point of divergence fails to read (logsync.ErrStale) instead of
// returning the new history's bytes, text before it stays readable, and
// a new corpus following with the same follower reads the new history.
func TestFollowDivergence(t *testing.T) {
	first := generated(t, 320<<10, 11, 0.4)
	other := generated(t, 320<<10, 12, 0.4)
	for _, tc := range []struct {
		name   string
		common int // records the two histories share
	}{
		{"different history", 0},
		{"same prefix then different", len(first) / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l1 := segLog(t, t.TempDir(), 32<<10)
			appendAll(t, l1, first)
			dir2 := t.TempDir()
			l2 := segLog(t, dir2, 32<<10)
			appendAll(t, l2, first[:tc.common])
			appendAll(t, l2, other)
			src := &swapSource{}
			src.p.Store(l1)
			f := newFollower(t, serveLogs(t, src), t.TempDir(), nil)

			old := newCorpus(t, maintner.Options{})
			fl := startFollow(t, old, f)
			fl.waitRecords(t, int64(len(first)))
			before, refs, _ := corpusTexts(old)
			src.p.Store(l2)
			if _, err := l1.Append(context.Background(), []byte("wake")); err != nil { // ends the follower's long poll on l1
				t.Fatal(err)
			}
			var err error
			select {
			case <-fl.finished:
				err = fl.err
			case <-time.After(30 * time.Second):
				t.Fatal("Follow did not notice the new history")
			}
			var de *logsync.DivergedError
			if !errors.As(err, &de) || !errors.Is(err, logsync.ErrDiverged) {
				t.Fatalf("Follow after the history changed: %v, want logsync.ErrDiverged", err)
			}
			t.Logf("Follow: %v", err)

			// check reads the old corpus's text: never other bytes.
			check := func(when string) (readable, stale, notCached int) {
				t.Helper()
				got, _, failed := corpusTexts(old)
				for k, s := range got {
					if s != before[k] {
						t.Errorf("%s: old corpus's %s reads %.60q, was %.60q", when, k, s, before[k])
					}
				}
				for k, err := range failed {
					switch {
					case !errors.Is(err, maintner.ErrText):
						t.Errorf("%s: %s: %v, want maintner.ErrText", when, k, err)
					case errors.Is(err, logsync.ErrStale):
						stale++
					case errors.Is(err, logsync.ErrNotCached):
						notCached++
					default:
						t.Errorf("%s: %s: %v, want logsync.ErrStale or ErrNotCached", when, k, err)
					}
				}
				return refs - len(failed), stale, notCached
			}
			readable, stale, notCached := check("after divergence")
			t.Logf("after divergence: of %d texts in the cache, %d readable, %d stale, %d being refetched", refs, readable, stale, notCached)
			if stale == 0 {
				t.Error("no text of the old corpus is stale")
			}

			// A new corpus follows the new history with the same
			// follower (and cache).
			fresh := newCorpus(t, maintner.Options{})
			fl2 := startFollow(t, fresh, f)
			fl2.waitRecords(t, int64(tc.common+len(other)))
			likeLoadDir(t, "new corpus", fresh, dir2)

			readable, stale, notCached = check("after following the new history")
			t.Logf("after refetch: of %d texts in the cache, %d readable, %d stale", refs, readable, stale)
			if stale == 0 || notCached > 0 {
				t.Errorf("old corpus: %d texts stale, %d not cached; want some stale, none missing", stale, notCached)
			}
			if tc.common > 0 && readable < refs/4 {
				t.Errorf("only %d of %d texts of the shared history stay readable", readable, refs)
			}
		})
	}
}

// followProcess starts the test binary as a follower of url on
// cacheDir (see followHelper) and returns it with its "caught up N"
// lines.
func followProcess(t *testing.T, url, cacheDir string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), followHelperEnv+"="+url+"|"+cacheDir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	t.Cleanup(func() { kill.Stop(); cmd.Process.Kill() })
	caught := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			caught <- sc.Text()
		}
		close(caught)
	}()
	return cmd, caught
}

// kill9 kills a follower process with SIGKILL and waits for it.
func kill9(t *testing.T, cmd *exec.Cmd, caught <-chan string) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGKILL)
	for range caught {
	}
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("follower process did not die of SIGKILL: %v", cmd.ProcessState)
	}
}

// waitCaughtUp waits for a follower process to say it caught up with n
// records.
func waitCaughtUp(t *testing.T, caught <-chan string, n int) {
	t.Helper()
	for line := range caught {
		if line == fmt.Sprintf("caught up %d", n) {
			return
		}
	}
	t.Fatalf("follower process ended before it caught up with %d records", n)
}

// TestFollowAfterKill9 kills follower processes (SIGKILL): one while it
// syncs a growing log, wherever it is, and one that caught up, whose
// growing cache file is then cut inside a record (what an append
// interrupted by the kill leaves). A follower then started on the same
// cache directory reads every text as a LoadDir of the leader's log
// reads it.
func TestFollowAfterKill9(t *testing.T) {
	logDir := t.TempDir()
	l := segLog(t, logDir, 64<<10)
	payloads := generated(t, 1<<20, 5, 0.4)
	third := len(payloads) / 3
	appendAll(t, l, payloads[:third])
	url := serveLogs(t, l)
	cacheDir := t.TempDir()

	// Killed mid-sync.
	cmd, caught := followProcess(t, url, cacheDir)
	waitCaughtUp(t, caught, third)
	appendAll(t, l, payloads[third:2*third])
	select {
	case <-caught:
	case <-time.After(20 * time.Millisecond):
	}
	kill9(t, cmd, caught)

	// Killed once caught up, with a torn append.
	cmd, caught = followProcess(t, url, cacheDir)
	waitCaughtUp(t, caught, 2*third)
	kill9(t, cmd, caught)
	growing, _ := filepath.Glob(filepath.Join(cacheDir, "*.growing.mutlog"))
	if len(growing) != 1 {
		ents, _ := os.ReadDir(cacheDir)
		t.Fatalf("cache has growing segments %q, want one (%v)", growing, ents)
	}
	data, err := os.ReadFile(growing[0])
	if err != nil {
		t.Fatal(err)
	}
	var last, lastLen int64
	if _, err := reclog.Scan(growing[0], data, 0, func(off int64, p []byte) error {
		last, lastLen = off, reclog.RecordLen(off, len(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if lastLen == 0 {
		t.Fatalf("growing cache segment %s holds no record", growing[0])
	}
	if err := os.Truncate(growing[0], last+lastLen/2); err != nil {
		t.Fatal(err)
	}
	t.Logf("cut %s from %d to %d bytes, inside its last record", filepath.Base(growing[0]), len(data), last+lastLen/2)

	appendAll(t, l, payloads[2*third:])
	f := newFollower(t, url, cacheDir, nil)
	c := newCorpus(t, maintner.Options{})
	startFollow(t, c, f).waitRecords(t, int64(len(payloads)))
	likeLoadDir(t, "restarted follower", c, logDir)
	if tmp, _ := filepath.Glob(filepath.Join(cacheDir, "tmp-*")); len(tmp) > 0 {
		t.Errorf("cache keeps temporary files %q", tmp)
	}
}

// TestFollowCorpusClosed closes a corpus while it follows: what it
// applied before reads from the cache until then (and fails after), and
// what it applies after keeps its text in memory, readable.
func TestFollowCorpusClosed(t *testing.T) {
	l := segLog(t, t.TempDir(), 64<<10)
	payloads := generated(t, 300<<10, 9, 0.4)
	half := len(payloads) / 2
	appendAll(t, l, payloads[:half])
	f := newFollower(t, serveLogs(t, l), t.TempDir(), nil)
	c := newCorpus(t, maintner.Options{})
	fl := startFollow(t, c, f)
	fl.waitRecords(t, int64(half))
	before, refs, _ := corpusTexts(c)
	if refs == 0 {
		t.Fatal("no text left in the cache")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, payloads[half:])
	fl.waitRecords(t, int64(len(payloads)))
	after, _, failed := corpusTexts(c)
	if len(failed) != refs {
		t.Errorf("after Close, %d texts fail to read, want the %d left in the cache before", len(failed), refs)
	}
	for k, err := range failed {
		if _, ok := before[k]; !ok || !errors.Is(err, maintner.ErrText) {
			t.Errorf("%s: %v", k, err)
		}
	}
	if len(after)+len(failed) <= len(before) {
		t.Errorf("%d texts readable after Close, %d before: none applied since", len(after), len(before))
	}
}
