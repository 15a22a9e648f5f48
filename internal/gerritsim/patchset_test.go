package gerritsim_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
)

func TestPatchSetKinds(t *testing.T) {
	tests := []struct {
		name     string
		moveMain bool // a commit lands on main first
		in       gerritsim.PatchSetInput
		kind     string
		copied   bool // Code-Review+1 carried to the new patch set
		body     string
		err      error
	}{
		{"same content", false, gerritsim.PatchSetInput{Files: map[string]string{"a.txt": "A\n"}}, "NO_CHANGE", true, "Uploaded patch set 2.", nil},
		{"message only", false, gerritsim.PatchSetInput{Files: map[string]string{"a.txt": "A\n"}, Message: "a: better words"}, "NO_CODE_CHANGE", true, "Uploaded patch set 2.", nil},
		{"rework", false, gerritsim.PatchSetInput{Files: map[string]string{"a.txt": "B\n"}}, "REWORK", false, "Uploaded patch set 2.", nil},
		{"delete a file", false, gerritsim.PatchSetInput{Delete: []string{"base.txt"}}, "REWORK", false, "Uploaded patch set 2.", nil},
		{"trivial rebase", true, gerritsim.PatchSetInput{Rebase: true}, "TRIVIAL_REBASE", true, "Uploaded patch set 2: Patch Set 1 was rebased.", nil},
		{"rebase with new message", true, gerritsim.PatchSetInput{Rebase: true, Message: "a: reworded"}, "TRIVIAL_REBASE_WITH_MESSAGE_UPDATE", false, "Uploaded patch set 2: Patch Set 1 was rebased.", nil},
		{"rebase and edit", true, gerritsim.PatchSetInput{Rebase: true, Files: map[string]string{"c.txt": "C\n"}}, "REWORK", false, "Uploaded patch set 2.", nil},
		{"rebase without a new base", false, gerritsim.PatchSetInput{Rebase: true}, "", false, "", gerritsim.ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := gerritsimtest.NewWorld(t, gerritsim.Options{})
			s := w.Sim
			ctx := context.Background()
			_, err := s.CommitToBranch(ctx, w.Project, "main", w.Owner, "base", map[string]string{"base.txt": "base\n"})
			must(t, err)
			n, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "a: add a", map[string]string{"a.txt": "A\n"})
			must(t, err)
			must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Code-Review": 1, "Run-TryBot": 1}, "", ""))
			if tc.moveMain {
				_, err := s.CommitToBranch(ctx, w.Project, "main", w.Owner, "b: add b", map[string]string{"b.txt": "B\n"})
				must(t, err)
			}
			tc.in.Uploader = w.Owner
			ps, sha, err := s.UploadPatchSetWith(ctx, n, tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			must(t, err)
			code, _, body := rawDo(t, "GET", s.URL()+"changes/"+strconv.Itoa(n)+"?o=CURRENT_REVISION&o=LABELS&o=MESSAGES", "", "", "")
			if code != 200 || !strings.Contains(body, `"kind":"`+tc.kind+`"`) || !strings.Contains(body, `"current_revision":"`+sha+`"`) {
				t.Fatalf("ps %d: %s", ps, body)
			}
			if got := strings.Contains(body, `"recommended":{"_account_id":`+strconv.Itoa(w.Reviewer)); got != tc.copied {
				t.Fatalf("Code-Review copied = %v, want %v: %s", got, tc.copied, body)
			}
			if strings.Contains(body, `"Run-TryBot":{"approved"`) {
				t.Fatalf("Run-TryBot was copied: %s", body)
			}
			if !strings.Contains(body, `"message":"`+tc.body) {
				t.Fatalf("upload message is not %q: %s", tc.body, body)
			}
			dir, err := s.RepoDir(w.Project)
			must(t, err)
			files := git(t, dir, "ls-tree", "--name-only", sha)
			if tc.name == "delete a file" && strings.Contains(files, "base.txt") {
				t.Fatalf("base.txt not deleted: %s", files)
			}
			if tc.moveMain && !strings.Contains(files, "b.txt") {
				t.Fatalf("rebased tree lacks the new base's b.txt: %s", files)
			}
		})
	}
}
