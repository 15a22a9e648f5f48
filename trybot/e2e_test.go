package trybot_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/trybot"
	"github.com/tryd-ci/tryd/trybot/client"
)

func boolp(b bool) *bool { return &b }

// testBuilders: "check" fails when the change adds bad.txt (it passes at
// the base revision, so such a failure is new); "extra" is a
// SlowBot (alias "more") that always passes; "lint" needs a worker label
// no worker has in some tests.
var testBuilders = []config.Builder{
	{Name: "check", Steps: []config.Step{{Name: "prepare", Shell: "true"}, {Name: "test", Shell: "test ! -f bad.txt || { echo bad.txt is present >&2; exit 1; }"}}},
	{Name: "extra", TryBot: boolp(false), Steps: []config.Step{{Name: "all", Run: []string{"true"}}}},
}

var testAliases = map[string][]string{"more": {"extra"}}

func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	if os.Getenv("TRYBOT_TEST_LOG") != "" {
		l.SetLevel(logrus.DebugLevel)
		return l
	}
	l.SetOutput(testWriter{t})
	return l
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startStack starts the simulators and the build system.
func startStack(t *testing.T, opts trystack.Options) *trystack.Stack {
	t.Helper()
	opts.Git = testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Builders == nil {
		opts.Builders, opts.Aliases = testBuilders, testAliases
	}
	opts.Log = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := trystack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// startTrybot runs a trybot with the stack's options in this process
// until the test ends.
func startTrybot(t *testing.T, s *trystack.Stack, dir string) *trybot.Trybot {
	t.Helper()
	opts := s.TrybotOptions(dir)
	opts.Log = testLogger(t)
	return runTrybot(t, opts)
}

// runTrybot runs a trybot with opts in this process until the test ends.
func runTrybot(t *testing.T, opts trybot.Options) *trybot.Trybot {
	t.Helper()
	tb, _ := runStoppable(t, opts)
	return tb
}

// runStoppable runs a trybot with opts in this process until stop is
// called (at most once takes effect) or the test ends, and checks Run's
// error.
func runStoppable(t *testing.T, opts trybot.Options) (tb *trybot.Trybot, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb, err := trybot.New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("trybot.Run: %v", err)
			}
			tb.Close()
		})
	}
	t.Cleanup(stop)
	return tb, stop
}

// change returns a copy of what the corpus knows of change n.
func change(s *trystack.Stack, n int) (msgs []maintner.GerritMessage, votes []maintner.GerritVote, ps int32) {
	s.Corpus.RLock()
	defer s.Corpus.RUnlock()
	p := s.Corpus.GerritProject(s.CorpusProject())
	if p == nil {
		return nil, nil, 0
	}
	ch := p.Change(int32(n))
	if ch == nil {
		return nil, nil, 0
	}
	return append([]maintner.GerritMessage(nil), ch.Messages...), append([]maintner.GerritVote(nil), ch.Votes...), ch.CurrentPatchSet
}

// trybotMessages returns the trybot's messages on patch set ps.
func trybotMessages(s *trystack.Stack, n int, ps int32) []string {
	msgs, _, _ := change(s, n)
	var out []string
	for _, m := range msgs {
		if m.Tag == trybot.MessageTag && m.PatchSet == ps {
			out = append(out, m.Body)
		}
	}
	return out
}

