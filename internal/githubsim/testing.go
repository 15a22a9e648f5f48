package githubsim

import (
	"context"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// StartForTest starts a simulator on 127.0.0.1:0 for a test and closes it
// with t.Cleanup. opts.Dir defaults to a t.TempDir(). It needs git
// (testenv.NeedTool: skipped locally without it, a failure under CI).
func StartForTest(t testing.TB, opts Options) *Sim {
	t.Helper()
	testenv.NeedTool(t, "git")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("githubsim: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx, ""); err != nil {
		cancel()
		t.Fatalf("githubsim: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Close(); err != nil {
			t.Errorf("githubsim: close: %v", err)
		}
	})
	return s
}
