package githubsim

import (
	"errors"
	"net/http"
	"testing"

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
