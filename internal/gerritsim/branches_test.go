package gerritsim_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
)

func TestBranches(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	s := w.Sim
	rcv := newCapture(t)
	s.AddWebhook(rcv.srv.URL, "ref-updated")
	ctx := context.Background()
	base, err := s.CreateBranch(ctx, w.Project, "release", "main", w.Owner)
	must(t, err)
	sha, err := s.CommitToBranch(ctx, w.Project, "release", w.Owner, "release: bump", map[string]string{"VERSION": "1.1\n"})
	must(t, err)
	dir := t.TempDir()
	out := git(t, dir, "ls-remote", s.GitURL(w.Project), "refs/heads/*")
	if !strings.Contains(out, sha+"\trefs/heads/release") {
		t.Fatalf("ls-remote = %q", out)
	}
	repo, err := s.RepoDir(w.Project)
	must(t, err)
	if got := git(t, repo, "rev-parse", sha+"^"); got != base {
		t.Fatalf("parent = %s, want %s", got, base)
	}
	if got := git(t, repo, "show", sha+":VERSION"); got != "1.1" {
		t.Fatalf("VERSION = %q", got)
	}
	// A change on the new branch.
	n, _, err := s.CreateChange(ctx, w.Project, "release", w.Owner, "release: fix", map[string]string{"f": "x"})
	must(t, err)
	code, _, body := rawDo(t, "GET", s.URL()+"changes/?q=branch:release", "", "", "")
	if code != 200 || !strings.Contains(body, `"_number":`+itoa(n)) {
		t.Fatalf("query: %d %s", code, body)
	}

	errs := []struct {
		name string
		err  error
	}{
		{"existing branch", func() error { _, err := s.CreateBranch(ctx, w.Project, "release", "main", w.Owner); return err }()},
		{"bad revision", func() error { _, err := s.CreateBranch(ctx, w.Project, "x", "nope", w.Owner); return err }()},
		{"bad name", func() error { _, err := s.CreateBranch(ctx, w.Project, "a..b", "main", w.Owner); return err }()},
		{"unknown project", func() error { _, err := s.CommitToBranch(ctx, "nope", "main", w.Owner, "s", nil); return err }()},
		{"unknown branch", func() error { _, err := s.CommitToBranch(ctx, w.Project, "nope", w.Owner, "s", nil); return err }()},
	}
	for _, e := range errs {
		if e.err == nil {
			t.Errorf("%s: no error", e.name)
		}
	}
	must(t, s.Flush(ctx))
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	// Branch events come in order (one queue per project); change events
	// have their own queue.
	var release []string
	changeRefs := 0
	for _, b := range rcv.bodies["ref-updated"] {
		var ev struct {
			RefUpdate struct{ RefName, OldRev, NewRev string } `json:"refUpdate"`
		}
		mustJSONUnmarshal(t, b, &ev)
		switch r := ev.RefUpdate; {
		case r.RefName == "refs/heads/release":
			release = append(release, r.OldRev+">"+r.NewRev)
		case strings.HasPrefix(r.RefName, "refs/changes/"):
			changeRefs++
		}
	}
	want := []string{strings.Repeat("0", 40) + ">" + base, base + ">" + sha}
	if strings.Join(release, ",") != strings.Join(want, ",") || changeRefs != 2 {
		t.Fatalf("release updates %v (want %v), %d change ref updates", release, want, changeRefs)
	}
}
