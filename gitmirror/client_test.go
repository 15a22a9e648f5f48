package gitmirror

import (
	"errors"
	"os"
	"testing"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

// TestClientErrorKinds checks that the server's statuses come back to the
// Go client as the error kinds callers act on.
func TestClientErrorKinds(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}})
	ctx := ctxT(t)
	head := gitT(t, up.bare, "rev-parse", "main")
	for _, tc := range []struct {
		name      string
		repo, rev string
		want      error
	}{
		{"ok", "proj", head, nil},
		{"unknown repository", "nope", head, client.ErrNotFound},
		{"unknown revision", "proj", "refs/heads/nope", client.ErrNotFound},
		{"bad revision", "proj", "HEAD~1", client.ErrBadName},
		{"bad repository", "../x", head, client.ErrBadName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tm.client.Download(ctx, tc.repo, tc.rev, t.TempDir())
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Download: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := tm.client.Refs(ctx, "nope", ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Refs of unknown repo: %v", err)
	}
	if err := tm.client.Nudge(ctx, "proj"); err != nil {
		t.Errorf("Nudge: %v", err)
	}

	// A failing upstream makes Sync report ErrUnavailable.
	if err := os.Rename(up.bare, up.bare+".away"); err != nil {
		t.Fatal(err)
	}
	if err := tm.client.Sync(ctx, "proj"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Sync with upstream gone: %v", err)
	}
	// A server that is not there is ErrUnavailable too.
	dead, err := client.New("http://127.0.0.1:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Refs(ctx, "proj", ""); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Refs from a dead server: %v", err)
	}
	if got, want := tm.client.RepoURL("org/x"), tm.url+"/org/x.git"; got != want {
		t.Errorf("RepoURL = %q, want %q", got, want)
	}
}
