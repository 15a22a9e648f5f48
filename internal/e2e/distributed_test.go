package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/trybot/client"
)

const (
	ghRepo      = "org/repo"
	ghMaint     = "maintainer"
	gerritHookU = "gerrit-webhook"
)

// stack is tryd deployed as separate processes around the simulators.
type stack struct {
	t    *testing.T
	logs *testenv.Buffer
	dir  string

	w   *gerritsimtest.World
	gh  *githubsim.Sim
	cfg string // tryd.yaml

	pubsub, maintnerd, gitmirror, coord, trybot *proc
	dashboard, postsubmit                       *proc
	workers                                     []*proc
	runs                                        *client.Client
	coordAPI                                    *api.Client
	changes                                     []int  // every change upload created
	ghToken                                     string // a reader's token for the test's own GitHub REST calls
}

// builders: "check" sleeps for the seconds in slow.txt (so that tests can
// act mid-run), then fails when the change adds bad.txt and passes
// otherwise. The branch main passes, so that a failure is the change's own
// (the trybot compares failures with the base revision and votes -1 only
// for new ones).
const buildersYAML = `builders:
  - name: check
    steps:
      - name: wait
        shell: "if [ -f slow.txt ]; then sleep $(cat slow.txt); fi"
      - name: test
        shell: "test ! -f bad.txt || { echo bad.txt is present >&2; exit 1; }"
    timeout: 2m
    post_submit: true
`

// newWorld starts the simulators in this process, with their webhooks
// pointed at pubsubURL (the GitHub App's at trybotURL), and writes the
// secrets and a tryd.yaml naming them; tail is appended to the config.
func newWorld(t *testing.T, pubsubURL, trybotURL string, tail func(s *stack) string) *stack {
	t.Helper()
	testenv.Short(t)
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	trydBinary(t)
	s := &stack{t: t, logs: &testenv.Buffer{}, dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("processes' output:\n%s", s.logs.String())
		}
	})
	ctx := t.Context()

	// Gerrit: project "proj", accounts owner, reviewer and bot; its
	// webhooks plugin posts to pubsubhelper with the shared secret.
	s.w = gerritsimtest.NewWorld(t, gerritsim.Options{})
	botPw := s.secret("gerrit-bot-password", gerritsimtest.BotPassword)
	gerritHook := s.secret("gerrit-webhook-secret", "gerrit-shared-secret")
	hook, _ := url.Parse(pubsubURL + "/gerrit-webhook")
	hook.User = url.UserPassword(gerritHookU, "gerrit-shared-secret")
	s.w.Sim.AddWebhook(hook.String())

	// GitHub: repository org/repo, a maintainer, the trybot's App whose
	// own webhook goes to the trybot, the repository's to pubsubhelper.
	s.gh = githubsim.StartForTest(t, githubsim.Options{})
	must(t, s.gh.CreateRepo(ctx, ghRepo))
	_, err := s.gh.Push(ctx, ghRepo, "main", map[string]string{"README": "hello\n"})
	must(t, err)
	_, err = s.gh.AddUser(ghMaint, githubsim.PermWrite)
	must(t, err)
	s.ghToken, err = s.gh.AddUser("reader", githubsim.PermRead)
	must(t, err)
	must(t, s.gh.CreateLabel(ghRepo, "run-trybot", "00ff00", ""))
	ghHook := s.secret("github-webhook-secret", "github-shared-secret")
	appHook := ""
	if trybotURL != "" {
		appHook = trybotURL + "/github-app-webhook"
	}
	_, err = s.gh.AddApp(githubsim.AppOptions{Slug: "tryd", WebhookURL: appHook, WebhookSecret: "github-shared-secret",
		Events: []string{"check_run", "check_suite"}})
	must(t, err)
	creds, err := s.gh.AppCredentials("tryd")
	must(t, err)
	appKey := writeFile(t, filepath.Join(s.dir, "secrets", "app.pem"), string(creds.PrivateKeyPEM), 0o600)
	_, err = s.gh.AddHook(ctx, ghRepo, githubsim.HookOptions{URL: pubsubURL + "/github-webhook", Secret: "github-shared-secret", Events: []string{"*"}})
	must(t, err)

	s.cfg = writeFile(t, filepath.Join(s.dir, "tryd.yaml"), fmt.Sprintf(`gerrit:
  - name: review
    url: %q
    user: bot
    password: file:%s
    webhook_secret: file:%s
github:
  - name: github
    api_url: %q
    app_id: %d
    installation_id: %d
    app_key: file:%s
    webhook_secret: file:%s
repos:
  - name: proj
    gerrit: review
    project: proj
  - name: gh
    github: github
    slug: %s
%s
trybot:
  public_url: https://tryd.example
%s`, s.w.Sim.URL(), botPw, gerritHook, s.gh.APIURL(), creds.ID, creds.InstallationID, appKey, ghHook, ghRepo, buildersYAML, tail(s)), 0o644)
	return s
}

