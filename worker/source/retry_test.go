package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// count reads a counter.
func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestIsTransient(t *testing.T) {
	git := func(stderr string) error {
		return &gitexec.Error{Verb: "fetch", Err: errors.New("exit status 128"), Stderr: stderr}
	}
	refused := &url.Error{Op: "Get", URL: "http://m/r.tar.gz", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"git: server down", git("fatal: unable to access 'http://127.0.0.1:1/proj.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server"), true},
		{"git: 502", git("fatal: unable to access 'http://m/proj.git/': The requested URL returned error: 502"), true},
		{"git: 503", git("fatal: unable to access 'http://m/proj.git/': The requested URL returned error: 503"), true},
		{"git: reset", git("error: RPC failed; curl 56 Recv failure: Connection reset by peer\nfatal: early EOF"), true},
		{"git: timed out by us", &gitexec.Error{Verb: "fetch", Err: errors.New("signal: killed"), TimedOut: true}, true},
		{"git: unknown repository", git("remote: unknown repository\nfatal: repository 'http://m/nope.git/' not found"), false},
		{"git: 404 then hung up", git("fatal: unable to access 'http://m/x.git/': The requested URL returned error: 404\nfatal: the remote end hung up unexpectedly"), false},
		{"git: no token", git("fatal: could not read Username for 'http://m': terminal prompts disabled"), false},
		{"git: bad token", git("fatal: Authentication failed for 'http://m/proj.git/'"), false},
		{"git: unknown ref", git("fatal: couldn't find remote ref refs/heads/nope"), false},
		{"git: unknown object", git("fatal: remote error: upload-pack: not our ref 1111111111111111111111111111111111111111"), false},
		{"git: something else", git("fatal: something nobody has seen"), false},
		{"tarball: 500", fmt.Errorf("GET tarball: %w", &statusError{code: 500, status: "500 Internal Server Error"}), true},
		{"tarball: 429", fmt.Errorf("GET tarball: %w", &statusError{code: 429, status: "429 Too Many Requests"}), true},
		{"tarball: 401", fmt.Errorf("GET tarball: %w", &statusError{code: 401, status: "401 Unauthorized"}), false},
		{"tarball: 404", fmt.Errorf("GET tarball: %w", ErrNotFound), false},
		{"tarball: connection refused", fmt.Errorf("tarball: %w", refused), true},
		{"tarball: cut short", fmt.Errorf("tarball: %w", io.ErrUnexpectedEOF), true},
		{"tarball: closed before answering", &url.Error{Op: "Get", URL: "u", Err: io.EOF}, true},
		{"tarball: timeout", fmt.Errorf("tarball: %w", &url.Error{Op: "Get", URL: "u", Err: timeoutError{}}), true},
		{"fetches failed, so the lookup failed", errors.Join(git("fatal: unable to access 'x': Failed to connect to m port 1"), fmt.Errorf("abc not in the local clone: %w", ErrNotFound)), true},
		{"fetch refused the object, lookup failed", errors.Join(git("fatal: remote error: upload-pack: not our ref abc"), fmt.Errorf("abc not in the local clone: %w", ErrNotFound)), false},
		{"bad revision", fmt.Errorf("source: %w", ErrBadRevision), false},
		{"canceled", context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsTransient(tc.err); got != tc.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestBackoff(t *testing.T) {
	s, err := New(Options{Dir: t.TempDir(), RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attempt int
		ceil    time.Duration // the un-jittered pause
	}{
		{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond}, {5, time.Second}, {40, time.Second}, {1000, time.Second},
	} {
		t.Run(fmt.Sprint(tc.attempt), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := s.backoff(tc.attempt)
				if d < tc.ceil/2 || d > tc.ceil {
					t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.ceil/2, tc.ceil)
				}
				seen[d] = true
			}
			if len(seen) < 10 {
				t.Errorf("backoff(%d) took only %d values in 200 draws: not jittered", tc.attempt, len(seen))
			}
		})
	}
	if _, err := New(Options{Dir: t.TempDir(), RetryMin: time.Second, RetryMax: time.Millisecond}); err == nil {
		t.Error("New accepted RetryMax below RetryMin")
	}
}

