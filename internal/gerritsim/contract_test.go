package gerritsim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/jsonshape"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// Fields the real server sends that the simulator deliberately omits, each
// with the reason. Paths follow jsonshape ("a.b", "list[].c").
var (
	// ChangeInfo fields tryd never reads.
	ignoreChangeInfo = []string{
		"attention_set",       // attention set is not simulated; tryd never reads it
		"mergeable",           // mergeability is not computed (Gerrit 3.x omits it by default too)
		"removable_labels",    // UI-only: which votes the caller may delete
		"removable_reviewers", // UI-only
		"labels.Verified",     // docs example labels differ from our project's; labels.Code-Review is compared
		"_more_changes",       // only on the last entry of a truncated page; tested in TestRESTWithGoGerrit
	}
	// Fields the simulator sends that these older doc examples lack; all
	// exist on current Gerrit (3.x) servers.
	simExtras = []string{
		"hashtags", "total_comment_count", "unresolved_comment_count", "has_review_started", "meta_rev_id",
		"owner._account_id", "owner.email", "owner.username", // DETAILED_ACCOUNTS; docs abbreviate owner to a name
		"labels.Run-TryBot", "labels.TryBot-Result", "permitted_labels.Run-TryBot", "permitted_labels.TryBot-Result", // our project's extra labels
		"submitter", "current_revision_number", "reviewers.REVIEWER[]._account_id",
	}
)

type restCase struct {
	name    string
	fixture string
	method  string
	path    string // relative to the sim URL; {n} is the open change, {m} the abandoned one
	user    string
	body    string
	ignore  []string
}

