package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
)

// The demo of tryd dev: a Gerrit simulator and a GitHub simulator whose
// state lives under <data-dir>/dev, a sample Go module, and changes voted
// Run-TryBot+1 (pull requests labelled run-trybot) once every component
// is up, so that webhooks, ingestion, mirroring, building and reporting
// all run for real.
//
// The Gerrit simulator keeps its state on disk and reloads it (Sim.Load),
// so a second run continues where the first stopped. The GitHub simulator
// keeps issues in memory only: its repository and pull requests are
// created afresh on every run (and so are tried again).

const (
	demoProject  = "hello"          // Gerrit project and tryd repo name
	demoGitHub   = "gopher/hello"   // GitHub repository
	demoGHRepo   = "github/hello"   // its tryd repo name
	demoGerrit   = "demo-gerrit"    // server names in the generated config
	demoGHServer = "demo-github"    //
	demoBotUser  = "tryd-bot"       // the trybot's Gerrit account
	demoAppSlug  = "tryd-demo"      // the trybot's GitHub App
	demoGHLabel  = "run-trybot"     // trybot.github_label's default
	demoHookUser = "gerrit-webhook" // basic-auth user of Gerrit's webhook
)

// demoModule is the sample repository: a small Go module whose test
// passes.
var demoModule = map[string]string{
	"go.mod": "module example.com/hello\n\ngo 1.21\n",
	"hello.go": `// Package hello greets people.
package hello

// Greet returns a greeting for name, or for the world when name is empty.
func Greet(name string) string {
	if name == "" {
		name = "world"
	}
	return "Hello, " + name + "!"
}
`,
	"hello_test.go": `package hello

import "testing"

func TestGreet(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"", "Hello, world!"},
		{"Gopher", "Hello, Gopher!"},
	} {
		if got := Greet(tc.name); got != tc.want {
			t.Errorf("Greet(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
`,
	"README.md": "# hello\n\nThe sample repository of the tryd dev demo.\n",
}

// demoPassing adds a function with its test: every step passes.
var demoPassing = map[string]string{
	"farewell.go": `package hello

// Farewell returns a goodbye for name.
func Farewell(name string) string { return "Goodbye, " + name + "." }
`,
	"farewell_test.go": `package hello

import "testing"

func TestFarewell(t *testing.T) {
	if got := Farewell("Gopher"); got != "Goodbye, Gopher." {
		t.Errorf("Farewell = %q", got)
	}
}
`,
}

// demoFailing changes Greet's wording without updating its test: it
// builds and vets, and its test fails.
var demoFailing = map[string]string{
	"hello.go": `// Package hello greets people.
package hello

// Greet returns a greeting for name, or for the world when name is empty.
func Greet(name string) string {
	if name == "" {
		name = "world"
	}
	return "Hi, " + name + "!"
}
`,
}

// demoState is what a later run needs to know of the first
// (<data-dir>/dev/demo.json).
type demoState struct {
	Owner, Reviewer, Bot int
	// Changes are the demo's Gerrit changes, by what they show.
	Changes map[string]int `json:",omitempty"`
}

// demo is the running demo.
type demo struct {
	dir        string // <data-dir>/dev
	configPath string
	state      demoState

	gerrit      *gerritsim.Sim
	gerritStop  func()
	github      *githubsim.Sim // nil without the GitHub half
	ghUser      string
	ghToken     string         // ghUser's token: the watcher's REST calls count against 5000 an hour, not 60
	prs         map[string]int // pull requests by what they show
	gerritHook  string         // the webhook secret files' contents
	githubHook  string
	watchCancel context.CancelFunc
	watchDone   chan struct{}
	out         io.Writer
}

