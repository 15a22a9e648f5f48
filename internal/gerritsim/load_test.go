package gerritsim_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
)

// TestReopen checks that a simulator reopened on the same directory
// answers REST exactly as the one that wrote it (state replayed from the
// NoteDb meta refs) and carries on numbering.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	w := gerritsimtest.NewWorld(t, gerritsim.Options{Dir: dir, ServerID: "3a7c1e52-9b0d-4f6e-8c21-5d4b7a9e0f13"})
	s := w.Sim
	ctx := context.Background()
	must(t, s.CreateProject(ctx, gerritsim.ProjectInput{Name: "nested/repo", Labels: []gerritsim.Label{{Name: "Custom", Min: -3, Max: 3, Function: gerritsim.NoBlock, Values: map[int]string{3: "great"}}}}))
	n, _, err := s.CreateChangeWith(ctx, gerritsim.ChangeInput{Project: w.Project, Owner: w.Owner, Subject: "s", Files: map[string]string{"f": "x"}, Topic: "t"})
	must(t, err)
	must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Code-Review": 2, "Run-TryBot": 1}, "hi", "tag"))
	_, _, err = s.UploadPatchSet(ctx, n, w.Owner, map[string]string{"f": "x"}, "s2\n")
	must(t, err)
	m, _, err := s.CreateChange(ctx, "nested/repo", "main", w.Owner, "other", map[string]string{"g": "y"})
	must(t, err)
	must(t, s.Vote(ctx, m, 1, w.Reviewer, map[string]int{"Custom": -3}, "", ""))
	must(t, s.Submit(ctx, m, w.Reviewer))

	paths := []string{
		"changes/" + strconv.Itoa(n) + "/detail?o=ALL_REVISIONS&o=ALL_COMMITS",
		"changes/" + strconv.Itoa(m) + "/detail?o=CURRENT_REVISION",
		"changes/?q=status:open&o=LABELS",
		"projects/",
		"accounts/" + strconv.Itoa(w.Bot),
	}
	before := map[string]string{}
	for _, p := range paths {
		code, _, body := rawDo(t, "GET", s.URL()+p, "", "", "")
		if code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
		before[p] = strings.ReplaceAll(body, s.URL(), "URL/")
	}
	must(t, s.Close())

	s2 := gerritsimtest.StartLoaded(t, gerritsim.Options{Dir: dir, ServerID: "3a7c1e52-9b0d-4f6e-8c21-5d4b7a9e0f13"})
	for _, p := range paths {
		code, _, body := rawDo(t, "GET", s2.URL()+p, "", "", "")
		if got := strings.ReplaceAll(body, s2.URL(), "URL/"); code != 200 || got != before[p] {
			t.Errorf("%s after reopening:\n got %s\nwant %s", p, got, before[p])
		}
	}
	// Credentials survive, and numbering continues.
	code, _, _ := rawDo(t, "GET", s2.URL()+"a/accounts/self", "bot", gerritsimtest.BotPassword, "")
	if code != 200 {
		t.Fatalf("bot login after reopening: %d", code)
	}
	k, _, err := s2.CreateChange(ctx, w.Project, "main", w.Owner, "next", map[string]string{"h": "z"})
	if err != nil || k != m+1 {
		t.Fatalf("next change = %d, %v; want %d", k, err, m+1)
	}
	id, err := s2.CreateAccount(gerritsim.AccountInput{Username: "new"})
	if err != nil || id != w.Bot+1 {
		t.Fatalf("next account = %d, %v", id, err)
	}
}
