package gitmirror

import (
	"testing"
)

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"Time":"2026-01-02T03:04:05.123456789Z","LongPollTimeout":true}`,
		`{"Time":"2026-01-02T03:04:05Z","Gerrit":{"URL":"https://go-review.googlesource.com/39551","Project":"go","CommitHash":"abc","ChangeNumber":39551}}`,
		`{"Time":"2026-01-02T03:04:05Z","GitHub":{"Action":"opened","RepoOwner":"golang","Repo":"go","IssueNumber":1,"PullRequestNumber":2}}`,
		`{"Time":"not a time"}`,
		`{}`,
		`[]`,
		`{"Time":"2026-01-02T03:04:05Z","Gerrit":null,"GitHub":{"RepoOwner":7}}`,
	} {
		f.Add([]byte(s))
	}
	m, err := New(Options{Dir: f.TempDir(), Repos: []Repo{
		{Name: "go", URL: "https://x/go"},
		{Name: "w", URL: "https://x/w", GitHubSlug: "golang/go"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := parseEvent(data)
		if err != nil {
			return
		}
		if ev.Time.IsZero() {
			t.Fatalf("accepted an event without time: %q", data)
		}
		for _, r := range m.reposFor(ev) {
			if r == nil {
				t.Fatal("nil repo")
			}
		}
	})
}

func FuzzParseBatchCheck(f *testing.F) {
	f.Add([]byte("83d9e67e6905288eddbcaf39197c6b22cd62b503 commit\naaff74984cccd156a469afa7d9ab10e4777beb24 tree\n"))
	f.Add([]byte("x^{commit} missing\nx^{tree} missing\n"))
	f.Add([]byte("abcd^{commit} ambiguous\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ct, err := parseBatchCheck(data)
		if err == nil && (len(ct[0]) != 40 && len(ct[0]) != 64 || len(ct[1]) != 40 && len(ct[1]) != 64) {
			t.Fatalf("accepted %q as %q", data, ct)
		}
	})
}

func FuzzParseRefs(f *testing.F) {
	f.Add([]byte("83d9e67e6905288eddbcaf39197c6b22cd62b503 refs/heads/main\naaff74984cccd156a469afa7d9ab10e4777beb24 refs/tags/v1\n"))
	f.Add([]byte("bogus\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := parseRefs(data)
		if err != nil {
			return
		}
		for ref, hash := range refs {
			if ref == "" || len(hash) != 40 && len(hash) != 64 {
				t.Fatalf("accepted %q -> %q", ref, hash)
			}
		}
	})
}
