// Package gerritsimtest starts Gerrit simulators (package gerritsim) for
// tests: a real server on 127.0.0.1:0 with its repositories in a temporary
// directory, stopped by t.Cleanup. It also offers a ready-made world (a
// project, an owner, a reviewer and a trybot account) that most tests of
// ingestion, triggering and reporting need.
package gerritsimtest

import (
	"context"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// Start returns a started simulator. It needs git (testenv.NeedTool). An
// empty opts.Dir becomes t.TempDir(); a zero WebhookRetryInterval becomes
// 20 ms so that retry tests stay fast.
func Start(t testing.TB, opts gerritsim.Options) *gerritsim.Sim {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	return start(t, opts, false)
}

// World is a simulator with one project and three accounts.
type World struct {
	Sim     *gerritsim.Sim
	Project string
	// Owner uploads changes; Reviewer votes Code-Review and Run-TryBot;
	// Bot votes TryBot-Result only (as a trybot service account would).
	Owner, Reviewer, Bot int
}

// Passwords of the World's accounts (usernames "owner", "reviewer", "bot").
const (
	OwnerPassword    = "owner-secret"
	ReviewerPassword = "reviewer-secret"
	BotPassword      = "bot-secret"
)

// NewWorld starts a simulator with project "proj" (branch main, default
// labels) and the accounts owner, reviewer and bot.
func NewWorld(t testing.TB, opts gerritsim.Options) *World {
	t.Helper()
	s := Start(t, opts)
	ctx := context.Background()
	if err := s.CreateProject(ctx, gerritsim.ProjectInput{Name: "proj", Description: "a test project"}); err != nil {
		t.Fatal(err)
	}
	mk := func(in gerritsim.AccountInput) int {
		id, err := s.CreateAccount(in)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	w := &World{Sim: s, Project: "proj"}
	w.Owner = mk(gerritsim.AccountInput{Username: "owner", Name: "Olive Owner", Email: "owner@example.com", HTTPPassword: OwnerPassword,
		Permissions: map[string]gerritsim.Range{"Code-Review": {Min: -1, Max: 1}, "Verified": {Min: -1, Max: 1}}})
	w.Reviewer = mk(gerritsim.AccountInput{Username: "reviewer", Name: "Rita Reviewer", Email: "reviewer@example.com", HTTPPassword: ReviewerPassword})
	w.Bot = mk(gerritsim.AccountInput{Username: "bot", Name: "TryBot", Email: "bot@example.com", HTTPPassword: BotPassword,
		Permissions: map[string]gerritsim.Range{"TryBot-Result": {Min: -1, Max: 1}}})
	return w
}

// StartLoaded is Start for a simulator that first loads what an earlier
// one left in opts.Dir (see Sim.Load).
func StartLoaded(t testing.TB, opts gerritsim.Options) *gerritsim.Sim {
	t.Helper()
	return start(t, opts, true)
}

func start(t testing.TB, opts gerritsim.Options, load bool) *gerritsim.Sim {
	t.Helper()
	opts.Git = testenv.NeedTool(t, "git")
	if opts.WebhookRetryInterval == 0 {
		opts.WebhookRetryInterval = 20 * time.Millisecond
	}
	s, err := gerritsim.New(opts)
	if err != nil {
		t.Fatalf("gerritsimtest: %v", err)
	}
	if load {
		if err := s.Load(context.Background()); err != nil {
			t.Fatalf("gerritsimtest: %v", err)
		}
	}
	if err := s.Start(); err != nil {
		t.Fatalf("gerritsimtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("gerritsimtest: close: %v", err)
		}
	})
	return s
}
