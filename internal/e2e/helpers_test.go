package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// trydBinary is the tryd binary the tests run as processes.
func trydBinary(t *testing.T) string { return testenv.TrydBinary(t) }

// proc is a program the test runs as a testcluster process (in its own
// process group, its standard error in the test's log with its name in
// front); restart runs it again with the same options after kill9.
type proc struct {
	t         *testing.T
	name, url string // its name in the log; its base URL ("" for none)
	opts      testcluster.ProcOptions

	mu sync.Mutex
	p  *testcluster.Proc
}

// startProc runs "tryd args..." as name, logging to out, and waits until
// url/healthz answers 200 (url "" for a process serving none). The
// process is stopped when the test ends.
func startProc(t *testing.T, out io.Writer, name, url string, args ...string) *proc {
	t.Helper()
	return runProc(t, testcluster.ProcOptions{Binary: trydBinary(t), Name: name, Args: args, URL: url, Log: out})
}

// runProc starts o (and waits for its /healthz if it has a URL); the
// process is stopped when the test ends.
func runProc(t *testing.T, o testcluster.ProcOptions) *proc {
	t.Helper()
	p := &proc{t: t, name: o.Name, url: o.URL, opts: o}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) start() {
	p.t.Helper()
	tp, err := testcluster.StartProc(p.opts)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.p = tp
	p.mu.Unlock()
	if p.opts.URL != "" {
		start := time.Now()
		if err := tp.WaitHealthy(p.t.Context()); err != nil {
			p.t.Fatal(err)
		}
		p.t.Logf("%s healthy after %v", p.name, time.Since(start).Round(time.Millisecond))
	}
}

// current returns the process last started.
func (p *proc) current() *testcluster.Proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p
}

// kill9 sends SIGKILL to the process group and waits for the process.
func (p *proc) kill9() { p.current().Kill() }

// restart starts the process again with the same options.
func (p *proc) restart() {
	p.t.Helper()
	p.start()
}

// stop sends SIGTERM and waits up to 20 s, then kills the group.
func (p *proc) stop() { _ = p.current().Stop(20 * time.Second) }

// exited reports whether the process last started has ended.
func (p *proc) exited() bool {
	select {
	case <-p.current().Done():
		return true
	default:
		return false
	}
}

// freeAddr returns a loopback address nothing listens on, held for this
// test (testenv.ReservePort) until it ends: components are killed and
// restarted on their address, and no other test's server or connection
// may take the port while one is down (or before it first starts).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testenv.ReservePort(t)
}

func writeFile(t *testing.T, path, content string, perm os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gerritChange is what the tests read of a change through the
// simulator's REST API, as any Gerrit client would.
type gerritChange struct {
	Number int    `json:"_number"`
	Status string `json:"status"`
	Labels map[string]struct {
		All []struct {
			Value     int `json:"value"`
			AccountID int `json:"_account_id"`
		} `json:"all"`
	} `json:"labels"`
	Messages []struct {
		Author *struct {
			AccountID int `json:"_account_id"`
		} `json:"author"`
		Tag            string `json:"tag"`
		Message        string `json:"message"`
		RevisionNumber int    `json:"_revision_number"`
	} `json:"messages"`
	CurrentRevisionNumber int `json:"current_revision_number"`
}

// getGerritChange reads change n's detail from the Gerrit at base (with
// a trailing slash).
func getGerritChange(t *testing.T, base string, n int) *gerritChange {
	t.Helper()
	var ch gerritChange
	if err := getJSON(context.Background(), fmt.Sprintf("%schanges/%d/detail", base, n), &ch); err != nil {
		t.Fatal(err)
	}
	return &ch
}

// result returns bot's TryBot-Result vote on the current patch set (0
// for none).
func (ch *gerritChange) result(bot int) int {
	for _, a := range ch.Labels["TryBot-Result"].All {
		if a.AccountID == bot {
			return a.Value
		}
	}
	return 0
}

// botMessages returns the bodies of bot's messages on patch set ps.
func (ch *gerritChange) botMessages(bot, ps int) []string {
	var out []string
	for _, m := range ch.Messages {
		if m.Author != nil && m.Author.AccountID == bot && m.RevisionNumber == ps {
			out = append(out, m.Message)
		}
	}
	return out
}

// resultMessages returns bot's messages on ps that carry a TryBot-Result
// vote ("Patch Set N: TryBot-Result+1" is how Gerrit heads them).
func (ch *gerritChange) resultMessages(bot, ps int) []string {
	var out []string
	for _, m := range ch.botMessages(bot, ps) {
		first, _, _ := strings.Cut(m, "\n")
		if strings.Contains(first, "TryBot-Result") {
			out = append(out, m)
		}
	}
	return out
}

// getJSON GETs u and decodes its JSON body, skipping Gerrit's ")]}'"
// prefix when present.
func getJSON(ctx context.Context, u string, v any) error {
	return getJSONAs(ctx, "", u, v)
}

// getJSONAs is getJSON with a GitHub token, so that polling the GitHub
// simulator counts against a user's rate limit (5000 an hour), not the
// anonymous one (60).
func getJSONAs(ctx context.Context, token, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return json.Unmarshal(bytes.TrimPrefix(b, []byte(")]}'")), v)
}

// checkRuns returns "name=conclusion" (or "name:status" while running)
// of the check runs on sha in repo, through the GitHub simulator's REST
// API.
func checkRuns(t *testing.T, api, token, repo, sha string) []string {
	t.Helper()
	var runs struct {
		CheckRuns []struct {
			Name       string `json:"name"`
			Status     string `json:"status"`
			Conclusion string `json:"conclusion"`
		} `json:"check_runs"`
	}
	if err := getJSONAs(context.Background(), token, fmt.Sprintf("%srepos/%s/commits/%s/check-runs", api, repo, sha), &runs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range runs.CheckRuns {
		if r.Status == "completed" {
			out = append(out, r.Name+"="+r.Conclusion)
		} else {
			out = append(out, r.Name+":"+r.Status)
		}
	}
	return out
}
