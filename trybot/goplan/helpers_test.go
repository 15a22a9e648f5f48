package goplan_test

import (
	"os"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// startStack runs a real coordinator and one worker with slots, as tryd
// processes on loopback, and returns the client API. The worker runs
// planner jobs' "tryd goplan" with its own binary, built from this tree,
// offline.
func startStack(t *testing.T, slots int) *api.Client {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Workers: []testcluster.WorkerOptions{{Slots: slots, Env: []string{"GOFLAGS=-mod=mod", "GOPROXY=off"}}}})
	cc, err := api.NewClient(c.URL, c.ClientToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// newRepo makes a real git repository for the test.
func newRepo(t *testing.T) *testenv.GitRepo { return testenv.NewGitRepo(t) }