func TestContractREST(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	s := w.Sim
	ctx := context.Background()
	// A file on the branch for the change to modify, so that its diff has
	// insertions and deletions.
	_, err := s.CommitToBranch(ctx, w.Project, "main", w.Owner, "base", map[string]string{"x.go": "package x\n\nvar a = 1\n"})
	must(t, err)
	n, _, err := s.CreateChangeWith(ctx, gerritsim.ChangeInput{Project: w.Project, Owner: w.Owner, Subject: "Implementing Feature X",
		Files: map[string]string{"x.go": "package x\n"}, Topic: "feature-x"})
	must(t, err)
	must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Code-Review": 1, "Run-TryBot": 1}, "This is the first message.", ""))
	must(t, s.Vote(ctx, n, 1, w.Owner, map[string]int{"Code-Review": -1}, "This is the second message.\n\nWith a line break.", ""))
	_, _, err = s.UploadPatchSet(ctx, n, w.Owner, map[string]string{"x.go": "package x // v2\n"}, "")
	must(t, err)
	must(t, s.Vote(ctx, n, 2, w.Reviewer, map[string]int{"Code-Review": 1}, "", ""))
	must(t, s.Vote(ctx, n, 2, w.Owner, map[string]int{"Code-Review": -1}, "", ""))
	m, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "devapp: fix tests", map[string]string{"y.go": "package y\n"})
	must(t, err)
	must(t, s.Comment(ctx, m, 1, w.Reviewer, "Check this out :)", ""))
	must(t, s.Abandon(ctx, m, w.Owner, ""))
	merged, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "to be merged", map[string]string{"z.go": "package z\n"})
	must(t, err)
	_, err = s.SetHashtags(ctx, n, w.Owner, []string{"important"}, nil)
	must(t, err)

	detailed := append(append([]string{}, ignoreChangeInfo...), simExtras...)
	// The action examples in the docs abbreviate the owner to a name and
	// leave out the diffstat; real servers send {"_account_id":…} without
	// DETAILED_ACCOUNTS (see go-review's response below) and always send
	// insertions/deletions.
	action := append(append([]string{}, detailed...), "owner.name", "topic", "insertions", "deletions")
	cases := []restCase{
		{"query changes", "gerrit/rest/query-changes.response.json", "GET", "changes/?q=status:open+project:proj&o=DETAILED_ACCOUNTS", "",
			"", append(prefixAll("[]", detailed), "[].topic")}, // topic is omitted when empty, as Gerrit does
		{"several queries with labels", "gerrit/rest/query-changes-multiple-queries-labels.response.json", "GET",
			"a/changes/?q=status:open+owner:{owner}&q=is:closed+owner:self&q=status:merged+project:nope&o=LABELS&o=DETAILED_ACCOUNTS", "owner", "",
			append(prefixAll("[][]", detailed), "[][].topic", "[][].labels.Code-Review.disliked", "[][].labels.Code-Review.recommended", "[][].labels.Code-Review.value",
				"[][].labels.Verified", "[][].labels.Code-Review.blocking", "[][].labels.Code-Review.rejected")},
		{"current revision, commit", "gerrit/rest/query-changes-current-revision-commit-files.response.json", "GET",
			"changes/?q={n}&o=CURRENT_REVISION&o=CURRENT_COMMIT&o=CURRENT_FILES&o=DETAILED_ACCOUNTS", "", "",
			append(prefixAll("[]", detailed),
				"[].revisions.*.fetch.git",                          // only the http download scheme exists
				"[].revisions.*.fetch.ssh",                          // no SSH daemon
				"[].revisions.*.fetch.http.commands",                // DOWNLOAD_COMMANDS is not simulated
				"[].revisions.*.created", "[].revisions.*.uploader", // sent by current Gerrit, absent from this 2.x-era example
				"[].topic", "[].labels", "[].hashtags")},
		{"change detail", "gerrit/rest/change-info-detailed-labels.response.json", "GET", "a/changes/{n}/detail", "owner", "",
			append(detailed, "messages[].tag", "messages[].real_author", "labels.Code-Review.recommended", "labels.Code-Review.value",
				"labels.Code-Review.all[].date", "labels.Code-Review.all[].tag", "topic", "reviewer_updates[].state")},
		{"get change", "gerrit/rest/get-change.response.json", "GET", "changes/{n}?o=DETAILED_ACCOUNTS", "", "", append(detailed, "topic")},
		{"list messages", "gerrit/rest/list-change-messages.response.json", "GET", "changes/{n}/messages", "", "",
			[]string{"[].real_author", "[].tag"}},
		{"set review", "gerrit/rest/set-review-labels-and-comments.response.json", "POST", "a/changes/{n}/revisions/current/review", "reviewer",
			`{"labels":{"Code-Review":-1},"message":"Some nits need to be fixed.","tag":"jenkins"}`, nil},
		{"get review", "gerrit/rest/get-review-change-info-all-revisions-detailed-labels.response.json", "GET", "a/changes/{n}/revisions/1/review", "owner", "",
			append(detailed, "topic", "labels.Code-Review.all[].date", "labels.Code-Review.recommended", "labels.Code-Review.value",
				"revisions.*.created", "revisions.*.uploader", // sent by current Gerrit, absent from the docs example
				"labels.Code-Review.disliked",                                          // present because the owner voted -1; the example has no such vote
				"labels.Code-Review.all[].username", "reviewers.REVIEWER[].username")}, // the example's accounts have no username
		{"get commit", "gerrit/rest/get-commit.response.json", "GET", "changes/{n}/revisions/current/commit", "", "", nil},
		{"list votes", "gerrit/rest/list-votes.response.json", "GET", "changes/{n}/reviewers/owner/votes/", "", "",
			[]string{"Verified", "Work-In-Progress"}}, // labels the owner did not vote on / the project does not have
		{"list files", "gerrit/rest/list-files.response.json", "GET", "changes/{n}/revisions/current/files", "", "",
			nil},
		{"get hashtags", "gerrit/rest/get-hashtags.response.json", "GET", "changes/{n}/hashtags", "", "", nil},
		{"abandon", "gerrit/rest/abandon-change.response.json", "POST", "a/changes/{n}/abandon", "owner", `{"message":"gone"}`, action},
		{"restore", "gerrit/rest/restore-change.response.json", "POST", "a/changes/{n}/restore", "owner", `{}`, action},
		{"submit", "gerrit/rest/submit-change.response.json", "POST", "a/changes/{merged}/submit", "reviewer", ``, action},
		{"go-review change with messages", "gerrit/rest-real/go-review.get-change-48330-o-MESSAGES.json", "GET", "changes/{m}?o=MESSAGES", "", "",
			[]string{"meta_rev_id", "total_comment_count", "current_revision_number", "topic", "messages[].tag"}},
		{"go-review project", "gerrit/rest-real/go-review.get-project-go.json", "GET", "projects/proj", "", "",
			[]string{"web_links"}}, // no gitiles
		{"list projects", "gerrit/rest-real/go-review.get-project-go.json", "GET", "projects/", "", "", []string{"web_links"}},
	}
	passwords := map[string]string{"owner": gerritsimtest.OwnerPassword, "reviewer": gerritsimtest.ReviewerPassword}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(testenv.Fixture(t, tc.fixture))
			must(t, err)
			if tc.name == "submit" {
				// Make the change submittable first.
				must(t, s.Vote(ctx, merged, 1, w.Reviewer, map[string]int{"Code-Review": 2}, "", ""))
			}
			path := strings.NewReplacer("{n}", strconv.Itoa(n), "{m}", strconv.Itoa(m), "{merged}", strconv.Itoa(merged), "{owner}", "owner").Replace(tc.path)
			code, ctype, body := rawDo(t, tc.method, s.URL()+path, tc.user, passwords[tc.user], tc.body)
			if code != 200 || ctype != "application/json; charset=UTF-8" || !strings.HasPrefix(body, ")]}'\n") {
				t.Fatalf("%s %s: %d %s %q", tc.method, path, code, ctype, body)
			}
			got := []byte(strings.TrimPrefix(body, ")]}'\n"))
			if tc.name == "list projects" {
				// The list maps names to ProjectInfo without "name" and
				// "parent"; compare one entry.
				got = []byte(`{"id":"proj","name":"proj","parent":"All-Projects","description":"x","state":"ACTIVE"}`)
				if !strings.Contains(body, `"proj":{"id":"proj"`) {
					t.Fatalf("project list = %s", body)
				}
			}
			root := tc.name == "list files"
			mm, err := jsonshape.Compare(normalizeKeys(t, want, root), normalizeKeys(t, got, root), jsonshape.Options{Ignore: tc.ignore})
			must(t, err)
			for _, x := range mm {
				t.Errorf("%s", x)
			}
			if t.Failed() {
				t.Logf("simulator body: %s", got)
			}
		})
	}
}

