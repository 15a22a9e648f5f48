package githubsim

import (
	"testing"

	"github.com/google/go-github/v60/github"
)

func createRun(t *testing.T, c *github.Client, sha string) int64 {
	t.Helper()
	cr, _, err := c.Checks.CreateCheckRun(ctxT(t), "octo", "hello", github.CreateCheckRunOptions{
		Name: "tryd/linux-amd64", HeadSHA: sha, Status: github.String("in_progress"),
		DetailsURL: github.String("http://tryd.example/run/1"), ExternalID: github.String("run-1"),
	})
	if err != nil {
		t.Fatalf("create check run: %v", err)
	}
	return cr.GetID()
}

func completeRun(t *testing.T, c *github.Client, id int64) *github.CheckRun {
	t.Helper()
	cr, _, err := c.Checks.UpdateCheckRun(ctxT(t), "octo", "hello", id, github.UpdateCheckRunOptions{
		Name: "tryd/linux-amd64", Conclusion: github.String("success"),
		Output: &github.CheckRunOutput{Title: github.String("ok"), Summary: github.String("all tests passed"), Text: github.String("details")},
	})
	if err != nil {
		t.Fatalf("update check run: %v", err)
	}
	return cr
}
