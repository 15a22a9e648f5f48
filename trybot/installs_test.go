package trybot

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/githubsim"
)

// TestGitHubAppInstallationPerAccount checks a GitHub App installed on
// two accounts, a user's and an organization's, each with its own
// installation (GitHub installs an App once per account, and an
// installation's token sees that account's repositories only): the
// trybot, configured with the user's installation ID, reads and writes
// both accounts' repositories with their own installation's tokens, and
// the App's installation webhooks for the organization ("deleted",
// "created" under a new ID) change what the trybot does for the
// organization's repository only, matched by the installation's account;
// the user's installation suspended leaves alone a third account's
// repository whose installation the trybot has not looked up yet (its
// ID is still the configured one, the user's).
func TestGitHubAppInstallationPerAccount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	sim, heads := simWithRepos(t, "alice/one", "gophers/two", "carol/three")
	fatalIf(t, sim.AddOrg("gophers", "wendy"))
	const secret = "app-webhook-secret"
	var tb *Trybot
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tb.Handler().ServeHTTP(w, r) }))
	t.Cleanup(hook.Close)
	_, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd", WebhookURL: hook.URL + "/github-app-webhook", WebhookSecret: secret})
	fatalIf(t, err)
	tb = newGitHubTrybot(t, sim, true, secret, "alice/one", "gophers/two", "carol/three")
	aliceID, err := sim.InstallationID("tryd", "alice")
	fatalIf(t, err)
	gophersID, err := sim.InstallationID("tryd", "gophers")
	fatalIf(t, err)
	if creds, err := sim.AppCredentials("tryd"); err != nil || creds.InstallationID != aliceID {
		t.Fatalf("configured installation %d, %v; want alice's %d", creds.InstallationID, err, aliceID)
	}
	one, two := tb.repo("one"), tb.repo("two")

	// post creates a check run on ri's head, as a try run's report.
	post := func(ri *repoInfo) error {
		_, _, err := ri.github.c.Checks.CreateCheckRun(ctx, ri.owner, ri.name, github.CreateCheckRunOptions{Name: "tryd/linux-amd64", HeadSHA: heads[ri.cfg.Slug]})
		return err
	}
	for _, ri := range []*repoInfo{one, two} {
		if err := post(ri); err != nil {
			t.Errorf("post to %s: %v", ri.cfg.Slug, err)
		}
	}
	checkIDs := func(step string, wantOne, wantTwo int64) {
		t.Helper()
		if got := one.github.insts.Account("alice").ID(); got != wantOne {
			t.Errorf("%s: alice's installation %d, want %d", step, got, wantOne)
		}
		if got := two.github.insts.Account("gophers").ID(); got != wantTwo {
			t.Errorf("%s: gophers' installation %d, want %d", step, got, wantTwo)
		}
	}
	checkIDs("posted", aliceID, gophersID)
	noAccess := func() map[string]string {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		out := map[string]string{}
		for k, v := range tb.noAccess {
			out[k] = v
		}
		return out
	}

	// Uninstalled from the organization: its repository is out of
	// reach, the user's is not.
	fatalIf(t, sim.DeleteInstallation(ctx, "tryd", "gophers"))
	fatalIf(t, sim.Flush(ctx))
	if got := noAccess(); got["two"] != "installation deleted" || got["one"] != "" {
		t.Errorf("after gophers' installation was deleted: no access %v, want two only", got)
	}
	if err := post(one); err != nil {
		t.Errorf("post to alice/one after gophers' installation was deleted: %v", err)
	}
	if err := post(two); err == nil {
		t.Errorf("post to gophers/two succeeded with its installation deleted")
	}

	// Installed again on the organization, under a new ID, which the
	// trybot uses there only.
	newID, err := sim.CreateInstallation(ctx, "tryd", "gophers")
	fatalIf(t, err)
	fatalIf(t, sim.Flush(ctx))
	checkIDs("installed again", aliceID, newID)
	for _, ri := range []*repoInfo{one, two} {
		if err := post(ri); err != nil {
			t.Errorf("post to %s after reinstalling: %v", ri.cfg.Slug, err)
		}
	}

	// Suspended on the user's account: carol's repository, whose
	// installation the trybot has not looked up yet (it still has the
	// configured ID, alice's), stays in reach.
	fatalIf(t, sim.SuspendInstallation(ctx, "tryd", "alice"))
	fatalIf(t, sim.Flush(ctx))
	if got := noAccess(); got["one"] != "installation suspend" || got["three"] != "" {
		t.Errorf("after alice's installation was suspended: no access %v, want one (and two) only", got)
	}
	if err := post(tb.repo("three")); err != nil {
		t.Errorf("post to carol/three with alice's installation suspended: %v", err)
	}

	for _, d := range sim.Deliveries("") {
		if d.Event == "installation" && d.StatusCode != http.StatusNoContent {
			t.Errorf("installation %s delivery answered %d, want 204", d.Action, d.StatusCode)
		}
	}
}
