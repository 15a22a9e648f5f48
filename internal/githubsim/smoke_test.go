package githubsim

import (
	"encoding/json"
	"testing"
)

func jsonField(t *testing.T, body []byte, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	s, _ := m[key].(string)
	return s
}

func TestSmoke(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	n, err := w.s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "feature", Title: "Add x", Body: "body", Files: map[string]string{"x.go": "package x\n"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.s.AddLabel(ctx, w.repo, n, "wendy", "run-trybot"); err != nil {
		t.Fatal(err)
	}
	for _, r := range w.hookRC.all() {
		t.Logf("%s %s %d bytes", r.header.Get("X-GitHub-Event"), jsonField(t, r.body, "action"), len(r.body))
	}
	c := client(t, w.s, w.writeTok)
	pr, _, err := c.PullRequests.Get(ctx, "octo", "hello", n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s %s", pr.GetHead().GetSHA(), pr.GetBase().GetRef(), pr.GetUser().GetLogin())
}
