package gitmirror

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/pubsubhelper"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
)

// startPubsubhelper serves a real pubsubhelper (in-memory journal) that
// accepts Gerrit and GitHub webhooks with the given secrets.
func startPubsubhelper(t testing.TB, gerritSecret, githubSecret string) string {
	t.Helper()
	j, err := journal.Open(journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pubsubhelper.New(pubsubhelper.Options{
		Journal:         j,
		GerritSecrets:   []pubsubhelper.Secret{{Server: "gerrit", Value: []byte(gerritSecret)}},
		GitHubSecrets:   []pubsubhelper.Secret{{Server: "github", Value: []byte(githubSecret)}},
		LongPollTimeout: time.Second,
		OpenSubscribers: true, // on loopback, for gitmirror's subscription without a token
	})
	if err != nil {
		t.Fatal(err)
	}
	u := serve(t, ps.Handler())
	t.Cleanup(func() { j.Close() })
	return u
}

// waitRefs polls /refs (which never fetches) until ref has want.
func waitRefs(t testing.TB, tm *testMirror, repo, ref, want string) {
	t.Helper()
	ctx := ctxT(t)
	eventually(t, func() error {
		refs, err := tm.client.Refs(ctx, repo, "")
		if err != nil {
			t.Fatal(err)
		}
		if refs[ref] != want {
			return fmt.Errorf("%s: %s = %q, want %s", repo, ref, refs[ref], want)
		}
		return nil
	})
}

// checkTarball compares the mirror's tarball of rev with git archive in
// the simulator's own repository.
func checkTarball(t *testing.T, tm *testMirror, repo, simGitDir, rev string) {
	t.Helper()
	resp, body := getTarball(t, tm.url, repo, rev)
	if resp.StatusCode != 200 {
		t.Fatalf("tarball %s@%s: %s %s", repo, rev, resp.Status, body)
	}
	want, err := exec.Command("git", "-C", simGitDir, "archive", "--format=tar.gz", rev).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("tarball %s@%s differs from git archive in the simulator", repo, rev)
	}
}