// resultVote returns the TryBot-Result vote on ps (0 if none).
func resultVote(s *trystack.Stack, n int, ps int32) int8 {
	_, votes, _ := change(s, n)
	for _, v := range votes {
		if v.PatchSet == ps && v.Label == "TryBot-Result" && v.Account == int32(s.Bot) {
			return v.Value
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGerritPassAndFail(t *testing.T) {
	t.Parallel()
	s := startStack(t, trystack.Options{})
	tb := startTrybot(t, s, t.TempDir())
	ctx := context.Background()

	good, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "good change", map[string]string{"ok.txt": "yes\n"})
	if err != nil {
		t.Fatal(err)
	}
	bad, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "bad change", map[string]string{"bad.txt": "no\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{good, bad} {
		if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{good, bad} {
		waitFor(t, fmt.Sprintf("TryBot-Result on change %d", n), 60*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
	}
	if v := resultVote(s, good, 1); v != 1 {
		t.Errorf("good change: TryBot-Result %+d, want +1", v)
	}
	if v := resultVote(s, bad, 1); v != -1 {
		t.Errorf("bad change: TryBot-Result %+d, want -1", v)
	}
	gm, bm := trybotMessages(s, good, 1), trybotMessages(s, bad, 1)
	t.Logf("good: %q\nbad: %q", gm, bm)
	if len(gm) != 2 || len(bm) != 2 {
		t.Fatalf("trybot messages: good %q, bad %q; want 2 each (beginning, result)", gm, bm)
	}
	for _, m := range []string{gm[0], bm[0]} {
		if !strings.Contains(m, "TryBots beginning") || !strings.Contains(m, "https://tryd.example/try/") || !strings.Contains(m, "Builders: check") {
			t.Errorf("beginning message %q lacks the announcement, status link or builders", m)
		}
	}
	if !strings.Contains(gm[1], "TryBots are happy") || !strings.Contains(gm[1], "check (") {
		t.Errorf("good result message %q", gm[1])
	}
	if !strings.Contains(bm[1], "1 of 1 TryBots failed") || !strings.Contains(bm[1], "Failed on check") || !strings.Contains(bm[1], "https://tryd.example/logs/") {
		t.Errorf("bad result message %q lacks the failure, builder or log link", bm[1])
	}
	// The failure passes at the base revision: it is the change's.
	if !strings.Contains(bm[1], "  test [new]") || !strings.Contains(bm[1], "New failures (pass at the base revision): test") {
		t.Errorf("bad result message %q does not call the failure new", bm[1])
	}

	// The API tells the dashboard what happened.
	runs, err := client.New(serveAPI(t, tb), nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := runs.Runs(ctx, client.ListOptions{Review: client.ReviewGerrit, Change: int32(bad)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State != client.StateFailed || len(list[0].Builds) != 1 || list[0].Builds[0].State != client.BuildFailed ||
		list[0].Builds[0].BuildID == 0 || len(list[0].Builds[0].Failed) != 1 || list[0].Builds[0].Failed[0].Name != "test" ||
		list[0].Builds[0].Failed[0].Classification != client.ClassNew || list[0].Base == "" {
		t.Errorf("runs of the bad change: %+v", list)
	}
	one, err := runs.Run(ctx, list[0].ID)
	if err != nil || one.ID != list[0].ID || one.PatchSet != 1 || one.Summary == "" {
		t.Errorf("Run(%d) = %+v, %v", list[0].ID, one, err)
	}
}

func TestGerritSlowBots(t *testing.T) {
	t.Parallel()
	s := startStack(t, trystack.Options{})
	startTrybot(t, s, t.TempDir())
	ctx := context.Background()
	n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "slowbots", map[string]string{"ok.txt": "yes\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "TRY=more,nosuch-builder", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result on patch set 1", 60*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
	msgs := trybotMessages(s, n, 1)
	if len(msgs) != 2 {
		t.Fatalf("messages %q, want beginning and result", msgs)
	}
	if !strings.Contains(msgs[0], "Builders: check, extra") || !strings.Contains(msgs[0], "Unknown builders requested (not run): nosuch-builder") {
		t.Errorf("beginning %q: want builders check and extra (alias more), and nosuch-builder listed as unknown", msgs[0])
	}
	if !strings.Contains(msgs[1], "TryBots are happy: 2 of 2 passed") || !strings.Contains(msgs[1], "nosuch-builder") {
		t.Errorf("result %q", msgs[1])
	}
	if v := resultVote(s, n, 1); v != 1 {
		t.Errorf("TryBot-Result %+d, want +1", v)
	}

	// The request stays in force for the next patch set.
	if _, _, err := s.Gerrit.UploadPatchSet(ctx, n, s.Owner, map[string]string{"ok.txt": "still\n"}, "second try"); err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 2, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result on patch set 2", 60*time.Second, func() bool { return resultVote(s, n, 2) != 0 })
	if msgs := trybotMessages(s, n, 2); len(msgs) != 2 || !strings.Contains(msgs[0], "Builders: check, extra") {
		t.Errorf("patch set 2 messages %q: want builders check, extra", msgs)
	}
}

func TestGerritNewPatchSetSupersedes(t *testing.T) {
	t.Parallel()
	// The build waits for a marker, so that patch set 2 supersedes the
	// first run while it is still building however loaded the machine.
	marker := filepath.Join(t.TempDir(), "go")
	builders := []config.Builder{{Name: "check", Steps: []config.Step{{Name: "test", Shell: "while [ ! -e " + marker + " ]; do sleep 0.05; done; test -f ok.txt"}}}}
	s := startStack(t, trystack.Options{Builders: builders})
	tb := startTrybot(t, s, t.TempDir())
	api, err := client.New(serveAPI(t, tb), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "superseded", map[string]string{"ok.txt": "1\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	var first client.Run
	waitFor(t, "the first run's build to start", 30*time.Second, func() bool {
		runs, err := api.Runs(ctx, client.ListOptions{Change: int32(n)})
		if err != nil || len(runs) != 1 || len(runs[0].Builds) != 1 || runs[0].Builds[0].BuildID == 0 {
			return false
		}
		b, err := s.Client().Build(ctx, runs[0].Builds[0].BuildID)
		if err != nil || b.Counts["running"] == 0 {
			return false
		}
		first = runs[0]
		return len(trybotMessages(s, n, 1)) == 1
	})
	if _, _, err := s.Gerrit.UploadPatchSet(ctx, n, s.Owner, map[string]string{"ok.txt": "2\n"}, "new patch set"); err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 2, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first run to be superseded", 60*time.Second, func() bool {
		r, err := api.Run(ctx, first.ID)
		return err == nil && r.State.Finished()
	})
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result on patch set 2", 60*time.Second, func() bool { return resultVote(s, n, 2) != 0 })
	if v := resultVote(s, n, 2); v != 1 {
		t.Errorf("patch set 2: TryBot-Result %+d, want +1", v)
	}
	old, err := api.Run(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if old.State != client.StateSuperseded {
		t.Errorf("first run state %s, want superseded", old.State)
	}
	b, err := s.Client().Build(ctx, first.Builds[0].BuildID)
	if err != nil {
		t.Fatal(err)
	}
	if b.State != "cancelled" {
		t.Errorf("first run's build is %s, want cancelled", b.State)
	}
	// Nothing more was posted on patch set 1: the beginning only.
	time.Sleep(500 * time.Millisecond)
	if msgs := trybotMessages(s, n, 1); len(msgs) != 1 || resultVote(s, n, 1) != 0 {
		t.Errorf("patch set 1 got %q and vote %+d after being superseded; want only the beginning", msgs, resultVote(s, n, 1))
	}
	if msgs := trybotMessages(s, n, 2); len(msgs) != 2 {
		t.Errorf("patch set 2 messages %q, want beginning and result", msgs)
	}
}

func TestGerritInfraFailureIsNotTheChangesFault(t *testing.T) {
	t.Parallel()
	builders := append([]config.Builder{{Name: "special", Labels: map[string]string{"pool": "special"}, Steps: []config.Step{{Name: "x", Run: []string{"true"}}}}}, testBuilders...)
	s := startStack(t, trystack.Options{Builders: builders})
	opts := s.TrybotOptions(t.TempDir())
	opts.Log = testLogger(t)
	opts.NoWorkerTimeout = time.Second
	runTrybot(t, opts)
	ctx := t.Context()

	n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "infra", map[string]string{"ok.txt": "yes\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the result message", 60*time.Second, func() bool { return len(trybotMessages(s, n, 1)) == 2 })
	msgs := trybotMessages(s, n, 1)
	if !strings.Contains(msgs[1], "infrastructure problems (not the change's fault)") ||
		!strings.Contains(msgs[1], "Infrastructure failure on special: no connected worker has the labels pool=special") ||
		!strings.Contains(msgs[1], "Passed: check") {
		t.Errorf("result %q: want the infrastructure failure named, and check passed", msgs[1])
	}
	time.Sleep(300 * time.Millisecond)
	if v := resultVote(s, n, 1); v != 0 {
		t.Errorf("TryBot-Result %+d for an infrastructure failure, want no vote", v)
	}
}

// lossyTransport makes Gerrit's review endpoint fail: the first refused
// requests get a 503 without reaching Gerrit, and the next lost requests
// reach Gerrit but lose their answer (the post happened, the trybot
// cannot know).
type lossyTransport struct {
	mu            sync.Mutex
	refused, lost int
	seen          int
	// match selects the requests to disturb (default: Gerrit reviews).
	match func(r *http.Request) bool
}

func (l *lossyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	match := l.match
	if match == nil {
		match = func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/review")
		}
	}
	if !match(r) {
		return http.DefaultTransport.RoundTrip(r)
	}
	l.mu.Lock()
	l.seen++
	refuse := l.refused > 0
	lose := !refuse && l.lost > 0
	if refuse {
		l.refused--
	} else if lose {
		l.lost--
	}
	l.mu.Unlock()
	if refuse {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Body: io.NopCloser(strings.NewReader("try later")),
			Header: http.Header{}, Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if lose {
		resp.Body.Close()
		return nil, errors.New("connection reset (the answer was lost)")
	}
	return resp, nil
}

func TestGerritPostingRetriedExactlyOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, trystack.Options{})
	opts := s.TrybotOptions(t.TempDir())
	opts.Log = testLogger(t)
	lossy := &lossyTransport{refused: 3, lost: 2}
	opts.HTTPClient = &http.Client{Transport: lossy}
	runTrybot(t, opts)
	ctx := t.Context()

	n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, "flaky gerrit", map[string]string{"ok.txt": "yes\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TryBot-Result despite Gerrit errors", 60*time.Second, func() bool { return resultVote(s, n, 1) != 0 })
	time.Sleep(500 * time.Millisecond)
	msgs := trybotMessages(s, n, 1)
	if len(msgs) != 2 || resultVote(s, n, 1) != 1 {
		t.Errorf("messages %q, vote %+d: want one beginning, one result and +1", msgs, resultVote(s, n, 1))
	}
	lossy.mu.Lock()
	defer lossy.mu.Unlock()
	if lossy.refused != 0 || lossy.lost != 0 {
		t.Errorf("the transport still had %d refusals and %d losses to inject", lossy.refused, lossy.lost)
	}
}
