package githubsim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-github/v60/github"
)

// TestNoCommitFound checks GitHub's answers for a commit it does not
// have, unknown from the start or forgotten (ForgetCommit): 422 with
// "No commit found for SHA: <sha>" from creating a check run or a
// status and from listing a commit's check runs or suites, in GitHub's
// body shape {"message", "documentation_url", "status": "422"}.
func TestNoCommitFound(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	o, r, _ := strings.Cut(w.repo, "/")
	sha, err := w.s.Push(ctx, w.repo, "feature", map[string]string{"f.txt": "x\n"})
	if err != nil {
		t.Fatal(err)
	}
	app := client(t, w.s, w.appTok)
	gh := client(t, w.s, w.writeTok)
	// Known: every call works.
	if _, _, err := app.Checks.CreateCheckRun(ctx, o, r, github.CreateCheckRunOptions{Name: "x", HeadSHA: sha}); err != nil {
		t.Fatalf("check run on a known commit: %v", err)
	}
	unknown := strings.Repeat("1", 40)
	if err := w.s.ForgetCommit(w.repo, sha); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{unknown, sha} {
		calls := []struct {
			name string
			call func() error
		}{
			{"create check run", func() error {
				_, _, err := app.Checks.CreateCheckRun(ctx, o, r, github.CreateCheckRunOptions{Name: "x", HeadSHA: c})
				return err
			}},
			{"list check runs", func() error {
				_, _, err := app.Checks.ListCheckRunsForRef(ctx, o, r, c, nil)
				return err
			}},
			{"list check suites", func() error {
				_, _, err := app.Checks.ListCheckSuitesForRef(ctx, o, r, c, nil)
				return err
			}},
			{"create status", func() error {
				_, _, err := gh.Repositories.CreateStatus(ctx, o, r, c, &github.RepoStatus{State: github.String("pending"), Context: github.String("tryd/x")})
				return err
			}},
		}
		for _, tc := range calls {
			name := tc.name + " (unknown)"
			if c == sha {
				name = tc.name + " (forgotten)"
			}
			t.Run(name, func(t *testing.T) {
				err := tc.call()
				var er *github.ErrorResponse
				if !errors.As(err, &er) || er.Response.StatusCode != http.StatusUnprocessableEntity || er.Message != "No commit found for SHA: "+c {
					t.Errorf("err = %v, want 422 No commit found for SHA: %s", err, c)
				}
			})
		}
	}
	// The raw body, as GitHub sends it.
	req, _ := http.NewRequest(http.MethodGet, w.s.APIURL()+"repos/"+w.repo+"/commits/"+sha+"/check-runs", nil)
	req.Header.Set("Authorization", "token "+w.appTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(data, &body); err != nil || resp.StatusCode != 422 || body["message"] != "No commit found for SHA: "+sha ||
		body["status"] != "422" || !strings.HasPrefix(body["documentation_url"].(string), "https://docs.github.com/") {
		t.Errorf("%d %s", resp.StatusCode, data)
	}
	for _, bad := range []struct{ repo, sha string }{{"octo/none", sha}, {w.repo, "abc"}} {
		if err := w.s.ForgetCommit(bad.repo, bad.sha); err == nil {
			t.Errorf("ForgetCommit(%q, %q) accepted", bad.repo, bad.sha)
		}
	}
}
