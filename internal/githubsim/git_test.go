package githubsim

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// gitCmd runs the real git client with no user configuration.
func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.NeedTool(t, "git"), args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// lsRemote maps ref names to SHAs as `git ls-remote` reports them.
func lsRemote(t *testing.T, url string) map[string]string {
	t.Helper()
	refs := map[string]string{}
	for _, line := range strings.Split(gitCmd(t, t.TempDir(), "ls-remote", url), "\n") {
		sha, ref, ok := strings.Cut(line, "\t")
		if ok {
			refs[ref] = sha
		}
	}
	return refs
}

func TestGitSmartHTTP(t *testing.T) {
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	n, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "feature", Title: "T", Files: map[string]string{"dir/a.txt": "A\n"}})
	if err != nil {
		t.Fatal(err)
	}
	head2, err := s.PushToPR(ctx, w.repo, n, map[string]string{"dir/a.txt": "A2\n"})
	if err != nil {
		t.Fatal(err)
	}
	url := s.GitURL(w.repo)

	refs := lsRemote(t, url)
	if refs["refs/pull/1/head"] != head2 || refs["refs/heads/feature"] != head2 || refs["refs/heads/main"] == "" || refs["HEAD"] != refs["refs/heads/main"] {
		t.Fatalf("ls-remote = %v, want refs/pull/1/head = %s", refs, head2)
	}

	dir := filepath.Join(t.TempDir(), "clone")
	gitCmd(t, "", "clone", "--quiet", url, dir)
	if b, err := os.ReadFile(filepath.Join(dir, "README.md")); err != nil || string(b) != "hello\n" {
		t.Fatalf("cloned README = %q, %v", b, err)
	}
	gitCmd(t, dir, "fetch", "--quiet", "origin", "refs/pull/1/head:refs/remotes/pr/1")
	if got := gitCmd(t, dir, "rev-parse", "refs/remotes/pr/1"); got != head2 {
		t.Fatalf("fetched pull head %s, want %s", got, head2)
	}
	if got := gitCmd(t, dir, "show", head2+":dir/a.txt"); got != "A2" {
		t.Fatalf("file at pull head = %q", got)
	}

	merge, err := s.MergePR(ctx, w.repo, n, "octo")
	if err != nil {
		t.Fatal(err)
	}
	gitCmd(t, dir, "fetch", "--quiet", "origin")
	if got := gitCmd(t, dir, "rev-parse", "origin/main"); got != merge {
		t.Fatalf("main after merge = %s, want %s", got, merge)
	}
	if parents := gitCmd(t, dir, "rev-list", "--parents", "-n1", merge); len(strings.Fields(parents)) != 3 {
		t.Errorf("merge commit parents = %q, want two", parents)
	}
	p, _, err := client(t, s, w.rTok).PullRequests.Get(ctx, "octo", "hello", n)
	if err != nil || !p.GetMerged() || p.GetMergeCommitSHA() != merge || p.GetState() != "closed" || p.GetMergedBy().GetLogin() != "octo" {
		t.Fatalf("merged pull = merged %v sha %s state %s, %v; want merge %s", p.GetMerged(), p.GetMergeCommitSHA(), p.GetState(), err, merge)
	}
	if refs := lsRemote(t, url); refs["refs/pull/1/head"] != head2 {
		t.Errorf("refs/pull/1/head after merge = %s, want %s (GitHub keeps it)", refs["refs/pull/1/head"], head2)
	}
}

func TestGitRejectsPushAndBadPaths(t *testing.T) {
	w := newWorld(t, Options{})
	dir := filepath.Join(t.TempDir(), "clone")
	gitCmd(t, "", "clone", "--quiet", w.s.GitURL(w.repo), dir)
	cmd := exec.Command("git", "push", "origin", "HEAD:refs/heads/x")
	cmd.Dir = dir
	cmd.Env = gitEnv()
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("push over HTTP succeeded; want refusal (pushes go through the Go API):\n%s", out)
	}
	for _, p := range []string{"/octo/hello.git/../../etc/passwd", "/octo/hello.git/objects/info/packs", "/octo/hello/info/refs"} {
		resp, err := http.Get(w.s.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestMergeRefAndConflicts checks refs/pull/N/merge and mergeability as
// the base and head move.
func TestMergeRefAndConflicts(t *testing.T) {
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	gh := client(t, s, w.writeTok)
	n, err := s.OpenPR(ctx, w.repo, "wendy", PROptions{Head: "edit", Title: "Edit", Files: map[string]string{"README.md": "from the pull request\n"}})
	if err != nil {
		t.Fatal(err)
	}
	state := func() (mergeable bool, st, baseSHA string, refs map[string]string) {
		p, _, err := gh.PullRequests.Get(ctx, "octo", "hello", n)
		if err != nil {
			t.Fatal(err)
		}
		return p.GetMergeable(), p.GetMergeableState(), p.GetBase().GetSHA(), lsRemote(t, s.GitURL(w.repo))
	}
	m, st, _, refs := state()
	if !m || st != "clean" || refs["refs/pull/1/merge"] == "" {
		t.Fatalf("fresh PR: mergeable %v %s, merge ref %q", m, st, refs["refs/pull/1/merge"])
	}
	dir := t.TempDir()
	gitCmd(t, dir, "init", "--quiet")
	gitCmd(t, dir, "fetch", "--quiet", s.GitURL(w.repo), "refs/pull/1/merge")
	parents := strings.Fields(gitCmd(t, dir, "rev-list", "--parents", "-n1", "FETCH_HEAD"))
	if len(parents) != 3 || parents[1] != refs["refs/heads/main"] || parents[2] != refs["refs/pull/1/head"] {
		t.Fatalf("merge ref parents %v, want main %s and head %s", parents, refs["refs/heads/main"], refs["refs/pull/1/head"])
	}

	mainTip, err := s.Push(ctx, w.repo, "main", map[string]string{"README.md": "from main\n"})
	if err != nil {
		t.Fatal(err)
	}
	m, st, base, refs := state()
	if m || st != "dirty" || refs["refs/pull/1/merge"] != "" || base != mainTip {
		t.Fatalf("after a conflicting base push: mergeable %v %s, merge ref %q, base %s (main %s)", m, st, refs["refs/pull/1/merge"], base, mainTip)
	}
	if _, err := s.MergePR(ctx, w.repo, n, "octo"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("merging a conflicting PR = %v, want ErrInvalid", err)
	}
	if _, err := s.PushToPR(ctx, w.repo, n, map[string]string{"README.md": "from main\n", "extra.txt": "x\n"}); err != nil {
		t.Fatal(err)
	}
	if m, st, _, refs = state(); !m || st != "clean" || refs["refs/pull/1/merge"] == "" {
		t.Fatalf("after resolving: mergeable %v %s, merge ref %q", m, st, refs["refs/pull/1/merge"])
	}
}
