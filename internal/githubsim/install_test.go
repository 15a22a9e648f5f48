package githubsim

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
)

// TestInstallationAccess checks that a repository taken out of an App's
// installation does not exist for the installation's token (404 "Not
// Found" on the repository and on its commits' check runs, as for a
// missing repository) while users still see it, that its events stop
// reaching the App, that installation_repositories "removed" and "added"
// are delivered (and parse with go-github) and that access comes back.
func TestInstallationAccess(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	app, user := client(t, w.s, w.appTok), client(t, w.s, w.writeTok)
	owner, name := "octo", "hello"
	status := func(c *github.Client) int {
		t.Helper()
		_, resp, err := c.Repositories.Get(ctx, owner, name)
		if resp == nil {
			t.Fatalf("GET repo: %v", err)
		}
		return resp.StatusCode
	}
	if got := status(app); got != http.StatusOK {
		t.Fatalf("installed: GET repo as the app: %d", got)
	}
	if err := w.s.RemoveFromInstallation(ctx, "tryd", w.repo); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() (*github.Response, error)
	}{
		{"get repository", func() (*github.Response, error) { _, r, err := app.Repositories.Get(ctx, owner, name); return r, err }},
		{"create check run", func() (*github.Response, error) {
			_, r, err := app.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{Name: "x", HeadSHA: "main"})
			return r, err
		}},
		{"comment", func() (*github.Response, error) {
			_, r, err := app.Issues.CreateComment(ctx, owner, name, 1, &github.IssueComment{Body: github.String("x")})
			return r, err
		}},
	} {
		t.Run("removed/"+tc.name, func(t *testing.T) {
			resp, err := tc.call()
			var er *github.ErrorResponse
			if resp == nil || resp.StatusCode != http.StatusNotFound || !errors.As(err, &er) || er.Message != "Not Found" {
				t.Errorf("got %v, %v; want 404 Not Found", resp, err)
			}
		})
	}
	if got := status(user); got != http.StatusOK {
		t.Errorf("removed: GET repo as a user: %d, want 200", got)
	}
	if _, err := w.s.Push(ctx, w.repo, "main", map[string]string{"a": "b\n"}); err != nil {
		t.Fatal(err)
	}
	if got := w.appRC.byEvent(t, "push", ""); len(got) != 0 {
		t.Errorf("the app got %d push events of a repository outside its installation", len(got))
	}
	if err := w.s.AddToInstallation(ctx, "tryd", w.repo); err != nil {
		t.Fatal(err)
	}
	if got := status(app); got != http.StatusOK {
		t.Errorf("added again: GET repo as the app: %d", got)
	}
	for _, action := range []string{"removed", "added"} {
		ds := w.appRC.byEvent(t, "installation_repositories", action)
		if len(ds) != 1 {
			t.Fatalf("%d installation_repositories %q deliveries to the app, want 1", len(ds), action)
		}
		ev, err := github.ParseWebHook("installation_repositories", ds[0].body)
		if err != nil {
			t.Fatal(err)
		}
		e := ev.(*github.InstallationRepositoriesEvent)
		list := e.RepositoriesAdded
		if action == "removed" {
			list = e.RepositoriesRemoved
		}
		if len(list) != 1 || list[0].GetFullName() != w.repo || e.GetInstallation().GetID() == 0 {
			t.Errorf("%s: %+v", action, e)
		}
		if ds[0].header.Get("X-Hub-Signature-256") != Sign256([]byte("app-secret"), ds[0].body) {
			t.Errorf("%s: bad signature", action)
		}
	}
	if got := w.hookRC.byEvent(t, "installation_repositories", ""); len(got) != 0 {
		t.Errorf("a repository hook got installation_repositories")
	}
}

// TestPublicRepoOutsideInstallation checks GitHub's answer to an App
// whose installation lost a public repository: the installation's token
// still reads it (public data), writes get 403 "Resource not accessible
// by integration" (not 404), and the App's JWT finds no installation for
// it (404), which is how a client tells lost access from a missing
// permission.
func TestPublicRepoOutsideInstallation(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	if err := w.s.SetPublic(w.repo, true); err != nil {
		t.Fatal(err)
	}
	if err := w.s.RemoveFromInstallation(ctx, "tryd", w.repo); err != nil {
		t.Fatal(err)
	}
	app := client(t, w.s, w.appTok)
	if _, _, err := app.Repositories.Get(ctx, "octo", "hello"); err != nil {
		t.Errorf("GET a public repository outside the installation: %v, want 200", err)
	}
	head := lsRemote(t, w.s.GitURL(w.repo))["refs/heads/main"]
	_, _, err := app.Checks.CreateCheckRun(ctx, "octo", "hello", github.CreateCheckRunOptions{Name: "x", HeadSHA: head})
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != http.StatusForbidden || er.Message != "Resource not accessible by integration" {
		t.Errorf("create check run: %v, want 403 Resource not accessible by integration", err)
	}
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	if errors.As(err, &rl) || errors.As(err, &ab) {
		t.Errorf("go-github takes the 403 for a rate limit: %v", err)
	}
	asApp := jwtClient(t, w)
	if _, _, err := asApp.Apps.FindRepositoryInstallation(ctx, "octo", "hello"); !isStatus(err, 404) {
		t.Errorf("repository installation: %v, want 404", err)
	}
	if err := w.s.AddToInstallation(ctx, "tryd", w.repo); err != nil {
		t.Fatal(err)
	}
	if _, _, err := app.Checks.CreateCheckRun(ctx, "octo", "hello", github.CreateCheckRunOptions{Name: "x", HeadSHA: head}); err != nil {
		t.Errorf("create check run with access back: %v", err)
	}
}