// secret writes a secret file (0600) and returns its path.
func (s *stack) secret(name, v string) string {
	return writeFile(s.t, filepath.Join(s.dir, "secrets", name), v+"\n", 0o600)
}

// startStack starts the simulators in this process and every component
// as its own tryd process: pubsubhelper, maintnerd, gitmirror,
// coordinator, two workers and the trybot.
func startStack(t *testing.T) *stack {
	t.Helper()
	addr := map[string]string{}
	for _, n := range []string{"pubsubhelper", "maintnerd", "gitmirror", "coordinator", "trybot", "postsubmit", "dashboard", "w1", "w2"} {
		addr[n] = freeAddr(t)
	}
	u := func(n string) string { return "http://" + addr[n] }
	s := newWorld(t, u("pubsubhelper"), u("trybot"), func(w *stack) string {
		return fmt.Sprintf(`maintnerd:
  url: %q
  gerrit_reconcile: 10s
  github_reconcile: 10s
pubsubhelper:
  url: %q
gitmirror:
  url: %q
  poll: 10s
  token: file:%s
coordinator:
  url: %q
  heartbeat_timeout: 3s
`, u("maintnerd"), u("pubsubhelper"), u("gitmirror"), w.secret("gitmirror-token", "gitmirror-token-value-0123456789"), u("coordinator"))
	})
	clientTok := s.secret("client-token", "client-token-value")
	workerToks := s.secret("worker-tokens", "w1 worker-one-token\nw2 worker-two-token")

	common := func(name string) []string {
		return []string{"--config", s.cfg, "--data-dir", filepath.Join(s.dir, name), "--log-level", "info"}
	}
	run := func(name, url string, args ...string) *proc {
		return startProc(t, s.logs, name, url, append(append([]string{name}, common(name)...), args...)...)
	}
	s.pubsub = run("pubsubhelper", u("pubsubhelper"), "--listen", addr["pubsubhelper"])
	s.maintnerd = run("maintnerd", u("maintnerd"), "--listen", addr["maintnerd"])
	s.gitmirror = run("gitmirror", u("gitmirror"), "--listen", addr["gitmirror"])
	s.coord = run("coordinator", u("coordinator"), "--listen", addr["coordinator"], "--worker-tokens", workerToks, "--client-token-file", clientTok)
	for _, w := range []string{"w1", "w2"} {
		tok := s.secret(w+"-token", "worker-"+map[string]string{"w1": "one", "w2": "two"}[w]+"-token")
		p := startProc(t, s.logs, w, u(w), append([]string{"worker"}, append(common(w),
			"--coordinator", u("coordinator"), "--token-file", tok, "--name", w, "--slots", "2", "--listen", addr[w], "--drain", "1s")...)...)
		s.workers = append(s.workers, p)
	}
	s.trybot = run("trybot", u("trybot"), "--listen", addr["trybot"], "--coordinator-token-file", clientTok)
	s.postsubmit = run("postsubmit", u("postsubmit"), "--listen", addr["postsubmit"], "--coordinator-token-file", clientTok)
	s.dashboard = run("dashboard", u("dashboard"), "--listen", addr["dashboard"], "--coordinator-token-file", clientTok, "--trybot", u("trybot"))
	var err error
	if s.runs, err = client.New(u("trybot"), nil); err != nil {
		t.Fatal(err)
	}
	if s.coordAPI, err = api.NewClient(u("coordinator"), "client-token-value", nil); err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// upload creates a change with files and votes Run-TryBot+1 on it.
func (s *stack) upload(subject string, files map[string]string) int {
	s.t.Helper()
	ctx := s.t.Context()
	n, _, err := s.w.Sim.CreateChange(ctx, s.w.Project, "main", s.w.Owner, subject, files)
	must(s.t, err)
	must(s.t, s.w.Sim.Vote(ctx, n, 0, s.w.Reviewer, map[string]int{"Run-TryBot": 1}, "Run the TryBots.", ""))
	s.changes = append(s.changes, n)
	return n
}

// waitResult waits for the bot's TryBot-Result on change n's current
// patch set.
func (s *stack) waitResult(n int, timeout time.Duration) *gerritChange {
	s.t.Helper()
	var ch *gerritChange
	waitFor(s.t, fmt.Sprintf("TryBot-Result on change %d", n), timeout, func() bool {
		ch = getGerritChange(s.t, s.w.Sim.URL(), n)
		return ch.result(s.w.Bot) != 0
	})
	return ch
}

// openPR opens a pull request from branch with files and labels it
// run-trybot, as the maintainer.
func (s *stack) openPR(branch string, files map[string]string) int {
	s.t.Helper()
	ctx := s.t.Context()
	n, err := s.gh.OpenPR(ctx, ghRepo, ghMaint, githubsim.PROptions{Head: branch, Title: "Change " + branch, Files: files})
	must(s.t, err)
	must(s.t, s.gh.AddLabel(ctx, ghRepo, n, ghMaint, "run-trybot"))
	return n
}

// waitCheckRuns waits until pull request n's head has exactly the check
// runs want ("name=conclusion"), all completed.
func (s *stack) waitCheckRuns(n int, want ...string) {
	s.t.Helper()
	var head struct {
		Head struct {
			SHA string `json:"sha"`
		} `json:"head"`
	}
	must(s.t, getJSONAs(s.t.Context(), s.ghToken, fmt.Sprintf("%srepos/%s/pulls/%d", s.gh.APIURL(), ghRepo, n), &head))
	var got []string
	waitFor(s.t, fmt.Sprintf("check runs %q of pull request %d", want, n), 60*time.Second, func() bool {
		got = checkRuns(s.t, s.gh.APIURL(), s.ghToken, ghRepo, head.Head.SHA)
		return slices.Equal(got, want)
	})
}

// waitRunning waits until the trybot reports a running build for change
// n's patch set ps.
func (s *stack) waitRunning(review string, n, ps int) {
	s.t.Helper()
	waitFor(s.t, fmt.Sprintf("a running build of %s change %d", review, n), 60*time.Second, func() bool {
		runs, err := s.runs.Runs(s.t.Context(), client.ListOptions{Review: review, Change: int32(n), PatchSet: int32(ps)})
		if err != nil {
			return false
		}
		for _, r := range runs {
			for _, b := range r.Builds {
				if b.State == client.BuildRunning {
					return true
				}
			}
		}
		return false
	})
}

// busyWorker returns the worker process that runs a job right now.
func (s *stack) busyWorker() *proc {
	s.t.Helper()
	var busy *proc
	waitFor(s.t, "a worker running a job", 30*time.Second, func() bool {
		ws, err := s.coordAPI.Workers(s.t.Context())
		if err != nil {
			return false
		}
		for _, w := range ws {
			if !w.Connected || len(w.Running) == 0 {
				continue
			}
			for _, p := range s.workers {
				if p.name == w.Name {
					busy = p
					return true
				}
			}
		}
		return false
	})
	return busy
}

// requireRetried checks that a job of change n's build lost its first
// attempt with worker and ran again.
func (s *stack) requireRetried(n int, worker string) {
	s.t.Helper()
	ctx := s.t.Context()
	runs, err := s.runs.Runs(ctx, client.ListOptions{Review: client.ReviewGerrit, Change: int32(n)})
	must(s.t, err)
	if len(runs) != 1 || len(runs[0].Builds) != 1 {
		s.t.Fatalf("change %d: runs %+v, want one run with one build", n, runs)
	}
	b, err := s.coordAPI.Build(ctx, runs[0].Builds[0].BuildID)
	must(s.t, err)
	for _, j := range b.Jobs {
		if len(j.Attempts) >= 2 && j.Attempts[0].Worker == worker {
			return
		}
	}
	s.t.Errorf("no job of build %d lost an attempt with worker %s: %+v", b.ID, worker, b.Jobs)
}

// exactlyOnce checks that change n's patch set ps has one beginning and
// one result message of the bot, and the vote want.
func (s *stack) exactlyOnce(n, ps, want int) {
	s.t.Helper()
	ch := getGerritChange(s.t, s.w.Sim.URL(), n)
	if got := ch.result(s.w.Bot); got != want {
		s.t.Errorf("change %d: TryBot-Result %+d, want %+d", n, got, want)
	}
	if r := ch.resultMessages(s.w.Bot, ps); len(r) != 1 {
		s.t.Errorf("change %d patch set %d: %d result messages, want 1: %q", n, ps, len(r), r)
	}
	begins := 0
	for _, m := range ch.botMessages(s.w.Bot, ps) {
		if strings.Contains(m, "TryBots beginning") {
			begins++
		}
	}
	if begins != 1 {
		s.t.Errorf("change %d patch set %d: %d beginning messages, want 1: %q", n, ps, begins, ch.botMessages(s.w.Bot, ps))
	}
}

// TestDistributed runs tryd as separate processes and checks the whole
// loop on Gerrit (pass, fail, a new patch set in the middle of a run) and
// GitHub (label, comment), kill -9 of each stateful component mid-run,
// the dashboard's try run pages and post-submit grid, and that a corpus
// follower sees everything maintnerd has, and so does x/build's maintner
// client (xfollow), which follows maintnerd from the start, across its
// kill -9.
func TestDistributed(t *testing.T) {
	t.Parallel()
	// x/build's maintner client follows maintnerd from the start, in
	// xfollow (built beside the stack's start: it takes a while).
	type built struct {
		bin string
		err error
	}
	xbuilt := make(chan built, 1)
	goTool, root, xdir := testenv.NeedTool(t, "go"), testenv.RepoRoot(t), t.TempDir()
	go func() {
		bin, err := buildXfollow(goTool, root, xdir)
		xbuilt <- built{bin, err}
	}()
	s := startStack(t)
	ctx := t.Context()
	xb := <-xbuilt
	must(t, xb.err)
	xf := startXfollow(t, s, xb.bin, s.maintnerd.url+"/logs")
	var tailed []int // changes created after maintnerd's kill -9 and restart

	t.Run("GerritPass", func(t *testing.T) {
		n := s.upload("Add ok", map[string]string{"ok.txt": "ok\n", "pass.txt": "1\n"})
		ch := s.waitResult(n, 90*time.Second)
		s.exactlyOnce(n, 1, 1)
		if msgs := ch.resultMessages(s.w.Bot, 1); len(msgs) == 1 && !strings.Contains(msgs[0], "passed") {
			t.Errorf("result message %q does not say the TryBots passed", msgs[0])
		}
	})

	t.Run("GerritFail", func(t *testing.T) {
		n := s.upload("Add bad", map[string]string{"bad.txt": "1\n"})
		ch := s.waitResult(n, 60*time.Second)
		s.exactlyOnce(n, 1, -1)
		if msgs := ch.resultMessages(s.w.Bot, 1); len(msgs) == 1 && !strings.Contains(msgs[0], "Failed on check") {
			t.Errorf("result message %q does not name the failed builder check", msgs[0])
		}
	})

	t.Run("NewPatchSetMidRun", func(t *testing.T) {
		n := s.upload("Slow first", map[string]string{"ok.txt": "ok\n", "slow.txt": "4\n", "ps.txt": "1\n"})
		s.waitRunning(client.ReviewGerrit, n, 1)
		ps, _, err := s.w.Sim.UploadPatchSet(ctx, n, s.w.Owner, map[string]string{"ok.txt": "ok\n", "ps.txt": "2\n"}, "")
		must(t, err)
		must(t, s.w.Sim.Vote(ctx, n, ps, s.w.Reviewer, map[string]int{"Run-TryBot": 1}, "Again.", ""))
		s.waitResult(n, 60*time.Second)
		s.exactlyOnce(n, ps, 1)
		time.Sleep(5 * time.Second) // the first run's sleep is over: a stale report would be in by now
		ch := getGerritChange(t, s.w.Sim.URL(), n)
		if r := ch.resultMessages(s.w.Bot, 1); len(r) != 0 {
			t.Errorf("the superseded patch set 1 got results: %q", r)
		}
	})

	t.Run("GitHub", func(t *testing.T) {
		ok := s.openPR("topic-ok", map[string]string{"ok.txt": "ok\n"})
		bad := s.openPR("topic-bad", map[string]string{"bad.txt": "x\n"})
		// A maintainer's "/trybot" comment asks too.
		n, err := s.gh.OpenPR(ctx, ghRepo, ghMaint, githubsim.PROptions{Head: "topic-comment", Title: "By comment", Files: map[string]string{"ok.txt": "ok\n", "c.txt": "c\n"}})
		must(t, err)
		_, err = s.gh.Comment(ctx, ghRepo, n, ghMaint, "/trybot")
		must(t, err)
		s.waitCheckRuns(ok, "tryd/check=success")
		s.waitCheckRuns(bad, "tryd/check=failure")
		s.waitCheckRuns(n, "tryd/check=success")
	})

	// kill -9 one component at a time while a build runs; after its
	// restart the run completes and is reported exactly once. (maintnerd
	// comes first: the changes after it are the ones x/build's tail,
	// which started before, must have seen across the restart.)
	for _, victim := range []string{"maintnerd", "trybot", "coordinator", "worker", "pubsubhelper", "gitmirror"} {
		t.Run("Kill9-"+victim, func(t *testing.T) {
			n := s.upload("Survive "+victim, map[string]string{"ok.txt": "ok\n", "slow.txt": "3\n", victim + ".txt": "1\n"})
			s.waitRunning(client.ReviewGerrit, n, 1)
			var ps []*proc
			switch victim {
			case "maintnerd":
				ps = []*proc{s.maintnerd}
			case "trybot":
				ps = []*proc{s.trybot}
			case "coordinator":
				ps = []*proc{s.coord}
			case "pubsubhelper":
				ps = []*proc{s.pubsub}
			case "gitmirror":
				ps = []*proc{s.gitmirror}
			case "worker":
				// The worker running the job: it loses the job, which
				// runs again (on either worker) after the heartbeat
				// timeout.
				ps = []*proc{s.busyWorker()}
			}
			for _, p := range ps {
				p.kill9()
			}
			time.Sleep(300 * time.Millisecond)
			for _, p := range ps {
				p.restart()
			}
			s.waitResult(n, 90*time.Second)
			time.Sleep(time.Second) // time for a duplicate to show
			s.exactlyOnce(n, 1, 1)
			if victim == "worker" {
				s.requireRetried(n, ps[0].name)
			}
			if victim != "maintnerd" {
				tailed = append(tailed, n)
			}
		})
	}

	t.Run("GitmirrorDownAtVote", func(t *testing.T) {
		// gitmirror is down when the change is voted on and comes back
		// a moment later: the trybot waits for it to have the revision
		// (the vote's fetch nudge was lost with the process), and the
		// workers fetch from it (retrying, in worker/source, should it
		// go away again in between).
		s.gitmirror.kill9()
		n := s.upload("Gitmirror was down", map[string]string{"ok.txt": "ok\n", "down.txt": "1\n"})
		time.Sleep(1500 * time.Millisecond)
		s.gitmirror.restart()
		s.waitResult(n, 90*time.Second)
		time.Sleep(time.Second) // time for a duplicate to show
		s.exactlyOnce(n, 1, 1)
		tailed = append(tailed, n)
		// Whether a worker got to see gitmirror down depends on timing
		// (worker/source's own test makes sure it does); say if it did.
		t.Logf("workers retried a source fetch %d times", strings.Count(s.logs.String(), "fetch failed for a transient reason"))
	})

	t.Run("GitmirrorClosed", func(t *testing.T) {
		// Every source above came through gitmirror with its token; a
		// request without it is refused.
		resp, err := http.Get(s.gitmirror.url + "/proj/refs")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("gitmirror without a token: %s, want 401", resp.Status)
		}
	})

	t.Run("Dashboard", func(t *testing.T) {
		// postsubmit built the branch main of each repository: the grid
		// shows its commit, which passes.
		for _, repo := range []string{"proj", "gh"} {
			var grid struct {
				Commits []struct {
					Branch string `json:"branch"`
					Cells  []struct {
						State   string `json:"state"`
						BuildID int64  `json:"build_id"`
					} `json:"cells"`
				} `json:"commits"`
			}
			waitFor(t, "the grid of "+repo, 60*time.Second, func() bool {
				if err := getJSON(ctx, s.dashboard.url+"/grid/"+repo+"?format=json", &grid); err != nil || len(grid.Commits) == 0 {
					return false
				}
				c := grid.Commits[0]
				return c.Branch == "main" && len(c.Cells) == 1 && c.Cells[0].BuildID != 0 && c.Cells[0].State == "ok"
			})
		}

		// Each change's newest try run, as the dashboard shows it.
		for _, n := range s.changes {
			var page struct {
				Run struct {
					Change int    `json:"change"`
					State  string `json:"state"`
					Builds []struct {
						Builder string `json:"builder"`
					} `json:"builds"`
				} `json:"run"`
			}
			u := fmt.Sprintf("%s/try?review=gerrit&repo=proj&change=%d&format=json", s.dashboard.url, n)
			must(t, getJSON(ctx, u, &page))
			want := "succeeded"
			if getGerritChange(t, s.w.Sim.URL(), n).result(s.w.Bot) < 0 {
				want = "failed"
			}
			if page.Run.Change != n || page.Run.State != want || len(page.Run.Builds) != 1 || page.Run.Builds[0].Builder != "check" {
				t.Errorf("dashboard's run of change %d: %+v, want %s on builder check", n, page.Run, want)
			}
		}
	})

	t.Run("CorpusFollower", func(t *testing.T) {
		f, err := logsync.NewFollower(logsync.FollowerOptions{URL: s.maintnerd.url + "/logs", CacheDir: t.TempDir()})
		must(t, err)
		defer f.Close()
		c, err := maintner.New(maintner.Options{})
		must(t, err)
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Follow(fctx, f) }()
		defer func() { cancel(); <-done }()

		// The follower ends up with every change the test created, each
		// with the bot's vote on its current patch set, and both pull
		// requests with their label. (Events missed while pubsubhelper
		// was down come through maintnerd's reconciliation.)
		// maintner names a Gerrit project "host[:port]/project".
		projName := strings.TrimSuffix(strings.TrimPrefix(s.w.Sim.URL(), "http://"), "/") + "/" + s.w.Project
		var missing string
		complete := func() bool {
			c.RLock()
			defer c.RUnlock()
			proj := c.GerritProject(projName)
			if proj == nil {
				missing = "Gerrit project " + projName
				return false
			}
			for _, n := range s.changes {
				ch := proj.Change(int32(n))
				if ch == nil {
					missing = fmt.Sprintf("change %d", n)
					return false
				}
				voted := false
				for _, v := range ch.Votes {
					if v.Label == "TryBot-Result" && v.Account == int32(s.w.Bot) && v.PatchSet == ch.CurrentPatchSet {
						voted = true
					}
				}
				if !voted {
					missing = fmt.Sprintf("TryBot-Result on change %d patch set %d", n, ch.CurrentPatchSet)
					return false
				}
			}
			repo := c.GitHubRepo("org", "repo")
			if repo == nil {
				missing = "GitHub repository org/repo"
				return false
			}
			for n := 1; n <= 2; n++ {
				if is := repo.Issue(int32(n)); is == nil || !is.HasLabel("run-trybot") || is.PR == nil {
					missing = fmt.Sprintf("labelled pull request %d", n)
					return false
				}
			}
			asked := false
			if is := repo.Issue(3); is != nil && is.PR != nil {
				for _, cm := range is.Comments {
					body, err := c.Text(cm.Body)
					asked = asked || err == nil && cm.User != nil && cm.User.Login == ghMaint && body == "/trybot"
				}
			}
			if !asked {
				missing = "pull request 3 with the maintainer's /trybot comment"
				return false
			}
			return true
		}
		deadline := time.Now().Add(45 * time.Second)
		for !complete() {
			if time.Now().After(deadline) {
				t.Fatalf("the follower still lacks %s", missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// And it holds exactly what maintnerd holds.
		var leader, got maintner.Stats
		deadline = time.Now().Add(30 * time.Second)
		for {
			must(t, getJSON(ctx, s.maintnerd.url+"/api/stats", &leader))
			got = c.Stats()
			if got == leader {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("follower's corpus %+v, maintnerd's %+v", got, leader)
			}
			time.Sleep(100 * time.Millisecond)
		}

		// x/build's client, which followed maintnerd all along (across
		// its kill -9), holds the same history.
		checkXbuild(t, s, xf, c, tailed)
	})
}
