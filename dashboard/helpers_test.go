package dashboard_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/dashboard"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot"
	tbclient "github.com/tryd-ci/tryd/trybot/client"
)

const adminToken = "admin-token-for-tests-0123456789"

var testBuilders = []config.Builder{
	{Name: "check", Steps: []config.Step{{Name: "prepare", Shell: "echo preparing"}, {Name: "test", Shell: "test -f ok.txt || { printf '\\033[31mFAIL: ok.txt is missing\\033[0m\\n' >&2; exit 1; }"}}},
}

// env is a running cluster (Gerrit simulator, corpus, gitmirror,
// coordinator, an in-process worker running real commands, trybot) with
// a dashboard in front of it, all on loopback.
type env struct {
	t     *testing.T
	stack *trystack.Stack
	coord *api.Client
	runs  *tbclient.Client
	url   string // the dashboard
	dir   string
}

func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
	}
	return l
}

// trybotAPIToken is the token the test trybot's API requires.
const trybotAPIToken = "trybot-api-token-for-the-dashboard"

func startEnv(t *testing.T) *env {
	t.Helper()
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := trystack.Start(ctx, trystack.Options{Dir: dir, Builders: testBuilders, WorkerSlots: 6, Log: testLogger(t), PublicURL: "https://dash.example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	e := &env{t: t, stack: s, coord: s.Client(), dir: dir}

	// The trybot, in process, serving its API on loopback.
	topts := s.TrybotOptions(filepath.Join(dir, "trybot"))
	topts.Log = testLogger(t)
	// The trybot's API requires a token (trybot.api_token), as in a
	// deployment: every page that shows runs goes through it.
	topts.APITokens = []string{trybotAPIToken}
	tctx, tcancel := context.WithCancel(context.Background())
	tb, err := trybot.New(tctx, topts)
	if err != nil {
		tcancel()
		t.Fatal(err)
	}
	tdone := make(chan error, 1)
	go func() { tdone <- tb.Run(tctx) }()
	turl := serve(t, tb.Handler(), "trybot")
	t.Cleanup(func() { tcancel(); <-tdone; tb.Close() })
	if e.runs, err = tbclient.New(turl, nil); err != nil {
		t.Fatal(err)
	}
	e.runs = e.runs.WithToken(trybotAPIToken)

	planner, err := trybot.NewBuilders(testBuilders, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dashboard.New(dashboard.Options{
		Coordinator: e.coord, Trybot: e.runs, Planner: planner, AdminToken: adminToken,
		Repos: []dashboard.Repo{{Name: "proj", Branches: []string{"main", `x"><script>window.pwned=1</script>`}}},
		Log:   testLogger(t), KeepAlive: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.url = serve(t, d.Handler(), "dashboard")
	return e
}

// serve serves h on 127.0.0.1:0 until the test ends.
func serve(t *testing.T, h http.Handler, component string) string {
	t.Helper()
	srv, err := httpserver.New(httpserver.Options{Handler: h, Component: component, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.URL()
}

// sh is a job running a shell script with no source.
func sh(name, script string, deps ...string) *graph.Job {
	return &graph.Job{Name: name, SourceMode: graph.SourceNone, Commands: []graph.Command{{Argv: []string{"sh", "-c", script}}}, Deps: deps}
}

// submit submits a graph with labels and returns the build ID.
func (e *env) submit(labels map[string]string, jobs ...*graph.Job) int64 {
	e.t.Helper()
	sub, err := e.coord.Submit(context.Background(), api.SubmitRequest{Graph: graph.Graph{Jobs: jobs}, Priority: api.PriorityPostSubmit, Labels: labels})
	if err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	return sub.BuildID
}

func (e *env) wait(id int64) *api.Build {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := e.coord.Wait(ctx, id, nil)
	if err != nil {
		e.t.Fatalf("wait for build %d: %v", id, err)
	}
	return b
}

// get fetches a dashboard path and returns the status and body.
func (e *env) get(path string, hdr ...string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
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

func contains(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func lacks(t *testing.T, what, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Errorf("%s contains %q", what, b)
		}
	}
}

// rev is a commit hash for commit n of the grid's history.
func rev(n int) string {
	h := sha1.Sum([]byte(fmt.Sprint("commit ", n)))
	return hex.EncodeToString(h[:])
}
