package trybot

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/ghapp"
	"github.com/tryd-ci/tryd/internal/githubsim"
)

// newAccessTrybot returns a trybot (not running) whose repository "r" is
// o/r on sim, with the App's JWT credentials when app is set, else with
// the App's installation token as a plain token.
func newAccessTrybot(t *testing.T, sim *githubsim.Sim, app bool) *Trybot {
	t.Helper()
	return newGitHubTrybot(t, sim, app, "", "o/r")
}

// newGitHubTrybot returns a trybot (not running) with a repository for
// each of slugs on sim, named by the slug's repository name. With app
// set it has the App's JWT credentials and installation ID (that of the
// App's first installation), else the App's installation token as a
// plain token; a webhookSecret, if set, verifies the App's webhook.
func newGitHubTrybot(t *testing.T, sim *githubsim.Sim, app bool, webhookSecret string, slugs ...string) *Trybot {
	t.Helper()
	return startGitHubTrybot(t, sim, app, webhookSecret, nil, slugs...)
}

// newAppTrybot is newGitHubTrybot with the App's credentials and
// installation_id set to installationID (0: none, each owner's
// installation is looked up).
func newAppTrybot(t *testing.T, sim *githubsim.Sim, installationID int64, slugs ...string) *Trybot {
	t.Helper()
	return startGitHubTrybot(t, sim, true, "", &installationID, slugs...)
}