// startDemo starts the simulators (loading what an earlier run left),
// creates on the first run the accounts, the project and the sample
// module, and writes the configuration the components will read.
// Component addresses must be assigned already (d.urls).
func startDemo(ctx context.Context, d *dev, withGitHub bool) (_ *demo, err error) {
	dm := &demo{dir: d.dir, out: d.a.stdout, prs: map[string]int{}}
	defer func() {
		if err != nil {
			dm.Close()
		}
	}()
	log := logging.For(d.a.log, "gerritsim")
	if dm.gerritHook, err = readOrCreateSecret(filepath.Join(d.dir, "gerrit-webhook-secret")); err != nil {
		return nil, err
	}
	if dm.githubHook, err = readOrCreateSecret(filepath.Join(d.dir, "github-webhook-secret")); err != nil {
		return nil, err
	}
	botPass, err := readOrCreateSecret(filepath.Join(d.dir, "gerrit-bot-password"))
	if err != nil {
		return nil, err
	}

	// Gerrit, on the port of the last run so that its URL (and the
	// corpus's names for its projects) stay the same.
	gdir := filepath.Join(d.dir, "gerrit")
	if dm.gerrit, err = gerritsim.New(gerritsim.Options{Dir: gdir, Log: log}); err != nil {
		return nil, err
	}
	if err := dm.gerrit.Load(ctx); err != nil {
		return nil, fmt.Errorf("%w (delete %s to start the demo afresh)", err, d.a.dataDir)
	}
	addr, err := d.addr("gerritsim")
	if err != nil {
		return nil, err
	}
	srv, err := httpserver.New(httpserver.Options{Addr: addr, Handler: dm.gerrit.Handler(), Component: "gerritsim", Log: log})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, fmt.Errorf("gerrit simulator: %w", err)
	}
	dm.gerrit.SetURL(srv.URL() + "/")
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(sctx); close(served) }()
	dm.gerritStop = func() { cancel(); <-served }

	statePath := filepath.Join(d.dir, "demo.json")
	if b, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(b, &dm.state); err != nil {
			return nil, fmt.Errorf("%s: %w", statePath, err)
		}
	}
	if !contains(dm.gerrit.Projects(), demoProject) {
		if err := dm.createGerritWorld(ctx, botPass); err != nil {
			return nil, fmt.Errorf("gerrit simulator: %w", err)
		}
		if err := dm.saveState(); err != nil {
			return nil, err
		}
	}

	if withGitHub {
		if err := dm.startGitHub(ctx, d); err != nil {
			return nil, fmt.Errorf("github simulator: %w", err)
		}
	}
	dm.configPath = filepath.Join(d.dir, "tryd.yaml")
	if err := writeFileAtomic(dm.configPath, []byte(dm.config(d)), 0o644); err != nil {
		return nil, err
	}
	return dm, nil
}

func (dm *demo) saveState() error {
	b, err := json.MarshalIndent(dm.state, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dm.dir, "demo.json"), append(b, '\n'), 0o644)
}

// createGerritWorld creates the accounts and the project holding the
// sample module.
func (dm *demo) createGerritWorld(ctx context.Context, botPass string) error {
	s := dm.gerrit
	var err error
	mk := func(in gerritsim.AccountInput) int {
		if err != nil {
			return 0
		}
		var id int
		id, err = s.CreateAccount(in)
		return id
	}
	dm.state.Owner = mk(gerritsim.AccountInput{Username: "gopher", Name: "Gopher", Email: "gopher@example.com", HTTPPassword: randomToken()})
	dm.state.Reviewer = mk(gerritsim.AccountInput{Username: "reviewer", Name: "Rita Reviewer", Email: "reviewer@example.com", HTTPPassword: randomToken()})
	// The bot may vote TryBot-Result and nothing else, as a real trybot
	// account should.
	dm.state.Bot = mk(gerritsim.AccountInput{Username: demoBotUser, Name: "TryBot", Email: "tryd-bot@example.com", HTTPPassword: botPass,
		Permissions: map[string]gerritsim.Range{"TryBot-Result": {Min: -1, Max: 1}}})
	if err != nil {
		return err
	}
	if err := s.CreateProject(ctx, gerritsim.ProjectInput{Name: demoProject, Description: "tryd dev demo", Creator: dm.state.Owner}); err != nil {
		return err
	}
	_, err = s.CommitToBranch(ctx, demoProject, "main", dm.state.Owner, "Add the hello module", demoModule)
	return err
}

