package trybot_test

import (
	"net/http/httptest"
	"testing"

	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot"
)

// serveAPI serves tb's HTTP API on 127.0.0.1:0 and returns its URL.
func serveAPI(t *testing.T, tb *trybot.Trybot) string {
	srv := httptest.NewServer(tb.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func testenvInCI() bool { return testenv.InCI() }

func githubsimPR(head, title string, files map[string]string) githubsim.PROptions {
	return githubsim.PROptions{Head: head, Title: title, Files: files}
}
