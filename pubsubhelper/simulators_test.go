package pubsubhelper

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// TestGitHubSimulatorDeliveries has the GitHub simulator deliver, signed,
// the webhooks of a pull request's life (opened, labelled, commented,
// pushed to, merged) to a real pubsubhelper: every delivery is answered
// 200 and recorded once with the right fields; a redelivery changes
// nothing.
func TestGitHubSimulatorDeliveries(t *testing.T) {
	ts := startServer(t, "", nil)
	sim := githubsim.StartForTest(t, githubsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := sim.AddUser("gopher", githubsim.PermAdmin)
	must(err)
	must(sim.CreateRepo(ctx, "gopher/widget"))
	_, err = sim.Push(ctx, "gopher/widget", "main", map[string]string{"go.mod": "module widget\n"})
	must(err)
	_, err = sim.AddHook(ctx, "gopher/widget", githubsim.HookOptions{URL: ts.URL + "/github-webhook", Secret: testGitHubSecret, Events: []string{"*"}})
	must(err)
	n, err := sim.OpenPR(ctx, "gopher/widget", "gopher", githubsim.PROptions{Head: "fix", Title: "Fix it", Files: map[string]string{"fix.go": "package widget\n"}})
	must(err)
	must(sim.AddLabel(ctx, "gopher/widget", n, "gopher", "run-trybot"))
	_, err = sim.Comment(ctx, "gopher/widget", n, "gopher", "/trybot")
	must(err)
	head, err := sim.PushToPR(ctx, "gopher/widget", n, map[string]string{"fix.go": "package widget // v2\n"})
	must(err)
	_, err = sim.MergePR(ctx, "gopher/widget", n, "gopher")
	must(err)
	must(sim.Flush(ctx))

	deliveries := sim.Deliveries("gopher/widget")
	if len(deliveries) < 6 {
		t.Fatalf("simulator made only %d deliveries", len(deliveries))
	}
	evs := allEvents(t, ts)
	byGUID := map[string]pubsubtypes.Event{}
	for _, ev := range evs {
		if _, dup := byGUID[ev.DeliveryID]; dup {
			t.Errorf("delivery %s recorded twice", ev.DeliveryID)
		}
		byGUID[ev.DeliveryID] = ev
	}
	for _, d := range deliveries {
		if d.StatusCode != 200 {
			t.Errorf("%s %s (%s): status %d %s", d.Event, d.Action, d.GUID, d.StatusCode, d.Err)
			continue
		}
		ev, ok := byGUID[d.GUID]
		if !ok {
			t.Errorf("%s %s (%s) acknowledged but not journaled", d.Event, d.Action, d.GUID)
			continue
		}
		if ev.Type != d.Event || ev.GitHub.Action != d.Action || ev.GitHub.RepoOwner != "gopher" || ev.GitHub.Repo != "widget" {
			t.Errorf("%s %s: journaled as %s %+v", d.Event, d.Action, ev.Type, ev.GitHub)
		}
		switch d.Event {
		case "pull_request", "pull_request_review", "pull_request_review_comment":
			if ev.GitHub.PullRequestNumber != n {
				t.Errorf("%s %s: PullRequestNumber %d, want %d", d.Event, d.Action, ev.GitHub.PullRequestNumber, n)
			}
		case "issue_comment":
			if ev.GitHub.IssueNumber != n || ev.GitHub.PullRequestNumber != n {
				t.Errorf("comment on the pull request: %+v", ev.GitHub)
			}
		}
		if d.Event == "pull_request" && d.Action == "synchronize" && ev.GitHub.SHA != head {
			t.Errorf("synchronize: SHA %s, want the pushed head %s", ev.GitHub.SHA, head)
		}
		if d.Event == "pull_request" && d.Action == "labeled" && ev.GitHub.Label != "run-trybot" {
			t.Errorf("labeled: Label %q", ev.GitHub.Label)
		}
	}
	t.Logf("%d GitHub deliveries journaled", len(evs))
	if len(evs) != len(deliveries) {
		t.Errorf("%d deliveries, %d events journaled", len(deliveries), len(evs))
	}

	// GitHub's "Redeliver": same GUID and body, answered 200, recorded once.
	must(sim.Redeliver(ctx, deliveries[1].GUID))
	must(sim.Flush(ctx))
	if got := allEvents(t, ts); len(got) != len(evs) {
		t.Errorf("redelivery added events: %d → %d", len(evs), len(got))
	}
}

// TestGerritSimulatorDeliveries has the Gerrit simulator's webhooks
// plugin deliver a change's life (upload, Run-TryBot+1 vote, comment, new
// patch set, submit) to pubsubhelper, with the shared secret as basic
// auth in the remote's URL as documented.
func TestGerritSimulatorDeliveries(t *testing.T) {
	ts := startServer(t, "", nil)
	w := gerritsimtest.NewWorld(t, gerritsim.Options{WebhookMaxTries: 3})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, _ := url.Parse(ts.URL + "/gerrit-webhook")
	u.User = url.UserPassword("gerrit", testGerritSecret)
	hook := w.Sim.AddWebhook(u.String())
	// A remote with the wrong secret gets 401s and delivers nothing.
	bad, _ := url.Parse(ts.URL + "/gerrit-webhook")
	bad.User = url.UserPassword("gerrit", "wrong")
	badHook := w.Sim.AddWebhook(bad.String(), "patchset-created")

	s := w.Sim
	// Events from before the remote existed (the project's creation)
	// are not delivered to it.
	before := len(s.Events())
	n, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "Add feature", map[string]string{"feature.go": "package proj\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Vote(ctx, n, 1, w.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Comment(ctx, n, 1, w.Reviewer, "looks good", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UploadPatchSet(ctx, n, w.Owner, map[string]string{"feature.go": "package proj // v2\n"}, "v2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Vote(ctx, n, 2, w.Reviewer, map[string]int{"Code-Review": 2}, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Submit(ctx, n, w.Reviewer); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	sent := s.Events()[before:]
	st := hook.Stats()
	if st.Failed != 0 || st.Delivered != len(sent) {
		t.Errorf("webhook stats %+v for %d events", st, len(sent))
	}
	if bs := badHook.Stats(); bs.Delivered != 0 || bs.Failed == 0 {
		t.Errorf("remote with a wrong secret: %+v, want only failures", bs)
	}
	evs := allEvents(t, ts)
	if len(evs) != len(sent) {
		t.Fatalf("%d events sent, %d journaled", len(sent), len(evs))
	}
	types := map[string]int{}
	for _, ev := range evs {
		types[ev.Type]++
		if ev.Server != "review" || ev.Gerrit.Origin != strings.TrimSuffix(s.URL(), "/") {
			t.Errorf("%s: server %q origin %q", ev.Type, ev.Server, ev.Gerrit.Origin)
		}
		if ev.Gerrit.Project != w.Project {
			t.Errorf("%s: project %q", ev.Type, ev.Gerrit.Project)
		}
		if ev.Type != "ref-updated" && ev.Gerrit.ChangeNumber != n {
			t.Errorf("%s: change %d, want %d", ev.Type, ev.Gerrit.ChangeNumber, n)
		}
	}
	t.Logf("journaled Gerrit events by type: %v", types)
	for _, typ := range []string{"patchset-created", "comment-added", "change-merged"} {
		if types[typ] == 0 {
			t.Errorf("no %s event journaled (have %v)", typ, types)
		}
	}
	// The Run-TryBot+1 vote reaches subscribers filtering on the project.
	found := false
	for _, ev := range evs {
		for _, a := range ev.Gerrit.Approvals {
			if ev.Type == "comment-added" && a.Type == "Run-TryBot" && strings.TrimPrefix(a.Value, "+") == "1" && ev.Gerrit.PatchSet == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Error("no comment-added event carries the Run-TryBot+1 vote on patch set 1")
	}
}