// startGitHub starts a fresh GitHub simulator with the sample module,
// a maintainer and the trybot's App.
func (dm *demo) startGitHub(ctx context.Context, d *dev) error {
	dir := filepath.Join(d.dir, "github")
	// Issues live in memory only: a new simulator needs a new directory.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	s, err := githubsim.New(githubsim.Options{Dir: dir, Log: logging.For(d.a.log, "githubsim")})
	if err != nil {
		return err
	}
	addr, err := d.addr("githubsim")
	if err != nil {
		return err
	}
	if err := s.Start(context.Background(), addr); err != nil {
		s.Close()
		return err
	}
	dm.github = s
	dm.ghUser = "gopher"
	if dm.ghToken, err = s.AddUser(dm.ghUser, githubsim.PermAdmin); err != nil {
		return err
	}
	if err := s.CreateRepo(ctx, demoGitHub); err != nil {
		return err
	}
	if _, err := s.PushCommit(ctx, demoGitHub, "main", "", githubsim.Commit{Files: demoModule, Message: "Add the hello module"}); err != nil {
		return err
	}
	if err := s.CreateLabel(demoGitHub, demoGHLabel, "0e8a16", "Run the TryBots"); err != nil {
		return err
	}
	// The App creates check runs; its webhook (re-run requests) goes to
	// the trybot, signed with the same secret as the repository's.
	if _, err := s.AddApp(githubsim.AppOptions{Slug: demoAppSlug, WebhookURL: d.urls["trybot"] + "/github-app-webhook",
		WebhookSecret: dm.githubHook, Events: []string{"check_run", "check_suite"}}); err != nil {
		return err
	}
	creds, err := s.AppCredentials(demoAppSlug)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(d.dir, "github-app-key.pem"), creds.PrivateKeyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(d.dir, "github-app.json"),
		[]byte(fmt.Sprintf("{\"app_id\": %d, \"installation_id\": %d}\n", creds.ID, creds.InstallationID)), 0o644)
}

// config is the generated tryd.yaml of the demo.
func (dm *demo) config(d *dev) string {
	var b strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	file := func(name string) string { return fmt.Sprintf("%q", "file:"+filepath.Join(dm.dir, name)) }
	f("# Generated by tryd dev for its demo; rewritten on every run.\n")
	f("gerrit:\n  - name: %s\n    url: %q\n    user: %s\n    password: %s\n    webhook_secret: %s\n",
		demoGerrit, dm.gerrit.URL(), demoBotUser, file("gerrit-bot-password"), file("gerrit-webhook-secret"))
	if dm.github != nil {
		var app struct {
			AppID          int64 `json:"app_id"`
			InstallationID int64 `json:"installation_id"`
		}
		b, _ := os.ReadFile(filepath.Join(dm.dir, "github-app.json"))
		json.Unmarshal(b, &app)
		f("github:\n  - name: %s\n    api_url: %q\n    app_id: %d\n    installation_id: %d\n    app_key: %s\n    webhook_secret: %s\n",
			demoGHServer, dm.github.APIURL(), app.AppID, app.InstallationID, file("github-app-key.pem"), file("github-webhook-secret"))
	}
	f("repos:\n  - name: %s\n    gerrit: %s\n    project: %s\n", demoProject, demoGerrit, demoProject)
	if dm.github != nil {
		f("  - name: %s\n    github: %s\n    slug: %s\n", demoGHRepo, demoGHServer, demoGitHub)
	}
	// The builder also builds each new commit of main (the dashboard's
	// grid).
	f("builders:\n  - name: %s-%s\n    labels: {os: %s, arch: %s}\n    planner: go\n    post_submit: true\n    timeout: 10m\n", runtime.GOOS, runtime.GOARCH, runtime.GOOS, runtime.GOARCH)
	public := d.urls["trybot"]
	if u, ok := d.urls["dashboard"]; ok {
		public = u
	}
	f("trybot:\n  public_url: %q\n", public)
	// Frequent reconciliation: the demo should repair a lost webhook
	// within a minute, not the production default of minutes.
	f("maintnerd:\n  url: %q\n  gerrit_reconcile: 1m\n  github_reconcile: 1m\n", d.urls["maintnerd"])
	f("pubsubhelper:\n  url: %q\n", d.urls["pubsubhelper"])
	f("gitmirror:\n  url: %q\n  poll: 1m\n", d.urls["gitmirror"])
	f("coordinator:\n  url: %q\n", d.urls["coordinator"])
	if u, ok := d.urls["dashboard"]; ok {
		f("dashboard:\n  url: %q\n", u)
	}
	return b.String()
}

// hookUp points the simulators' webhooks at pubsubhelper, as an operator
// configures Gerrit's webhooks plugin and a GitHub repository webhook.
func (dm *demo) hookUp(ctx context.Context, d *dev) error {
	u, err := url.Parse(d.urls["pubsubhelper"] + "/gerrit-webhook")
	if err != nil {
		return err
	}
	u.User = url.UserPassword(demoHookUser, dm.gerritHook)
	dm.gerrit.AddWebhook(u.String())
	if dm.github != nil {
		if _, err := dm.github.AddHook(ctx, demoGitHub, githubsim.HookOptions{URL: d.urls["pubsubhelper"] + "/github-webhook",
			Secret: dm.githubHook, Events: []string{"*"}}); err != nil {
			return err
		}
	}
	return nil
}

