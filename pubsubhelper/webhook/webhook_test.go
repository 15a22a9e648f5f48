package webhook

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the parsers' output")

// fixtureFiles returns the JSON files under the fixture directory rel,
// relative to it, sorted.
func fixtureFiles(t *testing.T, rel string) (string, []string) {
	t.Helper()
	dir := testenv.Fixture(t, rel)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "raw" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json") {
			r, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(r))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no fixtures under %s", dir)
	}
	return dir, files
}

// checkGolden compares got with testdata/name, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got map[string]*pubsubtypes.Event) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	var w, g map[string]*pubsubtypes.Event
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &g)
	for k := range w {
		if _, ok := g[k]; !ok {
			t.Errorf("%s: golden has %s, which the fixtures no longer have", name, k)
		}
	}
	for k, ge := range g {
		we, ok := w[k]
		if !ok {
			t.Errorf("%s: fixture %s is not in the golden file (run go test -update and review it)", name, k)
			continue
		}
		if !reflect.DeepEqual(we, ge) {
			gb, _ := json.Marshal(ge)
			wb, _ := json.Marshal(we)
			t.Errorf("%s: %s:\n got %s\nwant %s", name, k, gb, wb)
		}
	}
}

// TestGitHubFixtures parses every recorded GitHub delivery; the event
// type is the fixture's directory, as GitHub sends it in X-GitHub-Event.
func TestGitHubFixtures(t *testing.T) {
	dir, files := fixtureFiles(t, "github/webhooks")
	got := map[string]*pubsubtypes.Event{}
	for _, f := range files {
		body, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		typ := strings.Split(f, "/")[0]
		ev, err := ParseGitHub(typ, body)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if ev.Source != pubsubtypes.SourceGitHub || ev.Type != typ || ev.GitHub == nil {
			t.Errorf("%s: source/type = %q/%q", f, ev.Source, ev.Type)
		}
		var generic map[string]any
		json.Unmarshal(body, &generic)
		if _, ok := generic["repository"]; ok && (ev.GitHub.RepoOwner == "" || ev.GitHub.Repo == "") {
			t.Errorf("%s: has a repository but RepoOwner/Repo = %q/%q", f, ev.GitHub.RepoOwner, ev.GitHub.Repo)
		}
		got[f] = ev
	}
	checkGolden(t, "github.golden.json", got)
}

