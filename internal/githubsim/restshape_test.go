package githubsim

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/jsonshape"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// TestRESTShapes compares REST responses with the same objects in the
// recorded webhook payloads (GitHub renders them with the same
// serializers), so the REST API cannot drift from the real field set.
func TestRESTShapes(t *testing.T) {
	w, pr, iss := restWorld(t, Options{})
	ctx := ctxT(t)
	head := ""
	{
		p, _, err := client(t, w.s, w.writeTok).PullRequests.Get(ctx, "octo", "hello", pr)
		if err != nil {
			t.Fatal(err)
		}
		head = p.GetHead().GetSHA()
	}
	runID := createRun(t, client(t, w.s, w.appTok), head)
	cases := []struct {
		name, path, fixture, key string
		first                    bool // the response is a list; compare its first element
		ignore                   []string
	}{
		{name: "pull", path: "pulls/" + strconv.Itoa(pr), fixture: "pull_request/opened.payload.json", key: "pull_request"},
		{name: "pulls list", path: "pulls", fixture: "pull_request/opened.payload.json", key: "pull_request", first: true},
		{name: "issue", path: "issues/" + strconv.Itoa(iss), fixture: "issues/opened.payload.json", key: "issue"},
		{name: "comments", path: "issues/" + strconv.Itoa(pr) + "/comments", fixture: "issue_comment/created.payload.json", key: "comment", first: true},
		{name: "labels", path: "labels", fixture: "issues/labeled.payload.json", key: "label", first: true},
		{name: "repo", path: "", fixture: "pull_request/opened.payload.json", key: "repository", ignore: []string{
			// Only in REST responses to an authenticated user: the
			// caller's own access, which webhooks do not carry.
			"permissions",
		}},
		{name: "check run", path: "check-runs/" + strconv.FormatInt(runID, 10), fixture: "check_run/created.payload.json", key: "check_run", ignore: []string{
			"app.permissions", "check_suite.app.permissions", "app.slug", "check_suite.app.slug", "check_suite.deployment", // see checkRunIgnore
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(testenv.Fixture(t, "github/webhooks/"+tc.fixture))
			if err != nil {
				t.Fatal(err)
			}
			var fx map[string]json.RawMessage
			if err := json.Unmarshal(b, &fx); err != nil {
				t.Fatal(err)
			}
			url := w.s.APIURL() + "repos/octo/hello"
			if tc.path != "" {
				url += "/" + tc.path
			}
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "token "+w.writeTok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", url, resp.StatusCode, got)
			}
			if tc.first {
				var list []json.RawMessage
				if err := json.Unmarshal(got, &list); err != nil || len(list) == 0 {
					t.Fatalf("want a non-empty list: %v", err)
				}
				got = list[0]
			}
			ms, err := jsonshape.Compare(fx[tc.key], got, jsonshape.Options{Ignore: tc.ignore})
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) > 0 {
				var lines []string
				for _, m := range ms {
					lines = append(lines, m.String())
				}
				t.Errorf("%d differences from %s %s:\n%s", len(ms), tc.fixture, tc.key, strings.Join(lines, "\n"))
			}
		})
	}
}