// TestSimulatorsThroughPubsubhelper runs the whole nudge path: a patch set
// uploaded in the Gerrit simulator and a pull request pushed in the GitHub
// simulator send webhooks to a real pubsubhelper, whose /waitevent nudges
// gitmirror, which then serves the new revisions. Polling is off, and
// /refs never fetches, so only the events can bring the revisions in.
func TestSimulatorsThroughPubsubhelper(t *testing.T) {
	testenv.Short(t)
	const gerritSecret, githubSecret = "gerrit-hook-secret", "github-hook-secret"
	psURL := startPubsubhelper(t, gerritSecret, githubSecret)
	ctx := ctxT(t)

	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	hook, err := url.Parse(psURL + "/gerrit-webhook")
	if err != nil {
		t.Fatal(err)
	}
	hook.User = url.UserPassword("gerrit", gerritSecret)
	w.Sim.AddWebhook(hook.String())
	gerritDir, err := w.Sim.RepoDir(w.Project)
	if err != nil {
		t.Fatal(err)
	}

	gh := githubsim.StartForTest(t, githubsim.Options{})
	if err := gh.CreateRepo(ctx, "owner/widget"); err != nil {
		t.Fatal(err)
	}
	if _, err := gh.AddUser("alice", githubsim.PermWrite); err != nil {
		t.Fatal(err)
	}
	if _, err := gh.Push(ctx, "owner/widget", "main", map[string]string{"main.go": "package main\n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := gh.AddHook(ctx, "owner/widget", githubsim.HookOptions{URL: psURL + "/github-webhook", Secret: githubSecret, Events: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	ghDir := t.TempDir() + "/widget.git"
	gitT(t, "", "clone", "-q", "--mirror", gh.GitURL("owner/widget"), ghDir)

	tm := startMirror(t, Options{
		Pubsubhelper: psURL,
		Repos: []Repo{
			{Name: "proj", URL: w.Sim.GitURL(w.Project), GerritProject: w.Project},
			{Name: "github.com/owner/widget", URL: gh.GitURL("owner/widget"), GitHubSlug: "owner/widget"},
		},
	})

	// Gerrit: a new change, then a second patch set.
	n, ps1, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Add feature", map[string]string{"feature.go": "package proj\n"})
	if err != nil {
		t.Fatal(err)
	}
	ref := func(ps int) string { return fmt.Sprintf("refs/changes/%02d/%d/%d", n%100, n, ps) }
	waitRefs(t, tm, "proj", ref(1), ps1)
	checkTarball(t, tm, "proj", gerritDir, ps1)
	_, ps2, err := w.Sim.UploadPatchSet(ctx, n, w.Owner, map[string]string{"feature.go": "package proj\n\nfunc F() {}\n"}, "Add feature\n\nv2")
	if err != nil {
		t.Fatal(err)
	}
	waitRefs(t, tm, "proj", ref(2), ps2)
	checkTarball(t, tm, "proj", gerritDir, ps2)
	refs, err := tm.client.Refs(ctx, "proj", fmt.Sprintf("refs/changes/%02d/%d/", n%100, n))
	if err != nil {
		t.Fatal(err)
	}
	if meta := refs[fmt.Sprintf("refs/changes/%02d/%d/meta", n%100, n)]; meta == "" {
		t.Errorf("NoteDb meta ref not mirrored: %v", refs)
	}

	// GitHub: a pull request, then a push to it.
	pr, err := gh.OpenPR(ctx, "owner/widget", "alice", githubsim.PROptions{Head: "feature", Title: "Feature", Files: map[string]string{"f.go": "package main\n"}})
	if err != nil {
		t.Fatal(err)
	}
	prRef := fmt.Sprintf("refs/pull/%d/head", pr)
	head := gitT(t, "", "ls-remote", gh.GitURL("owner/widget"), prRef)
	head, _, _ = strings.Cut(head, "\t")
	waitRefs(t, tm, "github.com/owner/widget", prRef, head)
	head2, err := gh.PushToPR(ctx, "owner/widget", pr, map[string]string{"f.go": "package main\n\nfunc f() {}\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitRefs(t, tm, "github.com/owner/widget", prRef, head2)
	gitT(t, ghDir, "fetch", "-q", "origin", "+refs/pull/*/head:refs/pull/*/head")
	checkTarball(t, tm, "github.com/owner/widget", ghDir, head2)
}

// TestGerritSimAuthenticatedFetch mirrors through Gerrit's authenticated
// /a/ git path with an account's HTTP password, as tryd gitmirror does
// when a Gerrit server has a user and password configured.
func TestGerritSimAuthenticatedFetch(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	ctx := ctxT(t)
	n, sha, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Private work", map[string]string{"p.go": "package p\n"})
	if err != nil {
		t.Fatal(err)
	}
	tm := startMirror(t, Options{Repos: []Repo{{
		Name: "proj", URL: w.Sim.URL() + "a/" + w.Project,
		FetchAuth: func() (string, string, error) { return "bot", gerritsimtest.BotPassword, nil },
	}}})
	waitRefs(t, tm, "proj", fmt.Sprintf("refs/changes/%02d/%d/1", n%100, n), sha)

	bad := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: w.Sim.URL() + "a/" + w.Project}}, Clock: realClock{}})
	if err := bad.Sync(ctx, "proj"); err == nil {
		t.Errorf("fetch from /a/ without credentials succeeded")
	}
}

// BenchmarkGerritUploadToServable measures the whole event path: a patch
// set uploaded in the Gerrit simulator, its webhook to a real
// pubsubhelper, the /waitevent long-poll nudging gitmirror, the fetch,
// until the patch set's ref is served. It reports the median and 90th
// percentile in milliseconds (bench/gitmirror-tarball.sh prints them).
func BenchmarkGerritUploadToServable(b *testing.B) {
	const secret = "gerrit-hook-secret"
	psURL := startPubsubhelper(b, secret, "unused-github-secret")
	w := gerritsimtest.NewWorld(b, gerritsim.Options{})
	hook, err := url.Parse(psURL + "/gerrit-webhook")
	if err != nil {
		b.Fatal(err)
	}
	hook.User = url.UserPassword("gerrit", secret)
	w.Sim.AddWebhook(hook.String(), "patchset-created")
	tm := startMirror(b, Options{
		Pubsubhelper: psURL,
		Repos:        []Repo{{Name: "proj", URL: w.Sim.GitURL(w.Project), GerritProject: w.Project}},
	})
	ctx := context.Background()
	n, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "Bench", map[string]string{"b.go": "package b\n"})
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, sha, err := w.Sim.UploadPatchSet(ctx, n, w.Owner, map[string]string{"b.go": fmt.Sprintf("package b // %d\n", i)}, "Bench")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			refs, err := tm.Refs(ctx, "proj", "refs/changes/")
			if err != nil {
				b.Fatal(err)
			}
			if slices.Contains(slices.Collect(maps.Values(refs)), sha) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("patch set %s not served after 30s", sha)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*9/10]), "p90-ms")
}
