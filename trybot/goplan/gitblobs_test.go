package goplan_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot/goplan"
)

// TestRunDigests plans module in a clean worktree checkout (every input
// stated by its blob ID at HEAD, but an untracked file by SHA-256), in
// one with an uncommitted change (everything by SHA-256: the files no
// longer match HEAD), and in a copy outside git (SHA-256).
func TestRunDigests(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "go")
	repo := newRepo(t)
	rev := repo.Commit("first", module)
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	worktree := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "src")
		repo.Git("worktree", "add", "--detach", dir, rev)
		return dir
	}
	write := func(t *testing.T, dir, p, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	blobID := func(p string) string { return strings.TrimSpace(repo.Git("rev-parse", rev+":"+p)) }
	sha := func(dir, p string) string {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		// want is the digest of path in dir.
		want func(dir, path string) string
	}{
		{"clean", worktree, func(dir, p string) string { return blobID(p) }},
		{"untracked file", func(t *testing.T) string {
			dir := worktree(t)
			write(t, dir, "testdata/untracked.txt", "new\n")
			return dir
		}, func(dir, p string) string {
			if p == "testdata/untracked.txt" {
				return sha(dir, p)
			}
			return blobID(p)
		}},
		{"modified", func(t *testing.T) string {
			dir := worktree(t)
			write(t, dir, "README", "changed\n")
			return dir
		}, sha},
		{"staged", func(t *testing.T) string {
			dir := worktree(t)
			write(t, dir, "c/testdata/x", "staged\n")
			repo.Git("-C", dir, "add", "c/testdata/x")
			return dir
		}, sha},
		{"not git", func(t *testing.T) string {
			dir := t.TempDir()
			for p, c := range module {
				write(t, dir, p, c)
			}
			return dir
		}, sha},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t)
			g, err := goplan.Run(context.Background(), dir, "", env, goplan.Options{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, j := range g.Jobs {
				for _, in := range j.Inputs {
					if want := tc.want(dir, in.Path); in.Digest != want {
						t.Errorf("job %q: input %s: digest %s, want %s", j.Name, in.Path, in.Digest, want)
					}
					n++
				}
			}
			if n == 0 {
				t.Fatal("no inputs")
			}
			if tc.name == "untracked file" && !hasInput(g, "test example.com/m/d", "testdata/untracked.txt") {
				t.Error("the untracked file is no input of the test job")
			}
		})
	}
}

func hasInput(g *graph.Graph, job, path string) bool {
	j := g.Job(job)
	if j == nil {
		return false
	}
	for _, in := range j.Inputs {
		if in.Path == path {
			return true
		}
	}
	return false
}
