package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	tbclient "github.com/tryd-ci/tryd/trybot/client"
)

// TestTryRunReportErrors checks that the try run page tells a refusal
// that is final from a post waiting for GitHub access to come back.
func TestTryRunReportErrors(t *testing.T) {
	cc, _ := api.NewClient("http://127.0.0.1:1", "client-token-0123456789", nil)
	s, err := New(Options{Coordinator: cc})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	run := &tbclient.Run{ID: 1, Review: tbclient.ReviewGitHub, Repo: "gh", State: tbclient.StateSucceeded, ReportErrors: []tbclient.ReportError{
		{What: "done:one", Status: 422, Error: "GitHub answered 422: No commit found for SHA: abc", At: at},
		{What: "done:two", Status: 404, Error: "not reported: the GitHub App has no access to org/repo", At: at, AwaitingAccess: true},
	}}
	rec := httptest.NewRecorder()
	s.render(rec, httptest.NewRequest(http.MethodGet, "/try/1", nil), http.StatusOK, "tryrun", "Try run 1", &tryRunView{Run: run})
	body := rec.Body.String()
	for _, want := range []string{
		"done:one: GitHub answered 422: No commit found for SHA: abc (",
		"; not retried)",
		"done:two: not reported: the GitHub App has no access to org/repo (",
		"; reported once access is back)",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not say %q:\n%s", want, body)
		}
	}
	if strings.Count(body, "not retried") != 1 {
		t.Errorf("\"not retried\" %d times, want once", strings.Count(body, "not retried"))
	}
}