// jwtClient returns a client authenticated as w's App by a JWT.
func jwtClient(t *testing.T, w *world) *github.Client {
	t.Helper()
	creds, err := w.s.AppCredentials("tryd")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(creds.PrivateKeyPEM)
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return client(t, w.s, appJWT(t, key, map[string]any{"iss": strconv.FormatInt(creds.ID, 10), "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}))
}

// TestInstallationLifecycle checks suspend, unsuspend, delete and create
// as GitHub does them: what the App's JWT and tokens get at each step,
// that events stop while suspended or uninstalled, that a reinstalled
// App has a new installation ID (tokens of the old one are revoked), and
// that each step's installation event is delivered and parses with
// go-github.
func TestInstallationLifecycle(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	asApp := jwtClient(t, w)
	creds, err := w.s.AppCredentials("tryd")
	if err != nil {
		t.Fatal(err)
	}
	it, _, err := asApp.Apps.CreateInstallationToken(ctx, creds.InstallationID, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := client(t, w.s, it.GetToken())
	pushes := func() int { return len(w.appRC.byEvent(t, "push", "")) }
	push := func() {
		t.Helper()
		if _, err := w.s.Push(ctx, w.repo, "main", map[string]string{"f": time.Now().String()}); err != nil {
			t.Fatal(err)
		}
	}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.s.SuspendInstallation(ctx, "tryd", "octo"))
	if _, _, err := tok.Repositories.Get(ctx, "octo", "hello"); !isStatus(err, 403) || !strings.Contains(err.Error(), "This installation has been suspended") {
		t.Errorf("suspended: token call = %v, want 403 suspended", err)
	}
	if _, _, err := asApp.Apps.CreateInstallationToken(ctx, creds.InstallationID, nil); !isStatus(err, 403) {
		t.Errorf("suspended: mint token = %v, want 403", err)
	}
	inst, _, err := asApp.Apps.FindRepositoryInstallation(ctx, "octo", "hello")
	if err != nil || inst.GetID() != creds.InstallationID || inst.SuspendedAt == nil {
		t.Errorf("suspended: repository installation = %+v, %v; want it, suspended", inst, err)
	}
	before := pushes()
	push()
	if pushes() != before {
		t.Errorf("a suspended App got a push event")
	}
	must(w.s.UnsuspendInstallation(ctx, "tryd", "octo"))
	if _, _, err := tok.Repositories.Get(ctx, "octo", "hello"); err != nil {
		t.Errorf("unsuspended: token call = %v", err)
	}

	must(w.s.DeleteInstallation(ctx, "tryd", "octo"))
	if _, _, err := tok.Repositories.Get(ctx, "octo", "hello"); !isStatus(err, 401) {
		t.Errorf("deleted: old token = %v, want 401", err)
	}
	if _, _, err := asApp.Apps.FindRepositoryInstallation(ctx, "octo", "hello"); !isStatus(err, 404) {
		t.Errorf("deleted: repository installation = %v, want 404", err)
	}
	if _, _, err := asApp.Apps.CreateInstallationToken(ctx, creds.InstallationID, nil); !isStatus(err, 404) {
		t.Errorf("deleted: mint token = %v, want 404", err)
	}
	if l, _, err := asApp.Apps.ListInstallations(ctx, nil); err != nil || len(l) != 0 {
		t.Errorf("deleted: installations %v, %v; want none", l, err)
	}
	before = pushes()
	push()
	if pushes() != before {
		t.Errorf("an uninstalled App got a push event")
	}

	newID, err := w.s.CreateInstallation(ctx, "tryd", "octo")
	must(err)
	if newID == creds.InstallationID || newID == 0 {
		t.Fatalf("reinstalled under ID %d, the old one was %d", newID, creds.InstallationID)
	}
	if inst, _, err := asApp.Apps.FindRepositoryInstallation(ctx, "octo", "hello"); err != nil || inst.GetID() != newID {
		t.Errorf("created: repository installation = %+v, %v; want ID %d", inst, err, newID)
	}
	if _, _, err := asApp.Apps.CreateInstallationToken(ctx, creds.InstallationID, nil); !isStatus(err, 404) {
		t.Errorf("created: token for the old ID = %v, want 404", err)
	}
	it2, _, err := asApp.Apps.CreateInstallationToken(ctx, newID, nil)
	must(err)
	if _, _, err := client(t, w.s, it2.GetToken()).Repositories.Get(ctx, "octo", "hello"); err != nil {
		t.Errorf("created: new token = %v", err)
	}

	for _, tc := range []struct {
		action string
		id     int64
	}{{"suspend", creds.InstallationID}, {"unsuspend", creds.InstallationID}, {"deleted", creds.InstallationID}, {"created", newID}} {
		ds := w.appRC.byEvent(t, "installation", tc.action)
		if len(ds) != 1 {
			t.Errorf("%d installation %q deliveries, want 1", len(ds), tc.action)
			continue
		}
		ev, err := github.ParseWebHook("installation", ds[0].body)
		if err != nil {
			t.Fatalf("%s: %v", tc.action, err)
		}
		e := ev.(*github.InstallationEvent)
		if e.GetAction() != tc.action || e.GetInstallation().GetID() != tc.id || len(e.Repositories) != 1 || e.Repositories[0].GetFullName() != w.repo {
			t.Errorf("%s: %+v", tc.action, e)
		}
		if (tc.action == "suspend") != (e.GetInstallation().SuspendedAt != nil) {
			t.Errorf("%s: suspended_at %v", tc.action, e.GetInstallation().SuspendedAt)
		}
	}
}
