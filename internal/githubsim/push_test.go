package githubsim

import (
	"testing"

	"github.com/google/go-github/v60/github"
)

// TestPushPayloads checks what push and synchronize payloads say about
// the commits, parsed with go-github's types as tryd would.
func TestPushPayloads(t *testing.T) {
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	pushes := func() []*github.PushEvent {
		var out []*github.PushEvent
		for _, r := range w.hookRC.byEvent(t, "push", "") {
			ev, err := github.ParseWebHook("push", r.body)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.(*github.PushEvent))
		}
		return out
	}
	base, err := s.PushCommit(ctx, w.repo, "main", "", Commit{Files: map[string]string{"a.txt": "a\n"}, Message: "add a", Author: "wendy"})
	if err != nil {
		t.Fatal(err)
	}
	feat, err := s.PushCommit(ctx, w.repo, "feat", "main", Commit{Files: map[string]string{"README.md": "new\n"}, Deletes: []string{"a.txt"}, Message: "feat work", Author: "wendy"})
	if err != nil {
		t.Fatal(err)
	}
	ps := pushes()
	if len(ps) != 2 {
		t.Fatalf("%d push events, want 2", len(ps))
	}
	cases := []struct {
		name                       string
		ev                         *github.PushEvent
		ref, before, after         string
		created                    bool
		commits                    int
		added, removed, modified   []string
		pusher, message, committer string
	}{
		{"fast-forward", ps[0], "refs/heads/main", "", base, false, 1, []string{"a.txt"}, nil, nil, "wendy", "add a", "wendy"},
		{"new branch", ps[1], "refs/heads/feat", zeroSHA, feat, true, 1, nil, []string{"a.txt"}, []string{"README.md"}, "wendy", "feat work", "wendy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			if ev.GetRef() != tc.ref || ev.GetAfter() != tc.after || ev.GetCreated() != tc.created || (tc.before != "" && ev.GetBefore() != tc.before) {
				t.Fatalf("ref %s before %s after %s created %v", ev.GetRef(), ev.GetBefore(), ev.GetAfter(), ev.GetCreated())
			}
			if len(ev.Commits) != tc.commits || ev.GetHeadCommit().GetID() != tc.after {
				t.Fatalf("%d commits, head %s; want %d, %s", len(ev.Commits), ev.GetHeadCommit().GetID(), tc.commits, tc.after)
			}
			hc := ev.GetHeadCommit()
			if !same(hc.Added, tc.added) || !same(hc.Removed, tc.removed) || !same(hc.Modified, tc.modified) {
				t.Errorf("added %v removed %v modified %v", hc.Added, hc.Removed, hc.Modified)
			}
			if ev.GetPusher().GetName() != tc.pusher || hc.GetMessage() != tc.message || hc.GetAuthor().GetLogin() != tc.committer || ev.GetSender().GetLogin() != tc.pusher {
				t.Errorf("pusher %s message %q author %s sender %s", ev.GetPusher().GetName(), hc.GetMessage(), hc.GetAuthor().GetLogin(), ev.GetSender().GetLogin())
			}
			if ev.GetRepo().GetFullName() != w.repo || ev.GetRepo().GetCreatedAt().IsZero() {
				t.Errorf("repository %s created %v", ev.GetRepo().GetFullName(), ev.GetRepo().GetCreatedAt())
			}
		})
	}
	// A pull request push: synchronize carries before/after and the new head.
	n, err := s.OpenPR(ctx, w.repo, "wendy", PROptions{Head: "feat", Title: "Feat"})
	if err != nil {
		t.Fatal(err)
	}
	head, err := s.PushToPR(ctx, w.repo, n, map[string]string{"b.txt": "b\n"})
	if err != nil {
		t.Fatal(err)
	}
	syncs := w.hookRC.byEvent(t, "pull_request", "synchronize")
	if len(syncs) != 1 {
		t.Fatalf("%d synchronize events", len(syncs))
	}
	ev, err := github.ParseWebHook("pull_request", syncs[0].body)
	if err != nil {
		t.Fatal(err)
	}
	pe := ev.(*github.PullRequestEvent)
	if pe.GetBefore() != feat || pe.GetAfter() != head || pe.GetPullRequest().GetHead().GetSHA() != head || pe.GetNumber() != n ||
		pe.GetPullRequest().GetCommits() != 2 || pe.GetPullRequest().GetChangedFiles() != 3 {
		t.Fatalf("synchronize: before %s after %s head %s commits %d files %d", pe.GetBefore(), pe.GetAfter(), pe.GetPullRequest().GetHead().GetSHA(), pe.GetPullRequest().GetCommits(), pe.GetPullRequest().GetChangedFiles())
	}
	// Each push asks the app for a check suite, as GitHub does.
	var heads []string
	for _, r := range w.appRC.byEvent(t, "check_suite", "requested") {
		ev, err := github.ParseWebHook("check_suite", r.body)
		if err != nil {
			t.Fatal(err)
		}
		cs := ev.(*github.CheckSuiteEvent).GetCheckSuite()
		heads = append(heads, cs.GetHeadSHA())
		if cs.GetStatus() != "queued" || cs.GetApp().GetSlug() != "tryd" {
			t.Errorf("requested suite: status %s app %s", cs.GetStatus(), cs.GetApp().GetSlug())
		}
	}
	if !same(heads, []string{base, feat, head}) {
		t.Errorf("check_suite requested for %v, want %v", heads, []string{base, feat, head})
	}
}

func same(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