// prefixAll prefixes every path.
func prefixAll(prefix string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = prefix + "." + p
	}
	return out
}

// normalizeKeys renames the keys of every "revisions" object (commit
// SHAs) and "files" object (paths) to "*", merging their values' shapes, so
// that two documents compare by shape; root does the same to the document
// itself (a file map).
func normalizeKeys(t *testing.T, doc []byte, root bool) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(v any) any
	star := func(m map[string]any) map[string]any {
		var acc any
		for _, e := range m {
			acc = unionShape(acc, walk(e))
		}
		return map[string]any{"*": acc}
	}
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if m, ok := e.(map[string]any); ok && (k == "revisions" || k == "files") {
					x[k] = star(m)
					continue
				}
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		}
		return v
	}
	if m, ok := v.(map[string]any); ok && root {
		v = star(m)
	} else {
		v = walk(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unionShape merges two JSON values: objects get every key either has.
func unionShape(a, b any) any {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if a == nil {
			return b
		}
		return a
	}
	out := map[string]any{}
	for k, v := range am {
		out[k] = v
	}
	for k, v := range bm {
		out[k] = unionShape(out[k], v)
	}
	return out
}

// capture is a webhook receiver on 127.0.0.1:0 that records deliveries.
type capture struct {
	mu      sync.Mutex
	bodies  map[string][][]byte
	headers []http.Header
	order   []string
	fail    int // answer 500 to this many requests first
	srv     *httptest.Server
}

func newCapture(t *testing.T) *capture {
	c := &capture{bodies: map[string][][]byte{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.fail > 0 {
			c.fail--
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		typ := jsonType(b)
		c.bodies[typ] = append(c.bodies[typ], b)
		c.headers = append(c.headers, r.Header.Clone())
		c.order = append(c.order, typ)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func jsonType(b []byte) string {
	var ev struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(b, &ev)
	return ev.Type
}

func TestContractWebhooks(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	s := w.Sim
	rcv := newCapture(t)
	s.AddWebhook(rcv.srv.URL)
	ctx := context.Background()
	n, _, err := s.CreateChangeWith(ctx, gerritsim.ChangeInput{Project: w.Project, Owner: w.Owner, Subject: "test.file added", Files: map[string]string{"test.file": "x\n"}})
	must(t, err)
	must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Code-Review": 1}, "", ""))
	must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Code-Review": 2}, "", ""))
	_, err = s.SetHashtags(ctx, n, w.Owner, []string{"works", "yolo"}, nil)
	must(t, err)
	must(t, s.Abandon(ctx, n, w.Owner, "change not needed"))
	must(t, s.Restore(ctx, n, w.Owner, "needed"))
	must(t, s.CreateProject(ctx, gerritsim.ProjectInput{Name: "TestRepo3", Creator: w.Owner}))
	_, err = s.CreateBranch(ctx, "TestRepo3", "test_branch", "refs/heads/main", w.Owner)
	must(t, err)
	_, err = s.CommitToBranch(ctx, "TestRepo3", "test_branch", w.Owner, "direct push", map[string]string{"d": "d\n"})
	must(t, err)
	must(t, s.DeleteVote(ctx, n, w.Owner, w.Reviewer, "Code-Review"))
	must(t, s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Code-Review": 2}, "", ""))
	must(t, s.Submit(ctx, n, w.Reviewer))
	must(t, s.Flush(ctx))

	// The webhooks plugin and SSH stream-events differ in transport shape:
	// project is {"name":…} and changeKey {"key":…} in the plugin's
	// deliveries, strings/{"id":…} in SSH events, and old servers sent
	// numbers as strings. The simulator sends the plugin's form.
	sshShape := []string{"project", "changeKey", "change.number", "patchSet.number",
		"isDraft", "patchSet.isDraft", // removed with drafts in Gerrit 2.15
	}
	cases := []struct {
		fixture, typ string
		ignore       []string
	}{
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/patchset-created.change-2-ps1.json", "patchset-created", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/comment-added.change-1-ps2.json", "comment-added", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/change-merged.change-1-ps2.json", "change-merged", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/change-abandoned.change-21-ps1.json", "change-abandoned", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/ref-updated.patchset-ref.2-1.json", "ref-updated", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/ref-updated.change-meta.1-2ae17bf.json", "ref-updated", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/ref-updated.branch-created.json", "ref-updated", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/ref-updated.refs-meta-config.json", "ref-updated", nil},
		{"gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/project-created.json", "project-created", nil},
		{"gerrit/events/ssh-stream/comment-added.cl.tvl.fyi-2020.json", "comment-added", sshShape},
		{"gerrit/events/ssh-stream/change-restored.json", "change-restored", append(sshShape, "reason",
			"change.createdOn", "patchSet.kind", "refName")}, // added to events after this 2014 capture
		{"gerrit/events/ssh-stream/hashtags-changed.json", "hashtags-changed", append(sshShape, "removed")},
		{"gerrit/events/ssh-stream/vote-deleted.json", "vote-deleted", append(sshShape,
			"approvals[].grantedOn", "approvals[].by", // in this hand-written test input only; Gerrit's ApprovalAttribute for deletions has neither
			"change.createdOn", "patchSet.kind", "refName")}, // newer than the test input
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, tc := range cases {
		t.Run(tc.fixture[strings.LastIndex(tc.fixture, "/")+1:], func(t *testing.T) {
			want, err := os.ReadFile(testenv.Fixture(t, tc.fixture))
			must(t, err)
			got := rcv.bodies[tc.typ]
			if len(got) == 0 {
				t.Fatalf("no %s delivered", tc.typ)
			}
			// The extra "hashtags"/"topic"/"wip" in change are sent only
			// when set, as Gerrit's ChangeAttribute does.
			ignore := append([]string{"change.hashtags", "change.topic", "change.wip"}, tc.ignore...)
			for _, body := range got {
				mm, err := jsonshape.Compare(want, body, jsonshape.Options{Ignore: ignore})
				must(t, err)
				for _, x := range mm {
					t.Errorf("%s (simulator: %s)", x, body)
				}
			}
		})
	}
	for i, h := range rcv.headers {
		if h.Get("Content-Type") != "application/json; charset=UTF-8" || h.Get("X-Origin-Url") != strings.TrimSuffix(s.URL(), "/") {
			t.Errorf("delivery %d headers: %v", i, h)
		}
	}
}

func TestWebhookDelivery(t *testing.T) {
	tests := []struct {
		name      string
		fail      int
		drop      bool
		delivered int
		failed    int
		dropped   int
		attempts  int
	}{
		{"retried until it succeeds", 4, false, 3, 0, 0, 7},
		{"given up after five tries", 100, false, 0, 3, 0, 15},
		{"dropped on purpose", 0, true, 2, 0, 1, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := gerritsimtest.NewWorld(t, gerritsim.Options{WebhookRetryInterval: time.Millisecond})
			rcv := newCapture(t)
			rcv.fail = tc.fail
			h := w.Sim.AddWebhook(rcv.srv.URL, "patchset-created", "ref-updated")
			if tc.drop {
				h.SetDrop(func(ev gerritsim.Event) bool { return ev.Type == "patchset-created" })
			}
			ctx := context.Background()
			_, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "s", map[string]string{"f": "x"})
			must(t, err)
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			must(t, w.Sim.Flush(ctx))
			st := h.Stats()
			if st.Delivered != tc.delivered || st.Failed != tc.failed || st.Dropped != tc.dropped || st.Attempts != tc.attempts {
				t.Fatalf("stats = %+v", st)
			}
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if tc.delivered == 3 && strings.Join(rcv.order, ",") != "ref-updated,ref-updated,patchset-created" {
				t.Fatalf("order = %v", rcv.order)
			}
		})
	}
}

func TestWebhookOrderPerChange(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{WebhookRetryInterval: time.Millisecond})
	rcv := newCapture(t)
	rcv.fail = 3 // the first deliveries fail and are retried; order must hold
	w.Sim.AddWebhook(rcv.srv.URL, "comment-added")
	ctx := context.Background()
	n, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "s", map[string]string{"f": "x"})
	must(t, err)
	for i := 0; i < 10; i++ {
		must(t, w.Sim.Comment(ctx, n, 0, w.Reviewer, "comment "+strconv.Itoa(i), ""))
	}
	must(t, w.Sim.Flush(ctx))
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	got := rcv.bodies["comment-added"]
	if len(got) != 10 {
		t.Fatalf("delivered %d comments", len(got))
	}
	for i, b := range got {
		if !strings.Contains(string(b), `comment `+strconv.Itoa(i)+`"`) {
			t.Fatalf("delivery %d out of order: %s", i, b)
		}
	}
}

func mustJSONUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