// seed creates the demo's changes and votes (first run only) and opens
// and labels its pull requests (every run: the GitHub simulator starts
// empty).
func (dm *demo) seed(ctx context.Context, d *dev) error {
	if dm.state.Changes == nil {
		dm.state.Changes = map[string]int{}
		for _, c := range []struct {
			what, subject string
			files         map[string]string
		}{
			{"passes", "hello: add Farewell", demoPassing},
			{"fails", "hello: greet with Hi (breaks TestGreet)", demoFailing},
		} {
			n, _, err := dm.gerrit.CreateChange(ctx, demoProject, "main", dm.state.Owner, c.subject, c.files)
			if err != nil {
				return err
			}
			dm.state.Changes[c.what] = n
			if err := dm.gerrit.Vote(ctx, n, 0, dm.state.Reviewer, map[string]int{"Run-TryBot": 1}, "Please run the TryBots.", ""); err != nil {
				return err
			}
			fmt.Fprintf(dm.out, "demo: Gerrit change %d %q (%s) voted Run-TryBot+1\n", n, c.subject, c.what)
		}
		if err := dm.saveState(); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(dm.out, "demo: Gerrit changes %s from an earlier run reloaded\n", dm.changeList())
	}
	if dm.github != nil {
		for _, p := range []struct {
			what, branch, title string
			files               map[string]string
		}{
			{"passes", "farewell", "Add Farewell", demoPassing},
			{"fails", "hi", "Greet with Hi (breaks TestGreet)", demoFailing},
		} {
			n, err := dm.github.OpenPR(ctx, demoGitHub, dm.ghUser, githubsim.PROptions{Head: p.branch, Title: p.title, Files: p.files})
			if err != nil {
				return err
			}
			dm.prs[p.what] = n
			if err := dm.github.AddLabel(ctx, demoGitHub, n, dm.ghUser, demoGHLabel); err != nil {
				return err
			}
			fmt.Fprintf(dm.out, "demo: GitHub pull request %s#%d %q (%s) labelled %s\n", demoGitHub, n, p.title, p.what, demoGHLabel)
		}
	}
	fmt.Fprintf(dm.out, "demo: waiting for the results (the first build fills Go's caches: allow a minute)\n")
	return nil
}

