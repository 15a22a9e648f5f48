package gitmirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

// fakeClock hands every After request to the test, which fires it.
type fakeClock struct {
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d time.Duration
	c chan time.Time
}

func (f *fakeClock) Now() time.Time { return f.now }
func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.waits <- fakeWait{d, c}
	return c
}

func TestBackoffDoublesAndNudgesWait(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), waits: make(chan fakeWait, 100)}
	tm := startMirror(t, Options{
		Clock:      clock,
		BackoffMin: time.Second, BackoffMax: 8 * time.Second,
		Repos: []Repo{{Name: "proj", URL: filepath.Join(t.TempDir(), "missing.git")}},
	})
	next := func() fakeWait {
		select {
		case w := <-clock.waits:
			return w
		case <-time.After(20 * time.Second):
			t.Fatal("no wait requested")
			return fakeWait{}
		}
	}
	var got []time.Duration
	for range 5 {
		w := next()
		got = append(got, w.d)
		if len(got) == 2 {
			// While backing off, Sync reports the failure at once and a
			// nudge does not start a fetch.
			before := tm.Status().Repos[0].Fetches
			if err := tm.Sync(ctxT(t), "proj"); !errors.Is(err, ErrUpstream) {
				t.Errorf("Sync during backoff: %v", err)
			}
			tm.Nudge("proj")
			time.Sleep(50 * time.Millisecond)
			if after := tm.Status().Repos[0].Fetches; after != before {
				t.Errorf("nudge during backoff fetched (%d -> %d)", before, after)
			}
		}
		w.c <- clock.now
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backoff waits %v, want %v", got, want)
	}
	st := tm.Status().Repos[0]
	if st.Cloned || st.Failures < 5 || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
	if strings.Contains(st.LastError, "\n\n") {
		t.Errorf("odd error %q", st.LastError)
	}
}

// stallingGit serves bare repositories like gitHTTP, but while stall is
// set, an upload-pack response stops after its first bytes and hangs, as
// a connection that dies half-way through a fetch.
func stallingGit(root string, stall *atomic.Bool) http.Handler {
	backend := gitHTTP(root, false)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall.Load() && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			backend.ServeHTTP(&stallWriter{ResponseWriter: w, left: 2048, ctx: r.Context()}, r)
			return
		}
		backend.ServeHTTP(w, r)
	})
}

type stallWriter struct {
	http.ResponseWriter
	left int
	ctx  context.Context
}

func (s *stallWriter) Write(p []byte) (int, error) {
	n := min(len(p), s.left)
	s.left -= n
	if _, err := s.ResponseWriter.Write(p[:n]); err != nil {
		return 0, err
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if n < len(p) {
		// Hang until the client (git, killed by FetchTimeout) goes away.
		<-s.ctx.Done()
		return n, s.ctx.Err()
	}
	return n, nil
}

func TestKilledFetchLeavesUsableMirror(t *testing.T) {
	up := newUpstream(t)
	var stall atomic.Bool
	base := serve(t, stallingGit(filepath.Dir(up.bare), &stall))
	tm := startMirror(t, Options{
		FetchTimeout: 2 * time.Second,
		Repos:        []Repo{{Name: "proj", URL: base + "/" + filepath.Base(up.bare)}},
	})
	ctx := ctxT(t)
	a := gitT(t, up.bare, "rev-parse", "main")

	// A big incompressible file makes the pack much longer than what the
	// stalling server lets through.
	big := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(big)
	writeFile(t, filepath.Join(up.work, "big.bin"), string(big), 0o644)
	b := up.push("big")
	stall.Store(true)
	err := tm.Sync(ctx, "proj")
	if !errors.Is(err, ErrUpstream) || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("stalled fetch: %v, want ErrUpstream after the fetch timeout", err)
	}
	r := tm.repos["proj"]
	if got := gitT(t, r.dir, "rev-parse", "refs/heads/main"); got != a {
		t.Errorf("after killed fetch main = %s, want the old %s", got, a)
	}
	gitT(t, r.dir, "fsck", "--no-progress")
	if resp, body := getTarball(t, tm.url, "proj", a); resp.StatusCode != 200 {
		t.Errorf("old revision after killed fetch: %s %s", resp.Status, body)
	}
	// A killed git can leave lock files; the next fetch must not trip
	// on them.
	writeFile(t, filepath.Join(r.dir, "refs", "heads", "main.lock"), a+"\n", 0o644)
	writeFile(t, filepath.Join(r.dir, "packed-refs.lock"), "", 0o644)

	stall.Store(false)
	eventually(t, func() error { return tm.Sync(ctx, "proj") })
	if resp, body := getTarball(t, tm.url, "proj", b); resp.StatusCode != 200 {
		t.Errorf("new revision after recovery: %s %s", resp.Status, body)
	}
	gitT(t, r.dir, "fsck", "--no-progress")
}