// TestGitHubFields spells out the fields of a few deliveries that
// subscribers rely on, independently of the golden file.
func TestGitHubFields(t *testing.T) {
	dir := testenv.Fixture(t, "github/webhooks")
	for _, tc := range []struct {
		name, file string
		want       pubsubtypes.GitHubEvent
	}{
		{"pr opened", "pull_request/opened.payload.json", pubsubtypes.GitHubEvent{Action: "opened", RepoOwner: "Codertocat", Repo: "Hello-World", PullRequestNumber: 2, Ref: "changes", SHA: "ec26c3e57ca3a959ca5aad62de7213c562f8c821", Sender: "Codertocat", InstallationID: 1}},
		{"pr labeled", "pull_request/labeled.payload.json", pubsubtypes.GitHubEvent{Action: "labeled", RepoOwner: "Codertocat", Repo: "Hello-World", PullRequestNumber: 2, Ref: "changes", SHA: "ec26c3e57ca3a959ca5aad62de7213c562f8c821", Label: "bug", Sender: "Codertocat", InstallationID: 1}},
		{"comment on issue", "issue_comment/created.payload.json", pubsubtypes.GitHubEvent{Action: "created", RepoOwner: "Codertocat", Repo: "Hello-World", IssueNumber: 1, Sender: "Codertocat"}},
		{"comment on pr", "issue_comment/created.on-pull-request.Crunch09-find-reviewers.json", pubsubtypes.GitHubEvent{Action: "created", RepoOwner: "Crunch09", Repo: "octo-test", IssueNumber: 2, PullRequestNumber: 2, Sender: "Crunch09", InstallationID: 227031}},
		{"push new branch", "push/with-new-branch.payload.json", pubsubtypes.GitHubEvent{RepoOwner: "Codertocat", Repo: "Hello-World", Ref: "refs/heads/master", SHA: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", Sender: "Codertocat", InstallationID: 1}},
		{"ping org hook", "ping/with-organization.payload.json", pubsubtypes.GitHubEvent{Sender: "Codertocat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ParseGitHub(strings.Split(tc.file, "/")[0], body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*ev.GitHub, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *ev.GitHub, tc.want)
			}
		})
	}
}

// TestGerritFixtures parses every recorded Gerrit event: SSH
// stream-events lines and webhooks-plugin deliveries.
func TestGerritFixtures(t *testing.T) {
	got := map[string]*pubsubtypes.Event{}
	for _, rel := range []string{"gerrit/events/ssh-stream", "gerrit/webhooks-plugin/payloads"} {
		dir, files := fixtureFiles(t, rel)
		for _, f := range files {
			body, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ParseGerrit(body)
			if err != nil {
				t.Errorf("%s/%s: %v", rel, f, err)
				continue
			}
			if !KnownGerritType(ev.Type) {
				t.Errorf("%s/%s: type %q is not known", rel, f, ev.Type)
			}
			if ev.Gerrit.Project == "" {
				t.Errorf("%s/%s: no project", rel, f)
			}
			got[rel+"/"+f] = ev
		}
	}
	checkGolden(t, "gerrit.golden.json", got)
}

func TestGerritFields(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       pubsubtypes.GerritEvent
	}{
		{"ssh comment-added, string numbers", "gerrit/events/ssh-stream/comment-added.review.openstack.org-2012.json", pubsubtypes.GerritEvent{
			URL: "https://review.openstack.org/7385", Project: "openstack/keystone", CommitHash: "aff45d69a73033241531f5e3542a8d1782ddd859", ChangeNumber: 7385,
			Branch: "stable/essex", ChangeID: "I18ae38af62b4c2b2423e20e436611fc30f844ae1", PatchSet: 1, Topic: "bug/969088", Actor: "markmc",
			Approvals: []pubsubtypes.Approval{{Type: "CRVW", Value: "2"}, {Type: "APRV", Value: "0"}}}},
		{"plugin comment-added, object project and key", "gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/comment-added.change-1-ps2.json", pubsubtypes.GerritEvent{
			URL: "http://959be7129610/c/TestRepo/+/1", Project: "TestRepo", CommitHash: "ba8c3584916c93b3e17a1ab63072b0ebd0d3ed84", ChangeNumber: 1,
			Branch: "test_branch", RefName: "refs/heads/test_branch", ChangeID: "I55862204ef71f69bc88c79fe2259f7cb8365699a", PatchSet: 2, Status: "NEW", Actor: "admin",
			Approvals: []pubsubtypes.Approval{{Type: "Code-Review", Value: "2", OldValue: "1"}}}},
		{"ref-updated of a change's meta ref", "gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/ref-updated.change-meta.2-06932a8.json", pubsubtypes.GerritEvent{
			Project: "TestRepo1", CommitHash: "06932a8928e6e0beff7f9b65f04d9aa0f59b10d1", ChangeNumber: 2, RefName: "refs/changes/02/2/meta", Actor: "admin",
			RefUpdates: []pubsubtypes.RefUpdate{{Project: "TestRepo1", RefName: "refs/changes/02/2/meta", OldRev: "97de9dd4a272dffe8cf881057108713d01e03930", NewRev: "06932a8928e6e0beff7f9b65f04d9aa0f59b10d1"}}}},
		{"project-created", "gerrit/webhooks-plugin/payloads/cdevents-rfc-2023/project-created.json", pubsubtypes.GerritEvent{Project: "TestRepo3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := os.ReadFile(testenv.Fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ParseGerrit(body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*ev.Gerrit, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *ev.Gerrit, tc.want)
			}
		})
	}
}