// startGitHubTrybot is newGitHubTrybot, with installationID, if not nil,
// configured instead of the App's first installation.
func startGitHubTrybot(t *testing.T, sim *githubsim.Sim, app bool, webhookSecret string, installationID *int64, slugs ...string) *Trybot {
	t.Helper()
	dir := t.TempDir()
	srv := config.GitHubServer{Name: "gh", APIURL: sim.APIURL()}
	if app {
		creds, err := sim.AppCredentials("tryd")
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(dir, "app.pem")
		if err := os.WriteFile(keyFile, creds.PrivateKeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		srv.AppID, srv.InstallationID, srv.AppKey = creds.ID, creds.InstallationID, config.FileSecret(keyFile)
		if installationID != nil {
			srv.InstallationID = *installationID
		}
	} else {
		tok, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd"})
		if err != nil {
			t.Fatal(err)
		}
		tokFile := filepath.Join(dir, "token")
		if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		srv.Token = config.FileSecret(tokFile)
	}
	if webhookSecret != "" {
		secretFile := filepath.Join(dir, "webhook-secret")
		if err := os.WriteFile(secretFile, []byte(webhookSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		srv.WebhookSecret = config.FileSecret(secretFile)
	}
	cfg := &config.Config{GitHub: []config.GitHubServer{srv}}
	for _, slug := range slugs {
		_, name, _ := strings.Cut(slug, "/")
		cfg.Repos = append(cfg.Repos, config.Repo{Name: name, GitHub: "gh", Slug: slug})
	}
	cc, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	gm, _ := gmclient.New("http://127.0.0.1:1", nil)
	tb, err := New(context.Background(), Options{Config: cfg, LogsURL: "http://127.0.0.1:1/logs", Coordinator: cc, Gitmirror: gm, Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	return tb
}

// simWithRepos starts a GitHub simulator with repositories slugs, each
// with a commit on main, and returns it and each one's head.
func simWithRepos(t *testing.T, slugs ...string) (*githubsim.Sim, map[string]string) {
	t.Helper()
	sim := githubsim.StartForTest(t, githubsim.Options{})
	heads := map[string]string{}
	for _, slug := range slugs {
		fatalIf(t, sim.CreateRepo(t.Context(), slug))
		head, err := sim.Push(t.Context(), slug, "main", map[string]string{"go.mod": "module example.com/x\n"})
		fatalIf(t, err)
		heads[slug] = head
	}
	return sim, heads
}

// fatalIf stops the test when err is not nil.
func fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// githubErr is GitHub's answer code with header h, as go-github reports
// it.
func githubErr(code int, h http.Header, msg string) error {
	if h == nil {
		h = http.Header{}
	}
	return &github.ErrorResponse{Response: &http.Response{StatusCode: code, Header: h}, Message: msg}
}

// TestClassifyPostError checks, against the GitHub simulator over HTTP,
// how a failed post is classified once the trybot asked GitHub what its
// credentials may do: a 404 stays a refusal while the credentials see
// the repository and becomes "no access" once it is out of their
// installation; with an App, a 403 on a public repository outside the
// installation is lost access too, while a rate limit's 403 stays a
// retry whatever the access, and so does a 403 with access (a missing
// permission); other statuses are left alone.
func TestClassifyPostError(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	primary := http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1"}}
	secondary := http.Header{"Retry-After": {"30"}}
	const retry, refused, noAccess = "retry", "refused", "no access"
	for _, tc := range []struct {
		name    string
		app     bool
		public  bool
		removed bool
		err     error
		// throttle: err is the answer of the simulator's secondary
		// rate limit to a post.
		throttle bool
		want     string
		msg      string
	}{
		{name: "token/404 with access", err: githubErr(404, nil, "Not Found"), want: refused},
		{name: "token/422 with access", err: githubErr(422, nil, "No commit found for SHA"), want: refused},
		{name: "token/403 with access", err: githubErr(403, nil, "Forbidden"), want: retry},
		{name: "token/404 without access", removed: true, err: githubErr(404, nil, "Not Found"), want: noAccess, msg: "not reported: the GitHub token has no access to o/r"},
		{name: "token/422 without access", removed: true, err: githubErr(422, nil, "Validation Failed"), want: refused},
		{name: "app/404 with access", app: true, err: githubErr(404, nil, "Not Found"), want: refused},
		{name: "app/403 with access", app: true, err: githubErr(403, nil, "Resource not accessible by integration"), want: retry},
		{name: "app/404 without access", app: true, removed: true, err: githubErr(404, nil, "Not Found"), want: noAccess, msg: "not reported: the GitHub App has no access to o/r"},
		{name: "app/403 public without access", app: true, public: true, removed: true, err: githubErr(403, nil, "Resource not accessible by integration"), want: noAccess, msg: "not reported: the GitHub App has no access to o/r"},
		{name: "app/403 primary rate limit without access", app: true, public: true, removed: true, err: githubErr(403, primary, "API rate limit exceeded"), want: retry},
		{name: "app/403 secondary rate limit without access", app: true, public: true, removed: true, err: githubErr(403, secondary, "You have exceeded a secondary rate limit"), want: retry},
		{name: "app/429 without access", app: true, public: true, removed: true, err: githubErr(429, secondary, "Too Many Requests"), want: retry},
		// The simulator's own secondary rate limit, through go-github:
		// the first write, minting the installation token, is limited.
		{name: "app/real secondary rate limit without access", app: true, public: true, removed: true, throttle: true, want: retry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := githubsim.StartForTest(t, githubsim.Options{})
			if err := sim.CreateRepo(ctx, "o/r"); err != nil {
				t.Fatal(err)
			}
			if tc.app {
				if _, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd"}); err != nil {
					t.Fatal(err)
				}
			}
			tb := newAccessTrybot(t, sim, tc.app)
			if err := sim.SetPublic("o/r", tc.public); err != nil {
				t.Fatal(err)
			}
			if tc.removed {
				if err := sim.RemoveFromInstallation(ctx, "tryd", "o/r"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.throttle {
				sim.SecondaryRateLimit(1, 30*time.Second)
				st := &github.RepoStatus{State: github.String("success"), Context: github.String("x")}
				_, _, tc.err = tb.repo("r").github.c.Repositories.CreateStatus(ctx, "o", "r", "main", st)
				if w := retryAfter(tc.err, time.Second, time.Now()); w != 30*time.Second {
					t.Errorf("retry after %v, want GitHub's 30s (%v)", w, tc.err)
				}
			}
			err := tb.classifyPostError(ctx, tb.repo("r"), tc.err)
			var na *noAccessError
			var rf *refusal
			got := retry
			switch {
			case errors.As(err, &na):
				got = noAccess
			case errors.As(err, &rf):
				got = refused
			}
			if got != tc.want {
				t.Fatalf("got %v (%s), want %s", err, got, tc.want)
			}
			if got == noAccess && na.message() != tc.msg {
				t.Errorf("message %q, want %q", na.message(), tc.msg)
			}
			if got == retry && err != tc.err {
				t.Errorf("retry with %v, want the error itself", err)
			}
		})
	}
}

// TestRetryAfterRateLimits checks that a rate limit's retry waits as
// long as GitHub said, also when go-github did not recognise it.
func TestRetryAfterRateLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"403 Retry-After", githubErr(403, http.Header{"Retry-After": {"30"}}, "You have exceeded a secondary rate limit"), 30 * time.Second},
		{"429 Retry-After", githubErr(429, http.Header{"Retry-After": {"12"}}, "Too Many Requests"), 12 * time.Second},
		{"403 remaining 0", githubErr(403, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1100"}}, "API rate limit exceeded"), 101 * time.Second},
		{"403 permission", githubErr(403, http.Header{"Retry-After": {"bogus"}}, "Resource not accessible by integration"), time.Second},
		{"plain 403", githubErr(403, nil, "Resource not accessible by integration"), time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.err, time.Second, now); got != tc.want {
				t.Errorf("retryAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestClassifyInstallationLifecycle checks the classification through an
// installation's life on the simulator: suspended and uninstalled are
// lost access with their own messages, and once the App is installed
// again (a new installation ID) a refused token or a failed mint is
// retried with the new installation, which the trybot uses from then on.
func TestClassifyInstallationLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	sim := githubsim.StartForTest(t, githubsim.Options{})
	if err := sim.CreateRepo(ctx, "o/r"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd"}); err != nil {
		t.Fatal(err)
	}
	tb := newAccessTrybot(t, sim, true)
	ri := tb.repo("r")
	oldID := ri.github.insts.Account("o").ID()
	classify := func(err error) (string, error) {
		err = tb.classifyPostError(ctx, ri, err)
		var na *noAccessError
		if errors.As(err, &na) {
			return na.message(), err
		}
		return "", err
	}
	if err := sim.SuspendInstallation(ctx, "tryd", "o"); err != nil {
		t.Fatal(err)
	}
	if msg, err := classify(githubErr(403, nil, "This installation has been suspended")); msg != "not reported: the GitHub App's installation for o/r is suspended" {
		t.Errorf("suspended: %q (%v)", msg, err)
	}
	if err := sim.UnsuspendInstallation(ctx, "tryd", "o"); err != nil {
		t.Fatal(err)
	}
	if msg, err := classify(githubErr(403, nil, "Resource not accessible by integration")); msg != "" {
		t.Errorf("unsuspended: %q (%v), want a retry", msg, err)
	}
	if err := sim.DeleteInstallation(ctx, "tryd", "o"); err != nil {
		t.Fatal(err)
	}
	if msg, err := classify(githubErr(401, nil, "Bad credentials")); msg != "not reported: the GitHub App was uninstalled from o's account (its installation there is gone)" {
		t.Errorf("deleted: %q (%v)", msg, err)
	}
	newID, err := sim.CreateInstallation(ctx, "tryd", "o")
	if err != nil {
		t.Fatal(err)
	}
	mint := &ghapp.TokenError{Owner: "o", ID: oldID, Err: githubErr(404, nil, "Not Found")}
	if msg, err := classify(mint); msg != "" || err != error(mint) {
		t.Errorf("installed again: %q (%v), want the mint error retried", msg, err)
	}
	if got := ri.github.insts.Account("o").ID(); got != newID {
		t.Fatalf("installation ID %d after reinstalling, want the new %d", got, newID)
	}
	// The retried post works with the new installation's token.
	if _, _, err := ri.github.c.Repositories.Get(ctx, "o", "r"); err != nil {
		t.Errorf("with the new installation: %v", err)
	}
}

// TestNotInstalledOrUninstalled checks that lost access with an App says
// what is true of the owner's account, also when no installation_id is
// configured (each owner's installation is looked up) or the configured
// one is another account's: "not installed on" an account where the
// trybot never found an installation of the App (never installed, or
// removed before the trybot saw it: GitHub's API cannot tell them
// apart), "uninstalled from" one where the installation it found and
// used is gone, and "no access to" the repository when the App is
// installed on the account without it. Posts are made over HTTP to the
// simulator through internal/ghapp, and their real errors classified.
func TestNotInstalledOrUninstalled(t *testing.T) {
	t.Parallel()
	type sim = githubsim.Sim
	uninstall := func(account string) func(context.Context, *sim) error {
		return func(ctx context.Context, s *sim) error { return s.DeleteInstallation(ctx, "tryd", account) }
	}
	for _, tc := range []struct {
		name string
		// repos are created in order (the App's first installation is
		// the first one's owner's); the trybot serves the last one.
		repos []string
		orgs  []string
		// configured is the account whose installation ID is
		// installation_id ("": none).
		configured string
		// before runs before the trybot's first post, which succeeds
		// when used is set; after runs after it.
		before func(context.Context, *sim) error
		used   bool
		after  func(context.Context, *sim) error
		want   string
	}{
		{name: "user never installed, no installation_id", repos: []string{"o/r"}, before: uninstall("o"),
			want: "not reported: the GitHub App is not installed on o's account"},
		{name: "organization never installed, another account's installation_id", repos: []string{"alice/one", "gophers/two"}, orgs: []string{"gophers"},
			configured: "alice", before: uninstall("gophers"),
			want: "not reported: the GitHub App is not installed on gophers's account"},
		{name: "uninstalled after use, no installation_id", repos: []string{"o/r"}, used: true, after: uninstall("o"),
			want: "not reported: the GitHub App was uninstalled from o's account (its installation there is gone)"},
		{name: "organization uninstalled after use, another account's installation_id", repos: []string{"alice/one", "gophers/two"}, orgs: []string{"gophers"},
			configured: "alice", used: true, after: uninstall("gophers"),
			want: "not reported: the GitHub App was uninstalled from gophers's account (its installation there is gone)"},
		{name: "installed on the account without the repository, no installation_id", repos: []string{"o/r"},
			before: func(ctx context.Context, s *sim) error { return s.RemoveFromInstallation(ctx, "tryd", "o/r") },
			want:   "not reported: the GitHub App has no access to o/r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, heads := simWithRepos(t, tc.repos...)
			for _, org := range tc.orgs {
				fatalIf(t, s.AddOrg(org))
			}
			_, err := s.AddApp(githubsim.AppOptions{Slug: "tryd"})
			fatalIf(t, err)
			var configured int64
			if tc.configured != "" {
				configured, err = s.InstallationID("tryd", tc.configured)
				fatalIf(t, err)
			}
			slug := tc.repos[len(tc.repos)-1]
			tb := newAppTrybot(t, s, configured, slug)
			_, name, _ := strings.Cut(slug, "/")
			ri := tb.repo(name)
			post := func() error {
				_, _, err := ri.github.c.Checks.CreateCheckRun(ctx, ri.owner, ri.name, github.CreateCheckRunOptions{Name: "tryd/linux-amd64", HeadSHA: heads[slug]})
				return err
			}
			if tc.before != nil {
				fatalIf(t, tc.before(ctx, s))
			}
			if tc.used {
				fatalIf(t, post())
			}
			if tc.after != nil {
				fatalIf(t, tc.after(ctx, s))
			}
			perr := post()
			if perr == nil {
				t.Fatal("the post succeeded, want it refused for want of access")
			}
			err = tb.classifyPostError(ctx, ri, perr)
			var na *noAccessError
			if !errors.As(err, &na) {
				t.Fatalf("post error %v classified as %v, want no access", perr, err)
			}
			if got := na.message(); got != tc.want {
				t.Errorf("message %q, want %q (post error: %v)", got, tc.want, perr)
			}
		})
	}
}