// retryStore is a Store with fast retries, a log and metrics to inspect.
func retryStore(t *testing.T, opts Options) (*Store, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	opts.Dir, opts.Log, opts.Registry = t.TempDir(), log, prometheus.NewRegistry()
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = 50*time.Millisecond, 400*time.Millisecond
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

// gitmirrorProc is "tryd gitmirror" as its own process, mirroring one
// repository ("proj") with a token, on an address that stays the same
// across restarts.
type gitmirrorProc struct {
	t         *testing.T
	bin, addr string
	args      []string
	cmd       *exec.Cmd
	out       testenv.Buffer
}

const mirrorToken = "gitmirror-token-0123456789abcdef"

func startGitmirror(t *testing.T, upstreamURL string) *gitmirrorProc {
	t.Helper()
	testenv.Short(t)
	bin := testenv.TrydBinary(t)
	dir := t.TempDir()
	addr := testenv.ReservePort(t) // the same across restarts, and nobody else's meanwhile
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(mirrorToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "repos:\n  - name: proj\n    url: %q\ngitmirror:\n  url: http://%s\n  token: file:%s\n", upstreamURL, addr, tok), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gitmirrorProc{t: t, bin: bin, addr: addr,
		args: []string{"gitmirror", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--listen", addr}}
	g.start()
	t.Cleanup(func() {
		if g.cmd != nil {
			g.kill()
		}
		if t.Failed() {
			t.Logf("gitmirror's output:\n%s", g.out.String())
		}
	})
	return g
}

func (g *gitmirrorProc) url() string { return "http://" + g.addr + "/proj.git" }

func (g *gitmirrorProc) start() {
	g.t.Helper()
	g.cmd = exec.Command(g.bin, g.args...)
	g.cmd.Stdout, g.cmd.Stderr = &g.out, &g.out
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + g.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("gitmirror not healthy after 30s:\n%s", g.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is kill -9.
func (g *gitmirrorProc) kill() {
	g.cmd.Process.Kill()
	g.cmd.Wait()
	g.cmd = nil
}

func mirrorCred(g *gitmirrorProc) []Credential {
	return []Credential{{URLPrefix: "http://" + g.addr + "/", Token: mirrorToken}}
}

// TestCheckoutRetriesThroughGitmirrorRestart: gitmirror is killed (-9);
// a checkout started while it is down keeps retrying with backoff and
// succeeds once it is back, logging and counting its retries.
func TestCheckoutRetriesThroughGitmirrorRestart(t *testing.T) {
	up := testenv.NewGitRepo(t)
	rev := up.Commit("one", map[string]string{"a.txt": "one\n"})
	g := startGitmirror(t, up.URL())
	s, logs := retryStore(t, Options{Credentials: mirrorCred(g)})
	ctx := context.Background()

	// Through a running gitmirror, no retry.
	dst := filepath.Join(t.TempDir(), "src")
	if _, release, err := s.Checkout(ctx, g.url(), rev, dst); err != nil {
		t.Fatalf("checkout through gitmirror: %v\n%s", err, g.out.String())
	} else {
		release()
	}
	if n := count(t, s.m.retries); n != 0 {
		t.Errorf("%v retries with gitmirror up", n)
	}

	// gitmirror dies; a new revision is wanted (so the clone must
	// fetch), and gitmirror comes back once the checkout has failed and
	// retried a few times.
	g.kill()
	rev2 := up.Commit("two", map[string]string{"a.txt": "two\n"})
	type result struct {
		commit string
		err    error
		took   time.Duration
	}
	done := make(chan result, 1)
	dst = filepath.Join(t.TempDir(), "src")
	go func() {
		start := time.Now()
		commit, release, err := s.Checkout(ctx, g.url(), rev2, dst)
		if err == nil {
			defer release()
			if b, rerr := os.ReadFile(filepath.Join(dst, "a.txt")); rerr != nil || string(b) != "two\n" {
				err = fmt.Errorf("checkout holds %q, %v; want two", b, rerr)
			}
		}
		done <- result{commit, err, time.Since(start)}
	}()
	// Wait for the retries rather than for a fixed time: on a loaded
	// machine one attempt (four git commands and a tarball request) can
	// take longer than a pause, so a fixed downtime could end after a
	// single retry, and the test would not show the backoff at work.
	const downRetries = 3
	for deadline := time.Now().Add(time.Minute); count(t, s.m.retries) < downRetries; {
		select {
		case r := <-done:
			t.Fatalf("checkout ended while gitmirror was down: %s, %v\nlog:\n%s", r.commit, r.err, logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d retries in a minute with gitmirror down\nlog:\n%s", downRetries, logs)
		}
	}
	g.start()
	r := <-done
	if r.err != nil {
		t.Fatalf("checkout across gitmirror's restart: %v\nlog:\n%s", r.err, logs)
	}
	if r.commit != rev2 {
		t.Errorf("commit %s, want %s", r.commit, rev2)
	}
	retries := count(t, s.m.retries)
	if !strings.Contains(logs.String(), "fetch failed for a transient reason; retrying") || !strings.Contains(logs.String(), "fetched after retrying") {
		t.Errorf("log lacks the retry and recovery lines:\n%s", logs)
	}
	if got := count(t, s.m.checkouts.WithLabelValues("ok")); got != 2 {
		t.Errorf("checkouts ok = %v, want 2", got)
	}
	t.Logf("checkout took %v with %v retries", r.took.Round(time.Millisecond), retries)
}

// TestCheckoutPermanentFailsFast: against a running gitmirror, an unknown
// revision, an unknown repository and a wrong token fail at once, without
// retries, saying why.
func TestCheckoutPermanentFailsFast(t *testing.T) {
	up := testenv.NewGitRepo(t)
	up.Commit("one", map[string]string{"a.txt": "one\n"})
	g := startGitmirror(t, up.URL())
	for _, tc := range []struct {
		name, repo, rev, token string
		is                     error
		msg                    string
	}{
		{"unknown revision", g.url(), strings.Repeat("1", 40), mirrorToken, ErrNotFound, "revision not found"},
		{"unknown ref", g.url(), "refs/heads/nope", mirrorToken, ErrNotFound, "couldn't find remote ref"},
		{"unknown repository", "http://" + g.addr + "/nope.git", strings.Repeat("1", 40), mirrorToken, nil, "not found"},
		{"wrong token", g.url(), strings.Repeat("1", 40), "not-the-token", nil, "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := retryStore(t, Options{Credentials: []Credential{{URLPrefix: "http://" + g.addr + "/", Token: tc.token}}})
			_, _, err := s.Checkout(context.Background(), tc.repo, tc.rev, filepath.Join(t.TempDir(), "src"))
			if err == nil {
				t.Fatal("checkout succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
			if errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "permanent: not retried") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v; want a permanent failure mentioning %q", err, tc.msg)
			}
			if n := count(t, s.m.retries); n != 0 {
				t.Errorf("%v retries of a permanent failure", n)
			}
			if n := count(t, s.m.checkouts.WithLabelValues("failed")); n != 1 {
				t.Errorf("checkouts failed = %v, want 1", n)
			}
		})
	}
}

// TestCheckoutGivesUp: with the server gone for good, the retries stop
// after RetryFor and the error wraps ErrUnavailable; a context that ends
// stops them at once.
func TestCheckoutGivesUp(t *testing.T) {
	// A reserved port: refused for the whole test, never another
	// test's server.
	gone := "http://" + testenv.ReservePort(t) + "/proj.git"
	testenv.NeedTool(t, "git")

	var pauses []time.Duration
	s, logs := retryStore(t, Options{RetryFor: 2 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 800 * time.Millisecond,
		Sleep: func(ctx context.Context, d time.Duration) error { pauses = append(pauses, d); return nil }})
	_, _, err := s.Checkout(context.Background(), gone, strings.Repeat("a", 40), filepath.Join(t.TempDir(), "src"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	var total time.Duration
	for _, p := range pauses {
		total += p
	}
	if total > 2*time.Second || len(pauses) < 3 {
		t.Errorf("pauses %v (total %v): want several, at most 2s in all", pauses, total)
	}
	if n := count(t, s.m.checkouts.WithLabelValues("unavailable")); n != 1 {
		t.Errorf("checkouts unavailable = %v, want 1", n)
	}
	if got := strings.Count(logs.String(), "retrying"); got != len(pauses) {
		t.Errorf("%d retry log lines for %d pauses", got, len(pauses))
	}

	// A canceled context ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	s2, _ := retryStore(t, Options{Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }})
	_, _, err = s2.Checkout(ctx, gone, strings.Repeat("a", 40), filepath.Join(t.TempDir(), "src"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// TestCheckoutRetries5xx: a server answering 503 to git and to the tarball
// is retried until it recovers.
func TestCheckoutRetries5xx(t *testing.T) {
	u := newUpstream(t)
	rev := u.commit(map[string]string{"a.txt": "one"})
	u.gitFail.Store(true)
	u.tarFail.Store(true)
	var mu sync.Mutex
	n := 0
	s, _ := retryStore(t, Options{Sleep: func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 3 {
			u.gitFail.Store(false)
			u.tarFail.Store(false)
		}
		return nil
	}})
	_, release, err := s.Checkout(context.Background(), u.url, rev, filepath.Join(t.TempDir(), "src"))
	if err != nil {
		t.Fatal(err)
	}
	release()
	if got := count(t, s.m.retries); got != 3 {
		t.Errorf("retries = %v, want 3", got)
	}
}

// FuzzGitErrorTransient: git's message is outside input; classifying it
// never panics, and a 4xx status other than 408/429 is never transient.
func FuzzGitErrorTransient(f *testing.F) {
	for _, s := range []string{"", "fatal: unable to access 'x': Failed to connect", "The requested URL returned error: 404", "returned error: 503", "not our ref", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stderr string) {
		e := &gitexec.Error{Verb: "fetch", Err: errors.New("exit status 128"), Stderr: stderr}
		got := IsTransient(fmt.Errorf("source: %w", e))
		if got && strings.Contains(strings.ToLower(stderr), "returned error: 404") {
			t.Errorf("%q read as transient", stderr)
		}
	})
}
