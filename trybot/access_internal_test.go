package trybot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/githubsim"
)

// TestClassifyNotFound checks, against the GitHub simulator over HTTP,
// that a GitHub 404 stays a refusal while the credentials see the
// repository (a 404 about the post itself) and becomes "no access" once
// the repository is out of their installation, and that other statuses
// are left alone.
func TestClassifyNotFound(t *testing.T) {
	sim := githubsim.StartForTest(t, githubsim.Options{})
	ctx := t.Context()
	if err := sim.CreateRepo(ctx, "o/r"); err != nil {
		t.Fatal(err)
	}
	tok, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		GitHub: []config.GitHubServer{{Name: "gh", APIURL: sim.APIURL(), Token: config.FileSecret(tokFile)}},
		Repos:  []config.Repo{{Name: "r", GitHub: "gh", Slug: "o/r"}},
	}
	cc, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	gm, _ := gmclient.New("http://127.0.0.1:1", nil)
	tb, err := New(context.Background(), Options{Config: cfg, LogsURL: "http://127.0.0.1:1/logs", Coordinator: cc, Gitmirror: gm, Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	ri := tb.repo("r")
	for _, tc := range []struct {
		name     string
		removed  bool
		status   int
		noAccess bool
	}{
		{"404 with access", false, 404, false},
		{"422 with access", false, 422, false},
		{"404 without access", true, 404, true},
		{"422 without access", true, 422, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.removed {
				if err := sim.RemoveFromInstallation(ctx, "tryd", "o/r"); err != nil {
					t.Fatal(err)
				}
			}
			rf := &refusal{status: tc.status, err: errors.New("refused")}
			err := tb.classifyNotFound(ctx, ri, rf)
			var na *noAccessError
			switch {
			case tc.noAccess && !errors.As(err, &na):
				t.Errorf("got %v, want no access", err)
			case tc.noAccess && na.message() != "not reported: the GitHub token has no access to o/r":
				t.Errorf("message %q", na.message())
			case !tc.noAccess && err != error(rf):
				t.Errorf("got %v, want the refusal itself", err)
			}
		})
	}
}
