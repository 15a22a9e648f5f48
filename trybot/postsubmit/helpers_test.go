package postsubmit_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// clientToken is a client token for clients that never reach a
// coordinator.
const clientToken = "client-token-0123456789"

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// startStack runs a real coordinator and one real worker, as tryd
// processes on loopback, and returns the client API.
func startStack(t *testing.T) *api.Client {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Workers: []testcluster.WorkerOptions{{Slots: 4}}})
	cc, err := api.NewClient(c.URL, c.ClientToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// stepPlanner plans a builder's steps (shell lines) as independent jobs,
// so that one failing step does not hide the others.
type stepPlanner map[string]config.Builder

func (p stepPlanner) Plan(builder string, src graph.Source) (*graph.Graph, error) {
	g := &graph.Graph{Source: src}
	for _, s := range p[builder].Steps {
		g.Jobs = append(g.Jobs, &graph.Job{Name: s.Name, Commands: []graph.Command{{Argv: []string{"sh", "-c", s.Shell}}}, Cacheable: true})
	}
	return g, nil
}

func builders(bs ...config.Builder) ([]config.Builder, stepPlanner) {
	p := stepPlanner{}
	for _, b := range bs {
		p[b.Name] = b
	}
	return bs, p
}

// newRepo makes a real git repository for the test.
func newRepo(t *testing.T) *testenv.GitRepo { return testenv.NewGitRepo(t) }

// waitAll waits for builds to finish and returns them.
func waitAll(t *testing.T, cc *api.Client, ids []int64) []*api.Build {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*api.Build
	for _, id := range ids {
		b, err := cc.Wait(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