// fakePubsub is a pubsubhelper's /waitevent: it answers with queued
// events, or with a long-poll timeout after a short wait.
type fakePubsub struct {
	events chan string
	mu     sync.Mutex
	afters []string
}

func (f *fakePubsub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/waitevent" {
		http.NotFound(w, r)
		return
	}
	after := r.URL.Query().Get("after")
	if _, err := time.Parse(time.RFC3339Nano, after); err != nil {
		http.Error(w, "bad after", 400)
		return
	}
	f.mu.Lock()
	f.afters = append(f.afters, after)
	f.mu.Unlock()
	select {
	case ev := <-f.events:
		fmt.Fprint(w, ev)
	case <-time.After(100 * time.Millisecond):
		fmt.Fprintf(w, `{"Time":%q,"LongPollTimeout":true}`, time.Now().UTC().Format(time.RFC3339Nano))
	case <-r.Context().Done():
	}
}

func TestPubsubhelperEventsNudge(t *testing.T) {
	gerritUp, githubUp := newUpstream(t), newUpstream(t)
	ps := &fakePubsub{events: make(chan string, 10)}
	psURL := serve(t, ps)
	tm := startMirror(t, Options{
		Pubsubhelper: psURL,
		Repos: []Repo{
			{Name: "go", URL: gerritUp.bare, GerritProject: "go"},
			{Name: "github.com/owner/widget", URL: githubUp.bare, GitHubSlug: "owner/widget"},
		},
	})
	waitRef := func(repo, want string) {
		t.Helper()
		waitRefs(t, tm, repo, "refs/heads/main", want)
	}
	now := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }

	c := gerritUp.push("uploaded")
	ps.events <- fmt.Sprintf(`{"Time":%q,"Gerrit":{"URL":"https://review.example.com/1","Project":"go","CommitHash":%q,"ChangeNumber":1}}`, now(), c)
	waitRef("go", c)

	c2 := githubUp.push("pr")
	ps.events <- fmt.Sprintf(`{"Time":%q,"GitHub":{"Action":"synchronize","RepoOwner":"owner","Repo":"widget","PullRequestNumber":2}}`, now())
	waitRef("github.com/owner/widget", c2)

	ps.mu.Lock()
	n := len(ps.afters)
	ps.mu.Unlock()
	if n < 3 {
		t.Errorf("only %d polls", n)
	}
}

