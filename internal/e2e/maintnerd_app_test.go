package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/maintner/query"
)

// TestMaintnerdGitHubAppWithoutInstallationID runs "tryd maintnerd" as
// its own process with a GitHub App configured without installation_id
// against the GitHub simulator, where private repositories belong to a
// user (alice) and an organization (gophers): GitHub installs an App once
// per account, so maintnerd must find each owner's installation itself
// and read each repository with that installation's token (a token of
// the other one gets 404 for a private repository). Both owners' issues
// must reach the corpus, the ones opened before maintnerd started and
// the ones after (a later reconciliation pass, with the tokens minted
// before): as the query API answers "tryd corpus ls --server", and, once
// maintnerd stopped, as "tryd corpus ls" reads the mutation log on disk.
// Neither the App's key nor a token appears in maintnerd's output.
func TestMaintnerdGitHubAppWithoutInstallationID(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTool(t, "git")
	bin := trydBinary(t)
	ctx := t.Context()
	logs := &testenv.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("processes' output:\n%s", logs.String())
		}
	})

	gh := githubsim.StartForTest(t, githubsim.Options{})
	_, err := gh.AddUser("alice", githubsim.PermWrite)
	must(t, err)
	_, err = gh.AddUser("wendy", githubsim.PermWrite)
	must(t, err)
	must(t, gh.AddOrg("gophers", "wendy"))
	// The repositories, and who opens their issues.
	repos := []string{"alice/one", "gophers/two"}
	author := map[string]string{"alice/one": "alice", "gophers/two": "wendy"}
	want := map[string][]string{}
	openIssue := func(repo, title string) {
		t.Helper()
		_, err := gh.OpenIssue(ctx, repo, author[repo], title, "")
		must(t, err)
		want[repo] = append(want[repo], title)
	}
	for _, repo := range repos {
		must(t, gh.CreateRepo(ctx, repo)) // private, as the simulator's repositories are
		openIssue(repo, "Before maintnerd in "+repo)
	}
	_, err = gh.AddApp(githubsim.AppOptions{Slug: "tryd"})
	must(t, err)
	creds, err := gh.AppCredentials("tryd")
	must(t, err)
	for _, account := range []string{"alice", "gophers"} {
		if _, err := gh.InstallationID("tryd", account); err != nil {
			t.Fatalf("the App's installation on %s: %v", account, err)
		}
	}

	dir := t.TempDir()
	appKey := writeFile(t, filepath.Join(dir, "secrets", "app.pem"), string(creds.PrivateKeyPEM), 0o600)
	cfg := writeFile(t, filepath.Join(dir, "tryd.yaml"), fmt.Sprintf(`github:
  - name: github
    api_url: %q
    app_id: %d
    app_key: file:%s
repos:
  - name: one
    github: github
    slug: alice/one
  - name: two
    github: github
    slug: gophers/two
maintnerd:
  github_reconcile: 1s
`, gh.APIURL(), creds.ID, appKey), 0o644)
	dataDir := filepath.Join(dir, "data")
	addr := freeAddr(t)
	url := "http://" + addr
	m := startProc(t, logs, "maintnerd", url, "maintnerd", "--config", cfg, "--data-dir", dataDir,
		"--listen", addr, "--pubsubhelper", "off", "--log-level", "debug")

	// titles lists repo's issue titles with "tryd corpus ls", sorted.
	titles := func(repo string, args ...string) ([]string, error) {
		args = append(append([]string{"corpus", "ls", "--config", cfg, "--data-dir", dataDir}, args...), "--json", "issues", repo)
		cmd := exec.CommandContext(ctx, bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("tryd %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		var page query.Page[query.IssueSummary]
		if err := json.Unmarshal(stdout.Bytes(), &page); err != nil {
			return nil, fmt.Errorf("tryd %s: %v\n%s", strings.Join(args, " "), err, stdout.Bytes())
		}
		var out []string
		for _, is := range page.Items {
			out = append(out, is.Title)
		}
		slices.Sort(out)
		return out, nil
	}
	// synced waits until every repository's issues are want's, through
	// the query API.
	synced := func(what string) {
		t.Helper()
		var last map[string][]string
		var lastErr error
		deadline := time.Now().Add(15 * time.Second)
		for {
			last, lastErr = map[string][]string{}, nil
			for _, repo := range repos {
				if last[repo], lastErr = titles(repo, "--server", url); lastErr != nil {
					break
				}
			}
			if lastErr == nil && sameTitles(last, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the corpus has %v (%v), want %v", what, last, lastErr, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	synced("first pass")
	// After the first pass, with each owner's installation found and
	// its token cached: the next reconciliation brings these in.
	for _, repo := range repos {
		openIssue(repo, "After the first pass in "+repo)
	}
	synced("next pass")

	// The mutation log itself, read from disk once maintnerd stopped.
	m.stop()
	if !m.exited() {
		t.Fatal("maintnerd did not exit")
	}
	got := map[string][]string{}
	for _, repo := range repos {
		if got[repo], err = titles(repo); err != nil {
			t.Fatal(err)
		}
	}
	if !sameTitles(got, want) {
		t.Errorf("the mutation log has %v, want %v", got, want)
	}
	out := logs.String()
	if strings.Contains(out, "ghs_") || strings.Contains(out, "PRIVATE KEY") {
		t.Error("maintnerd's output shows an installation token or the App's key")
	}
}

// sameTitles reports whether got has, for each repository, want's
// titles sorted.
func sameTitles(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for repo, w := range want {
		if !slices.Equal(got[repo], slices.Sorted(slices.Values(w))) {
			return false
		}
	}
	return true
}
