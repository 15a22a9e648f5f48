package gerritsim_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/notedb"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// git runs git in dir and returns trimmed stdout.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.NeedTool(t, "git"), args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitErr(t *testing.T, dir string, args ...string) error {
	t.Helper()
	cmd := exec.Command(testenv.NeedTool(t, "git"), args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "HOME="+dir)
	_, err := cmd.CombinedOutput()
	return err
}

var changeRefRE = regexp.MustCompile(`^refs/changes/[0-9]{2}/([0-9]+)/(meta|[0-9]+)$`)

func TestGitSmartHTTP(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	ctx := context.Background()
	n, sha, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "net/http: fix header parsing", map[string]string{"http/header.go": "package http\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Sim.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Run-TryBot": 1}, "Please run the trybots.", ""); err != nil {
		t.Fatal(err)
	}
	ps2, sha2, err := w.Sim.UploadPatchSet(ctx, n, w.Owner, map[string]string{"http/header.go": "package http // v2\n"}, "")
	if err != nil || ps2 != 2 {
		t.Fatalf("upload: %d %v", ps2, err)
	}
	dir := t.TempDir()
	authURL := strings.Replace(w.Sim.URL(), "http://", "http://reviewer:"+gerritsimtest.ReviewerPassword+"@", 1) + "a/" + w.Project

	tests := []struct {
		name string
		url  string
	}{
		{"anonymous", w.Sim.GitURL(w.Project)},
		{"authenticated", authURL},
		{"protocol v2", w.Sim.GitURL(w.Project)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"ls-remote", tc.url}
			if tc.name == "protocol v2" {
				args = []string{"-c", "protocol.version=2", "ls-remote", tc.url, "refs/changes/*"}
			}
			refs := map[string]string{}
			for _, line := range strings.Split(git(t, dir, args...), "\n") {
				f := strings.Fields(line)
				if len(f) == 2 {
					refs[f[1]] = f[0]
				}
			}
			shard := strconv.Itoa(n % 100)
			if len(shard) == 1 {
				shard = "0" + shard
			}
			prefix := "refs/changes/" + shard + "/" + strconv.Itoa(n) + "/"
			if refs[prefix+"1"] != sha || refs[prefix+"2"] != sha2 || refs[prefix+"meta"] == "" {
				t.Fatalf("refs = %v", refs)
			}
			for r := range refs {
				if strings.HasPrefix(r, "refs/changes/") && !changeRefRE.MatchString(r) {
					t.Errorf("ref %s does not match the change ref pattern", r)
				}
			}
		})
	}

	t.Run("mirror clone and fetch", func(t *testing.T) {
		mirror := filepath.Join(dir, "mirror.git")
		git(t, dir, "clone", "--quiet", "--mirror", w.Sim.GitURL(w.Project), mirror)
		if got := git(t, mirror, "rev-parse", "refs/changes/"+shard(n)+"/2"); got != sha2 {
			t.Fatalf("mirrored PS2 = %s, want %s", got, sha2)
		}
		if err := w.Sim.Submit(ctx, n, w.Reviewer); err != nil {
			t.Fatal(err)
		}
		git(t, mirror, "fetch", "--quiet", "--force", w.Sim.GitURL(w.Project), "+refs/heads/*:refs/heads/*", "+refs/changes/*:refs/changes/*")
		if got := git(t, mirror, "rev-parse", "refs/heads/main"); got != sha2 {
			t.Fatalf("main after submit = %s, want fast-forward to %s", got, sha2)
		}
		// The meta root commit is written like Gerrit's: empty tree, the
		// account ident as author, the server as committer, and the
		// "Topic: " footer with its trailing space.
		root := git(t, mirror, "rev-list", "--max-parents=0", "refs/changes/"+shard(n)+"/meta")
		raw := git(t, mirror, "cat-file", "-p", root)
		for _, want := range []string{
			"tree " + notedb.EmptyTree + "\n",
			"author Gerrit User " + strconv.Itoa(w.Owner) + " <" + strconv.Itoa(w.Owner) + "@" + w.Sim.ServerID() + "> ",
			"committer Gerrit Code Review <gerrit@localhost> ",
			"\n\nCreate change\n\nUploaded patch set 1.\n\nPatch-set: 1\nChange-id: I",
			"\nTopic: \nCommit: " + sha + "\n",
		} {
			if !strings.Contains(raw+"\n", want) {
				t.Errorf("root meta commit lacks %q:\n%s", want, raw)
			}
		}
	})

	t.Run("one change", func(t *testing.T) {
		repo := filepath.Join(dir, "one")
		git(t, dir, "init", "--quiet", repo)
		git(t, repo, "fetch", "--quiet", w.Sim.GitURL(w.Project), "refs/changes/"+shard(n)+"/meta")
		log := git(t, repo, "log", "--format=%s", "FETCH_HEAD")
		want := "Update patch set 2\nCreate patch set 2\nUpdate patch set 1\nCreate change"
		if log != want {
			t.Fatalf("meta log = %q, want %q", log, want)
		}
	})

	t.Run("bad credentials", func(t *testing.T) {
		bad := strings.Replace(w.Sim.URL(), "http://", "http://reviewer:wrong@", 1) + "a/" + w.Project
		if err := gitErr(t, dir, "ls-remote", bad); err == nil {
			t.Fatal("ls-remote with a wrong password succeeded")
		}
	})
	t.Run("push refused", func(t *testing.T) {
		if err := gitErr(t, dir, "push", w.Sim.GitURL(w.Project), "HEAD:refs/for/main"); err == nil {
			t.Fatal("push succeeded")
		}
	})
}

func shard(n int) string {
	s := strconv.Itoa(n % 100)
	if len(s) == 1 {
		s = "0" + s
	}
	return s + "/" + strconv.Itoa(n)
}

// TestChangeRefSharding checks refs/changes/<SS>/<N>: SS is N mod 100 in
// two digits.
func TestChangeRefSharding(t *testing.T) {
	tests := []struct {
		first int
		ref   string
	}{
		{7, "refs/changes/07/7/"},
		{100, "refs/changes/00/100/"},
		{12345, "refs/changes/45/12345/"},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.first), func(t *testing.T) {
			w := gerritsimtest.NewWorld(t, gerritsim.Options{FirstChange: tc.first})
			n, sha, err := w.Sim.CreateChange(context.Background(), w.Project, "main", w.Owner, "s", map[string]string{"f": "x"})
			if err != nil || n != tc.first {
				t.Fatalf("change %d: %v", n, err)
			}
			out := git(t, t.TempDir(), "ls-remote", w.Sim.GitURL(w.Project), tc.ref+"*")
			if !strings.Contains(out, sha+"\t"+tc.ref+"1") || !strings.Contains(out, "\t"+tc.ref+"meta") {
				t.Fatalf("ls-remote = %q", out)
			}
		})
	}
}