func TestReposForEvent(t *testing.T) {
	m, err := New(Options{Dir: t.TempDir(), Repos: []Repo{
		{Name: "go", URL: "https://x/go", GerritProject: "go"},
		{Name: "net", URL: "https://x/net"},
		{Name: "github.com/a/b", URL: "https://x/b"},
		{Name: "widget", URL: "https://x/w", GitHubSlug: "Owner/Widget"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ev   event
		want string
	}{
		{"gerrit project", event{Gerrit: &gerritEvent{Project: "go"}}, "go"},
		{"gerrit by name", event{Gerrit: &gerritEvent{Project: "net"}}, "net"},
		{"gerrit unknown", event{Gerrit: &gerritEvent{Project: "tools"}}, ""},
		{"github slug any case", event{GitHub: &gitHubEvent{RepoOwner: "owner", Repo: "widget"}}, "widget"},
		{"github by name", event{GitHub: &gitHubEvent{RepoOwner: "a", Repo: "b"}}, "github.com/a/b"},
		{"github unknown", event{GitHub: &gitHubEvent{RepoOwner: "a", Repo: "c"}}, ""},
		{"empty", event{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			for _, r := range m.reposFor(tc.ev) {
				names = append(names, r.cfg.Name)
			}
			if got := strings.Join(names, ","); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTarballCacheLRU(t *testing.T) {
	up := newUpstream(t)
	rnd := rand.New(rand.NewSource(2))
	var commits []string
	for i := range 3 {
		blob := make([]byte, 3000)
		rnd.Read(blob)
		writeFile(t, filepath.Join(up.work, "blob"), string(blob), 0o644)
		commits = append(commits, up.push(fmt.Sprint("c", i)))
	}
	dir := t.TempDir()
	tm := startMirror(t, Options{Dir: dir, CacheBytes: 8000, Repos: []Repo{{Name: "proj", URL: up.bare}}})
	get := func(i int) string {
		t.Helper()
		resp, body := getTarball(t, tm.url, "proj", commits[i])
		if resp.StatusCode != 200 {
			t.Fatalf("tarball %d: %s", i, resp.Status)
		}
		if len(body) < 3000 || len(body) > 4000 {
			t.Fatalf("tarball %d is %d bytes; the test assumes 3000..4000", i, len(body))
		}
		// The cache entry is added just after the response ends.
		deadline := time.Now().Add(10 * time.Second)
		for {
			tm.cache.mu.Lock()
			_, building := tm.cache.building[resp.Header.Get(client.HeaderTree)]
			tm.cache.mu.Unlock()
			if !building || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		return resp.Header.Get(client.HeaderCache)
	}
	seq := []struct {
		i    int
		want string
	}{{0, "miss"}, {1, "miss"}, {0, "hit"}, {2, "miss"}, {0, "hit"}, {1, "miss"}, {0, "hit"}, {2, "miss"}, {1, "miss"}}
	for step, s := range seq {
		if got := get(s.i); got != s.want {
			t.Errorf("step %d: tarball %d: cache %q, want %q", step, s.i, got, s.want)
		}
		tm.cache.mu.Lock()
		total, n := tm.cache.total, tm.cache.lru.Len()
		tm.cache.mu.Unlock()
		if total > 8000 || n > 2 {
			t.Errorf("step %d: cache holds %d bytes in %d tarballs", step, total, n)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "tarballs", "*"+tarSuffix))
	if len(files) != 2 {
		t.Errorf("%d tarball files on disk, want 2", len(files))
	}
	// A new Mirror on the same directory finds the cached tarballs.
	m2, err := New(Options{Dir: dir, Repos: []Repo{{Name: "proj", URL: up.bare}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := m2.cache.lru.Len(); n != 2 {
		t.Errorf("reopened cache has %d entries", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp")); err != nil {
		t.Errorf("tmp dir: %v", err)
	}
}

func TestFullDiskTarballErrorsThenRecovers(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}})
	c := gitT(t, up.bare, "rev-parse", "main")
	// Every write to /dev/full fails with ENOSPC, as on a full disk. It
	// is reached through a symbolic link, which is what the failed build
	// removes (never the device itself).
	full := filepath.Join(t.TempDir(), "full")
	if err := os.Symlink("/dev/full", full); err != nil {
		t.Fatal(err)
	}
	tm.cache.mu.Lock()
	create := tm.cache.create
	tm.cache.create = func() (*os.File, error) { return os.OpenFile(full, os.O_RDWR, 0) }
	tm.cache.mu.Unlock()
	resp, body := getTarball(t, tm.url, "proj", c)
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), full) || strings.Contains(string(body), "space") {
		t.Errorf("tarball on a full disk: %s %q", resp.Status, body)
	}
	if !strings.Contains(tm.logs.String(), "no space left") {
		t.Errorf("the log does not say why the build failed")
	}
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("/dev/full: %v", err)
	}
	tm.cache.mu.Lock()
	tm.cache.create = create
	n := len(tm.cache.entries)
	tm.cache.mu.Unlock()
	if n != 0 {
		t.Errorf("failed build left %d cache entries", n)
	}
	resp, body = getTarball(t, tm.url, "proj", c)
	if resp.StatusCode != 200 || resp.Header.Get(client.HeaderCache) != "miss" {
		t.Fatalf("after space returns: %s %q", resp.Status, body)
	}
	want, err := exec.Command("git", "-C", up.bare, "archive", "--format=tar.gz", c).Output()
	if err != nil || !bytes.Equal(body, want) {
		t.Errorf("tarball after recovery differs from git archive: %v", err)
	}
}

// slowFetchGit writes a git wrapper whose fetches take a while and which
// records each fetch, and any fetch that overlaps another.
func slowFetchGit(t *testing.T) (path, logFile string) {
	t.Helper()
	dir := t.TempDir()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found")
	}
	logFile = filepath.Join(dir, "calls")
	lock := filepath.Join(dir, "lock")
	path = filepath.Join(dir, "git")
	script := fmt.Sprintf(`#!/bin/sh
for a in "$@"; do
	if [ "$a" = fetch ]; then
		mkdir %[1]q 2>/dev/null || echo overlap >> %[2]q
		echo fetch >> %[2]q
		sleep 0.3
		%[3]q "$@"; rc=$?
		rmdir %[1]q 2>/dev/null
		exit $rc
	fi
done
exec %[3]q "$@"
`, lock, logFile, git)
	writeFile(t, path, script, 0o755)
	return path, logFile
}

func TestNudgesCoalesceOneFetchAtATime(t *testing.T) {
	up := newUpstream(t)
	wrapper, calls := slowFetchGit(t)
	tm := startMirror(t, Options{Git: wrapper, Repos: []Repo{{Name: "proj", URL: up.bare}}})
	fetches := func() int64 { return tm.Status().Repos[0].Fetches }
	base := fetches()
	tm.Nudge("proj")
	eventually(t, func() error {
		if !tm.Status().Repos[0].Fetching {
			return errors.New("nudge did not start a fetch")
		}
		return nil
	})
	// Twenty nudges while that fetch runs make exactly one more fetch.
	for range 20 {
		tm.Nudge("proj")
	}
	eventually(t, func() error {
		if n := fetches() - base; n < 2 {
			return fmt.Errorf("%d fetches after the nudges, want 2", n)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // more than one slow fetch
	if n := fetches() - base; n != 2 {
		t.Errorf("%d fetches for 21 nudges during one fetch, want 2", n)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "overlap") {
		t.Errorf("two fetches of one repository ran at once")
	}
}
