package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestGitmirrorRepos(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`
gerrit:
  - name: review
    url: https://review.example.com/
  - name: authed
    url: https://authed.example.com
    user: bot
    password: env:TRYD_TEST_GERRIT_PW
github:
  - name: gh
  - name: ghe
    token: env:TRYD_TEST_GHE_TOKEN
    api_url: https://ghe.example.com/api/v3/
repos:
  - name: go
    gerrit: review
    project: go
  - name: github.com/a/b
    github: gh
    slug: a/b
    push_mirror:
      url: https://github.com/a/b-mirror.git
      credentials: env:TRYD_TEST_MIRROR_TOKEN
  - name: c
    github: ghe
    slug: o/c
  - name: plain
    url: /srv/git/plain.git
  - name: private
    gerrit: authed
    project: secret/proj
`))
	if err != nil {
		t.Fatal(err)
	}
	repos, err := gitmirrorRepos(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"go":             "https://review.example.com/go",
		"github.com/a/b": "https://github.com/a/b.git",
		"c":              "https://ghe.example.com/o/c.git",
		"plain":          "/srv/git/plain.git",
		"private":        "https://authed.example.com/a/secret/proj",
	}
	for _, r := range repos {
		if r.URL != want[r.Name] {
			t.Errorf("%s: URL %q, want %q", r.Name, r.URL, want[r.Name])
		}
	}
	if repos[0].GerritProject != "go" || repos[1].GitHubSlug != "a/b" {
		t.Errorf("routing keys: %+v %+v", repos[0], repos[1])
	}
	p := repos[1].Push
	if p == nil || p.Credentials == nil {
		t.Fatalf("push mirror not wired: %+v", p)
	}
	t.Setenv("TRYD_TEST_MIRROR_TOKEN", "tok\n")
	if v, err := p.Credentials(); err != nil || v != "tok" {
		t.Errorf("credentials read %q, %v", v, err)
	}
	t.Setenv("TRYD_TEST_GERRIT_PW", "pw")
	t.Setenv("TRYD_TEST_GHE_TOKEN", "ghe-tok")
	for _, tc := range []struct {
		i          int
		user, pass string
	}{{2, "x-access-token", "ghe-tok"}, {4, "bot", "pw"}} {
		r := repos[tc.i]
		if r.FetchAuth == nil {
			t.Errorf("%s: no fetch credentials", r.Name)
			continue
		}
		if u, p, err := r.FetchAuth(); u != tc.user || p != tc.pass || err != nil {
			t.Errorf("%s: fetch credentials %q %q %v", r.Name, u, p, err)
		}
	}
	for _, i := range []int{0, 1, 3} {
		if repos[i].FetchAuth != nil {
			t.Errorf("%s: unexpected fetch credentials", repos[i].Name)
		}
	}
}

// TestGitmirrorCommand runs "tryd gitmirror" on a local repository and
// fetches a tarball from it.
func TestGitmirrorCommand(t *testing.T) {
	testenv.NeedTool(t, "git")
	dir := t.TempDir()
	up := upstreamRepo(t)
	cfgPath := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(cfgPath, []byte("repos:\n  - name: demo/up\n    url: "+up+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base, stderr := startCommand(t, "gitmirror", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--pubsubhelper", "off")
	resp, err := http.Get(base + "/demo/up.tar.gz?rev=refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) < 20 {
		t.Fatalf("tarball: %s (%d bytes)", resp.Status, len(body))
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "gitmirror", "repos", "demo", "up.git", "HEAD")); err != nil {
		t.Errorf("mirror not under <data-dir>/gitmirror: %v", err)
	}
	if !strings.Contains(stderr.String(), `"component":"gitmirror"`) {
		t.Errorf("logs lack the component field: %s", stderr.String())
	}
}
