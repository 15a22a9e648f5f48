package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/pubsubhelper"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

const (
	testGHSecret     = "gh-webhook-secret"
	testGerritSecret = "gerrit-webhook-secret"
)

// startTestPubsubhelper runs a journaling pubsubhelper on 127.0.0.1:0.
func startTestPubsubhelper(t *testing.T) string {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := pubsubhelper.New(pubsubhelper.Options{Journal: j,
		GitHubSecrets:   []pubsubhelper.Secret{{Server: "github", Value: []byte(testGHSecret)}},
		GerritSecrets:   []pubsubhelper.Secret{{Server: "review", Value: []byte(testGerritSecret)}},
		OpenSubscribers: true}) // on loopback; the subscription sends no token
	if err != nil {
		t.Fatal(err)
	}
	hs, err := httpserver.New(httpserver.Options{Handler: s.Handler(), Component: "pubsubhelper"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hs.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; j.Close() })
	return hs.URL()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaintnerdIngestion wires maintnerd's ingestion as tryd maintnerd
// does (tryd.yaml servers and repos, secrets from files, a pubsubhelper
// subscription resumed from a saved cursor) to the GitHub and Gerrit
// simulators delivering real webhooks through a real pubsubhelper. A pull
// request and a change reach the corpus through nudges; then every
// webhook is dropped and reconciliation alone brings new activity in;
// replayed syncs log nothing.
func TestMaintnerdIngestion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	psURL := startTestPubsubhelper(t)
	gh := githubsim.StartForTest(t, githubsim.Options{})
	tok, err := gh.AddUser("gopher", githubsim.PermAdmin)
	mustNoErr(t, err)
	mustNoErr(t, gh.CreateRepo(ctx, "gopher/widget"))
	_, err = gh.Push(ctx, "gopher/widget", "main", map[string]string{"go.mod": "module widget\n"})
	mustNoErr(t, err)
	mustNoErr(t, gh.CreateLabel("gopher/widget", "run-trybot", "00ff00", ""))
	_, err = gh.AddHook(ctx, "gopher/widget", githubsim.HookOptions{URL: psURL + "/github-webhook", Secret: testGHSecret, Events: []string{"*"}})
	mustNoErr(t, err)
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	hookURL, _ := url.Parse(psURL + "/gerrit-webhook")
	hookURL.User = url.UserPassword("gerrit", testGerritSecret)
	hook := w.Sim.AddWebhook(hookURL.String())

	dataDir := t.TempDir()
	m, _ := startTestMaintnerd(t, dataDir)
	tokFile := filepath.Join(t.TempDir(), "token")
	mustNoErr(t, os.WriteFile(tokFile, []byte(tok+"\n"), 0o600))
	var errb bytes.Buffer
	log, err := logging.New(logging.Options{Output: &errb, Level: "debug"})
	mustNoErr(t, err)
	a := &app{stdout: &bytes.Buffer{}, stderr: &errb, dataDir: dataDir, log: log, cfg: &config.Config{
		GitHub: []config.GitHubServer{{Name: "github", APIURL: gh.APIURL(), Token: config.FileSecret(tokFile)}},
		Gerrit: []config.GerritServer{{Name: "review", URL: w.Sim.URL()}},
		Repos: []config.Repo{
			{Name: "widget", GitHub: "github", Slug: "gopher/widget"},
			{Name: "proj", Gerrit: "review", Project: w.Project},
		},
		Maintnerd: config.Maintnerd{GitHubReconcile: config.Duration(time.Hour), GerritReconcile: config.Duration(time.Hour)},
	}}
	in, err := newIngestion(a, m.corpus, m.registry, log)
	mustNoErr(t, err)
	// Resume from a cursor saved before the activity: everything after
	// it is delivered.
	cursorPath := filepath.Join(dataDir, "cursor.json")
	mustNoErr(t, writeCursor(cursorPath, pubsubtypes.Cursor{Time: pubsubtypes.Time(time.Now().Add(-time.Second))}))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { in.Run(runCtx); done <- struct{}{} }()
	go func() { in.Subscribe(runCtx, psURL, "", cursorPath); done <- struct{}{} }()
	defer func() { stop(); <-done; <-done }()

	c := m.corpus
	// Wait for the first reconciliation passes, so that what follows
	// arrives through nudges only (the next pass is an hour away).
	eventually(t, "first reconciliation", func() bool {
		c.RLock()
		defer c.RUnlock()
		return c.GitHubRepo("gopher", "widget") != nil && c.GerritProject(in.gerrit["review"].CorpusName(w.Project)) != nil
	})

	n, err := gh.OpenPR(ctx, "gopher/widget", "gopher", githubsim.PROptions{Head: "fix", Title: "Fix it", Files: map[string]string{"fix.go": "package widget\n"}})
	mustNoErr(t, err)
	mustNoErr(t, gh.AddLabel(ctx, "gopher/widget", n, "gopher", "run-trybot"))
	_, err = gh.Comment(ctx, "gopher/widget", n, "gopher", "/trybot")
	mustNoErr(t, err)
	head, err := gh.PushToPR(ctx, "gopher/widget", n, map[string]string{"fix.go": "package widget // v2\n"})
	mustNoErr(t, err)
	cl, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Add feature", map[string]string{"f.go": "package proj\n"})
	mustNoErr(t, err)
	mustNoErr(t, w.Sim.Vote(ctx, cl, 1, w.Reviewer, map[string]int{"Run-TryBot": 1, "Code-Review": 2}, "Run them.", ""))
	mustNoErr(t, w.Sim.Comment(ctx, cl, 1, w.Reviewer, "LGTM", ""))
	mustNoErr(t, w.Sim.Submit(ctx, cl, w.Reviewer))

	prState := func(n int, head string) func() bool {
		return func() bool {
			c.RLock()
			defer c.RUnlock()
			is := c.GitHubRepo("gopher", "widget").Issue(int32(n))
			return is != nil && is.HasLabel("run-trybot") && len(is.Comments) == 1 && is.PR != nil && is.PR.HeadSHA.String() == head
		}
	}
	changeState := func(cl int, status string) func() bool {
		return func() bool {
			c.RLock()
			defer c.RUnlock()
			ch := c.GerritProject(in.gerrit["review"].CorpusName(w.Project)).Change(int32(cl))
			return ch != nil && ch.Status == status && ch.Vote(1, "Run-TryBot", int32(w.Reviewer)) == 1 && len(ch.Messages) >= 2
		}
	}
	eventually(t, "pull request through webhooks", prState(n, head))
	eventually(t, "change through webhooks", changeState(cl, "merged"))

	// Every webhook lost from now on: reconciliation must do.
	gh.SetDrop(func(githubsim.Delivery) bool { return true })
	hook.SetDrop(func(gerritsim.Event) bool { return true })
	n2, err := gh.OpenPR(ctx, "gopher/widget", "gopher", githubsim.PROptions{Head: "fix2", Title: "Fix more", Files: map[string]string{"fix2.go": "package widget\n"}})
	mustNoErr(t, err)
	mustNoErr(t, gh.AddLabel(ctx, "gopher/widget", n2, "gopher", "run-trybot"))
	_, err = gh.Comment(ctx, "gopher/widget", n2, "gopher", "/trybot")
	mustNoErr(t, err)
	head2, err := gh.PushToPR(ctx, "gopher/widget", n2, map[string]string{"fix2.go": "package widget // v2\n"})
	mustNoErr(t, err)
	cl2, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Second", map[string]string{"g.go": "package proj\n"})
	mustNoErr(t, err)
	mustNoErr(t, w.Sim.Vote(ctx, cl2, 1, w.Reviewer, map[string]int{"Run-TryBot": 1}, "Run them.", ""))
	mustNoErr(t, w.Sim.Comment(ctx, cl2, 1, w.Reviewer, "Hmm", ""))
	mustNoErr(t, gh.Flush(ctx))
	mustNoErr(t, w.Sim.Flush(ctx))
	if st := hook.Stats(); st.Dropped == 0 {
		t.Fatalf("no Gerrit event dropped: %+v", st)
	}
	time.Sleep(200 * time.Millisecond)
	c.RLock()
	missed := c.GitHubRepo("gopher", "widget").Issue(int32(n2)) == nil
	c.RUnlock()
	if !missed {
		t.Fatal("pull request reached the corpus although its webhooks were dropped")
	}
	mustNoErr(t, in.github["github"].Reconcile(ctx))
	mustNoErr(t, in.gerrit["review"].Reconcile(ctx))
	if !prState(n2, head2)() {
		t.Error("reconciliation did not bring the pull request whose webhooks were lost")
	}
	if !changeState(cl2, "new")() {
		t.Error("reconciliation did not bring the change whose webhooks were lost")
	}

	// Replayed events change nothing.
	before := c.Stats().Records
	for i := 0; i < 3; i++ {
		mustNoErr(t, in.github["github"].Sync(ctx, "gopher/widget", n))
		mustNoErr(t, in.gerrit["review"].Sync(ctx, w.Project, cl))
	}
	mustNoErr(t, in.github["github"].Reconcile(ctx))
	mustNoErr(t, in.gerrit["review"].Reconcile(ctx))
	if after := c.Stats().Records; after != before {
		t.Errorf("replayed syncs logged %d records", after-before)
	}
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