func TestGerritShapes(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       pubsubtypes.GerritEvent
		typ        string
		err        bool
	}{
		{name: "integer numbers", typ: "patchset-created", body: `{"type":"patchset-created","project":"p","change":{"number":12,"branch":"main"},"patchSet":{"number":3,"revision":"abc"}}`,
			want: pubsubtypes.GerritEvent{Project: "p", ChangeNumber: 12, Branch: "main", PatchSet: 3, CommitHash: "abc"}},
		{name: "string numbers", typ: "patchset-created", body: `{"type":"patchset-created","project":{"name":"p"},"change":{"number":"12"},"patchSet":{"number":"3"}}`,
			want: pubsubtypes.GerritEvent{Project: "p", ChangeNumber: 12, PatchSet: 3}},
		{name: "changeKey id", typ: "topic-changed", body: `{"type":"topic-changed","changeKey":{"id":"I1"},"change":{"project":"q","topic":"t"}}`,
			want: pubsubtypes.GerritEvent{Project: "q", ChangeID: "I1", Topic: "t"}},
		{name: "changeKey key", typ: "wip-state-changed", body: `{"type":"wip-state-changed","changeKey":{"key":"I2"},"project":{"name":"r"}}`,
			want: pubsubtypes.GerritEvent{Project: "r", ChangeID: "I2"}},
		{name: "numeric approval", typ: "comment-added", body: `{"type":"comment-added","project":"p","approvals":[{"type":"Run-TryBot","value":1}]}`,
			want: pubsubtypes.GerritEvent{Project: "p", Approvals: []pubsubtypes.Approval{{Type: "Run-TryBot", Value: "1"}}}},
		{name: "batch-ref-updated", typ: "batch-ref-updated", body: `{"type":"batch-ref-updated","refUpdates":[{"refName":"refs/heads/a","oldRev":"0","newRev":"1","project":"p"},{"refName":"refs/heads/b","oldRev":"2","newRev":"3","project":"p"}]}`,
			want: pubsubtypes.GerritEvent{RefUpdates: []pubsubtypes.RefUpdate{{Project: "p", RefName: "refs/heads/a", OldRev: "0", NewRev: "1"}, {Project: "p", RefName: "refs/heads/b", OldRev: "2", NewRev: "3"}}}},
		{name: "unknown type with odd fields", typ: "brand-new-event", body: `{"type":"brand-new-event","change":"not an object"}`},
		{name: "unknown type with usual fields", typ: "brand-new-event", body: `{"type":"brand-new-event","project":"p"}`, want: pubsubtypes.GerritEvent{Project: "p"}},
		{name: "known type, bad field", body: `{"type":"comment-added","change":"not an object"}`, err: true},
		{name: "number not integer", body: `{"type":"patchset-created","change":{"number":"12a"}}`, err: true},
		{name: "missing type", body: `{"project":"p"}`, err: true},
		{name: "type not string", body: `{"type":7}`, err: true},
		{name: "not an object", body: `["type"]`, err: true},
		{name: "truncated", body: `{"type":"comment-added"`, err: true},
		{name: "empty", body: ``, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseGerrit([]byte(tc.body))
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != tc.typ || !reflect.DeepEqual(*ev.Gerrit, tc.want) {
				t.Errorf("got %q %+v\nwant %q %+v", ev.Type, *ev.Gerrit, tc.typ, tc.want)
			}
		})
	}
}

func TestGitHubMalformed(t *testing.T) {
	for _, tc := range []struct{ name, typ, body string }{
		{"not json", "push", `hello`},
		{"array", "push", `[1,2]`},
		{"truncated", "issues", `{"action":"opened"`},
		{"bad repo name", "issues", `{"repository":{"full_name":"nohslash"}}`},
		{"repo with two slashes", "issues", `{"repository":{"full_name":"a/b/c"}}`},
		{"number is string", "issues", `{"issue":{"number":"1"}}`},
		{"bad event header", "Pull Request", `{}`},
		{"empty event header", "", `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseGitHub(tc.typ, []byte(tc.body)); !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

// seeds adds the fixture files under rel to f's corpus when the shared
// fixtures are present (the fuzz targets keep their inline seeds
// otherwise).
func seeds(f *testing.F, rel string, add func([]byte, string)) {
	dir := os.Getenv("TRYD_SHARED")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(f), "..", "shared")
	}
	root := filepath.Join(dir, "fixtures", rel)
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			if b, err := os.ReadFile(p); err == nil {
				r, _ := filepath.Rel(root, p)
				add(b, strings.Split(filepath.ToSlash(r), "/")[0])
			}
		}
		return nil
	})
}

func FuzzParseGitHub(f *testing.F) {
	f.Add("issues", []byte(`{"action":"opened","repository":{"full_name":"a/b","name":"b","owner":{"login":"a"}},"issue":{"number":1}}`))
	f.Add("push", []byte(`{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"a/b"}}`))
	f.Add("check_run", []byte(`{"check_run":{"head_sha":"x","pull_requests":[{"number":3}]}}`))
	seeds(f, "github/webhooks", func(b []byte, typ string) { f.Add(typ, b) })
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		ev, err := ParseGitHub(typ, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if ev.GitHub == nil || ev.Type != typ {
			t.Fatalf("bad event %+v", ev)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
	})
}

func FuzzParseGerrit(f *testing.F) {
	f.Add([]byte(`{"type":"patchset-created","project":{"name":"p"},"changeKey":{"key":"I1"},"change":{"number":"7"},"patchSet":{"number":1}}`))
	f.Add([]byte(`{"type":"ref-updated","refUpdate":{"refName":"refs/changes/01/1/meta","newRev":"a","project":"p"}}`))
	f.Add([]byte(`{"type":"x-new","anything":[1,2,{"a":null}]}`))
	seeds(f, "gerrit", func(b []byte, _ string) { f.Add(b) })
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseGerrit(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if ev.Gerrit == nil || ev.Type == "" {
			t.Fatalf("bad event %+v", ev)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
	})
}
