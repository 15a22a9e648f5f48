package ingest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/ghapp"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/maintner"
)

// appOwnersWorld is a simulator with private repositories under two
// users and an organization, an issue in each, and one App installed on
// the three accounts (one installation each).
type appOwnersWorld struct {
	sim   *githubsim.Sim
	ctx   context.Context
	cred  githubsim.AppCredentials
	repos []string
}

func newAppOwnersWorld(t *testing.T) *appOwnersWorld {
	t.Helper()
	sim := githubsim.StartForTest(t, githubsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	w := &appOwnersWorld{sim: sim, ctx: ctx, repos: []string{"alice/one", "bob/two", "gophers/three"}}
	for _, u := range []string{"alice", "bob", "wendy"} {
		_, err := sim.AddUser(u, githubsim.PermWrite)
		must(t, err)
	}
	must(t, sim.AddOrg("gophers", "wendy"))
	for _, full := range w.repos {
		must(t, sim.CreateRepo(ctx, full))
		_, err := sim.OpenIssue(ctx, full, "wendy", "First in "+full, "")
		must(t, err)
	}
	_, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd"})
	must(t, err)
	w.cred, err = sim.AppCredentials("tryd")
	must(t, err)
	return w
}

func (w *appOwnersWorld) syncer(t *testing.T, c *maintner.Corpus, installation int64, log logrus.FieldLogger, reg *prometheus.Registry) *GitHub {
	t.Helper()
	g, err := NewGitHub(GitHubOptions{Corpus: c, APIURL: w.sim.APIURL(), Repos: w.repos, Logger: log, Registry: reg,
		App: &GitHubApp{AppID: w.cred.ID, InstallationID: installation, KeyPEM: w.cred.PrivateKeyPEM}})
	must(t, err)
	return g
}

// issueTitles returns the titles of the corpus's issues in repository
// full, by number.
func issueTitles(c *maintner.Corpus, full string) map[int32]string {
	owner, name, _ := strings.Cut(full, "/")
	c.RLock()
	defer c.RUnlock()
	out := map[int32]string{}
	if r := c.GitHubRepo(owner, name); r != nil {
		for n := int32(1); n < 100; n++ {
			if is := r.Issue(n); is != nil && !is.NotExist {
				out[n] = is.Title
			}
		}
	}
	return out
}

// TestGitHubAppPerOwner syncs private repositories of two users and an
// organization with one GitHub App, which GitHub installs once per
// account: each repository is read with its owner's installation's
// token, whether no installation ID is configured (each is looked up)
// or the configured one is another account's.
func TestGitHubAppPerOwner(t *testing.T) {
	t.Parallel()
	w := newAppOwnersWorld(t)
	aliceID, err := w.sim.InstallationID("tryd", "alice")
	must(t, err)
	for _, tc := range []struct {
		name         string
		installation int64
	}{
		{"none configured", 0},
		{"alice's configured", aliceID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCorpus(t)
			g := w.syncer(t, c, tc.installation, nil, nil)
			must(t, g.Reconcile(w.ctx))
			for _, full := range w.repos {
				if got := issueTitles(c, full); got[1] != "First in "+full {
					t.Errorf("%s: issues %v", full, got)
				}
			}
		})
	}
}

// TestGitHubAppUninstalledAccount runs one syncer's workers over the
// three accounts' repositories, uninstalls the App from bob's account
// and checks that alice's and the organization's repositories keep
// syncing while bob's fails with a clear error (logged, counted as
// no_access), until the App is installed on bob's account again (a new
// installation ID, found without configuration).
func TestGitHubAppUninstalledAccount(t *testing.T) {
	t.Parallel()
	w := newAppOwnersWorld(t)
	c, _ := newCorpus(t)
	logs := &testenv.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	reg := prometheus.NewRegistry()
	g := w.syncer(t, c, 0, log, reg)
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hasIssue := func(full string, n int, title string) func() bool {
		return func() bool { return issueTitles(c, full)[int32(n)] == title }
	}
	for _, full := range w.repos {
		waitFor(full+" synced", hasIssue(full, 1, "First in "+full))
	}

	must(t, w.sim.DeleteInstallation(w.ctx, "tryd", "bob"))
	second := map[string]int{}
	for _, full := range w.repos {
		n, err := w.sim.OpenIssue(w.ctx, full, "wendy", "Second in "+full, "")
		must(t, err)
		second[full] = n
		must(t, g.Nudge(full, 0))
	}
	for _, full := range []string{"alice/one", "gophers/three"} {
		waitFor(full+" synced after bob's uninstall", hasIssue(full, second[full], "Second in "+full))
	}
	waitFor("bob's sync counted as no_access", func() bool {
		return counter(t, reg, "tryd_ingest_syncs_total", "source", "github", "result", "no_access") > 0
	})
	waitFor("bob's error logged", func() bool {
		return strings.Contains(logs.String(), "the GitHub App is not installed on bob's account")
	})
	if got := issueTitles(c, "bob/two"); got[int32(second["bob/two"])] != "" {
		t.Errorf("bob/two synced without an installation: %v", got)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "not installed") && (strings.Contains(line, "alice") || strings.Contains(line, "gophers")) {
			t.Errorf("another account's repository lost access: %s", line)
		}
	}
	err := g.Sync(w.ctx, "bob/two", 0)
	if !errors.Is(err, ErrNoAccess) || !errors.Is(err, ghapp.ErrNotInstalled) || !strings.Contains(err.Error(), "bob/two") {
		t.Errorf("sync of bob/two: %v, want ErrNoAccess naming it", err)
	}

	newID, err := w.sim.CreateInstallation(w.ctx, "tryd", "bob")
	must(t, err)
	must(t, g.Nudge("bob/two", 0))
	waitFor("bob/two synced once installed again", hasIssue("bob/two", second["bob/two"], "Second in bob/two"))
	if old := w.cred.InstallationID; newID == old {
		t.Errorf("reinstalled under the same ID %d", newID)
	}
}

// TestGitHubRepoOutOfInstallation checks that a repository taken out of
// the App's installation (its issues answer 404 too) is reported as no
// access, not as issues deleted: a nudged issue is not marked gone.
func TestGitHubRepoOutOfInstallation(t *testing.T) {
	t.Parallel()
	w := newAppOwnersWorld(t)
	c, _ := newCorpus(t)
	g := w.syncer(t, c, 0, nil, nil)
	must(t, g.Reconcile(w.ctx))
	must(t, w.sim.RemoveFromInstallation(w.ctx, "tryd", "alice/one"))
	err := g.Sync(w.ctx, "alice/one", 1)
	if !errors.Is(err, ErrNoAccess) || !strings.Contains(err.Error(), "not in the GitHub App's installation on alice's account") {
		t.Errorf("sync of an issue out of the installation: %v, want ErrNoAccess", err)
	}
	if got := issueTitles(c, "alice/one"); got[1] != "First in alice/one" {
		t.Errorf("issue #1 of alice/one after losing access: %v (marked gone?)", got)
	}
	must(t, g.Sync(w.ctx, "bob/two", 1))
}