func (dm *demo) changeList() string {
	var parts []string
	for what, n := range dm.state.Changes {
		parts = append(parts, fmt.Sprintf("%d (%s)", n, what))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// printURLs prints the simulators' pages.
func (dm *demo) printURLs(w io.Writer) {
	fmt.Fprintf(w, "  Gerrit simulator %s  (changes: %schanges/?q=project:%s, one change: %schanges/N/detail)\n",
		dm.gerrit.URL(), dm.gerrit.URL(), demoProject, dm.gerrit.URL())
	if dm.github != nil {
		fmt.Fprintf(w, "  GitHub simulator %s  (pull requests: %srepos/%s/pulls)\n", dm.github.URL(), dm.github.APIURL(), demoGitHub)
	}
}

// watch prints each result the trybot posts on the demo's changes and
// pull requests, until all are in or stopWatch.
func (dm *demo) watch(ctx context.Context, d *dev) {
	ctx, dm.watchCancel = context.WithCancel(ctx)
	dm.watchDone = make(chan struct{})
	go func() {
		defer close(dm.watchDone)
		seen := map[string]bool{}
		hc := &http.Client{Timeout: 10 * time.Second}
		heads := map[int]string{}
		for {
			for what, n := range dm.state.Changes {
				key := fmt.Sprintf("gerrit/%d", n)
				if seen[key] {
					continue
				}
				if v, msg, ok := demoGerritResult(ctx, hc, dm.gerrit.URL(), n, dm.state.Bot); ok {
					seen[key] = true
					fmt.Fprintf(dm.out, "demo: Gerrit change %d (%s): TryBot-Result %+d: %s\n", n, what, v, firstLine(msg))
					if u, ok := d.urls["dashboard"]; ok {
						fmt.Fprintf(dm.out, "      %s/try?review=gerrit&repo=%s&change=%d\n", u, demoProject, n)
					}
				}
			}
			for what, n := range dm.prs {
				key := fmt.Sprintf("github/%d", n)
				if seen[key] {
					continue
				}
				if runs, ok := demoCheckRuns(ctx, hc, dm.github.APIURL(), dm.ghToken, n, heads); ok {
					seen[key] = true
					fmt.Fprintf(dm.out, "demo: GitHub pull request #%d (%s): check runs %s\n", n, what, runs)
					if u, ok := d.urls["dashboard"]; ok {
						fmt.Fprintf(dm.out, "      %s/try?review=github&repo=%s&change=%d\n", u, url.QueryEscape(demoGHRepo), n)
					}
				}
			}
			if len(seen) == len(dm.state.Changes)+len(dm.prs) {
				fmt.Fprintf(dm.out, "demo: every result is in; tryd keeps running until Ctrl-C\n")
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
}

func (dm *demo) stopWatch() {
	if dm.watchCancel != nil {
		dm.watchCancel()
		<-dm.watchDone
	}
}

// Close stops the simulators.
func (dm *demo) Close() {
	dm.stopWatch()
	if dm.github != nil {
		dm.github.Close()
	}
	if dm.gerrit != nil {
		dm.gerrit.Close()
	}
	if dm.gerritStop != nil {
		dm.gerritStop()
	}
}

// demoGerritResult reads change n through the simulator's REST API and
// returns account bot's TryBot-Result vote on the current patch set and
// the bot's last message, once there is a vote.
func demoGerritResult(ctx context.Context, hc *http.Client, base string, n, bot int) (int, string, bool) {
	var ch struct {
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
			Message string `json:"message"`
		} `json:"messages"`
	}
	if err := getGerritJSON(ctx, hc, fmt.Sprintf("%schanges/%d/detail", base, n), &ch); err != nil {
		return 0, "", false
	}
	for _, a := range ch.Labels["TryBot-Result"].All {
		if a.AccountID == bot && a.Value != 0 {
			msg := ""
			for _, m := range ch.Messages {
				if m.Author != nil && m.Author.AccountID == bot {
					msg = m.Message
				}
			}
			return a.Value, msg, true
		}
	}
	return 0, "", false
}

// getGerritJSON GETs a Gerrit REST URL and decodes the JSON after the
// ")]}'" line Gerrit prefixes to it.
func getGerritJSON(ctx context.Context, hc *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b = bytes.TrimPrefix(b, []byte(")]}'"))
	return json.Unmarshal(b, v)
}

// demoCheckRuns returns "name: conclusion" of the check runs on pull
// request n's head once every one of them has completed.
// heads caches the pull requests' head commits.
func demoCheckRuns(ctx context.Context, hc *http.Client, api, token string, n int, heads map[int]string) (string, bool) {
	if heads[n] == "" {
		var pr struct {
			Head struct {
				SHA string `json:"sha"`
			} `json:"head"`
		}
		if err := getJSON(ctx, hc, token, fmt.Sprintf("%srepos/%s/pulls/%d", api, demoGitHub, n), &pr); err != nil || pr.Head.SHA == "" {
			return "", false
		}
		heads[n] = pr.Head.SHA
	}
	var runs struct {
		CheckRuns []struct {
			Name       string `json:"name"`
			Status     string `json:"status"`
			Conclusion string `json:"conclusion"`
		} `json:"check_runs"`
	}
	if err := getJSON(ctx, hc, token, fmt.Sprintf("%srepos/%s/commits/%s/check-runs", api, demoGitHub, heads[n]), &runs); err != nil || len(runs.CheckRuns) == 0 {
		return "", false
	}
	var parts []string
	for _, r := range runs.CheckRuns {
		if r.Status != "completed" {
			return "", false
		}
		parts = append(parts, r.Name+": "+r.Conclusion)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", "), true
}

func getJSON(ctx context.Context, hc *http.Client, token, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(v)
}

// readOrCreateSecret returns the secret in path, creating a random one
// (0600) on first use.
func readOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	s := randomToken()
	return s, writeFileAtomic(path, []byte(s+"\n"), 0o600)
}

// firstLine returns the first line of a Gerrit message after its
// "Patch Set N: ..." header, where the trybot says what happened.
func firstLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 1 && strings.HasPrefix(lines[0], "Patch Set ") {
		lines = lines[1:]
	}
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
