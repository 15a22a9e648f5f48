package dashboard_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/dashboard"
)

// domainPlanner plans a one-job graph and records which builders it
// planned, standing for the planner of one trust domain.
type domainPlanner struct {
	mu      sync.Mutex
	planned []string
}

func (p *domainPlanner) Plan(builder string, src graph.Source) (*graph.Graph, error) {
	p.mu.Lock()
	p.planned = append(p.planned, builder)
	p.mu.Unlock()
	return &graph.Graph{Jobs: []*graph.Job{sh("rebuild", "true")}}, nil
}

func (p *domainPlanner) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.planned...)
}

// TestForceKeepsTrustDomain checks that a force build of a try (or
// base) build is planned by Options.TryPlanner, in the try trust domain,
// and a force build of anything else by Options.Planner.
func TestForceKeepsTrustDomain(t *testing.T) {
	e := startEnv(t)
	post, try := &domainPlanner{}, &domainPlanner{}
	d, err := dashboard.New(dashboard.Options{Coordinator: e.coord, Planner: post, TryPlanner: try, AdminToken: adminToken, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, d.Handler(), "dashboard")
	for _, tc := range []struct {
		kind    string
		planner *domainPlanner
	}{
		{"try", try},
		{"base", try},
		{"post-submit", post},
		{"periodic", post},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			builder := "b-" + tc.kind
			from := e.submit(map[string]string{"kind": tc.kind, "builder": builder}, sh("x", "true"))
			e.wait(from)
			req, _ := http.NewRequest(http.MethodPost, url+"/builds/"+strconv.FormatInt(from, 10)+"/force", nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var fv struct {
				BuildID int64 `json:"build_id"`
			}
			json.NewDecoder(resp.Body).Decode(&fv)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("force: %d", resp.StatusCode)
			}
			if nb := e.wait(fv.BuildID); nb.Labels["kind"] != tc.kind {
				t.Errorf("forced build's kind %q, want %q", nb.Labels["kind"], tc.kind)
			}
			other := post
			if tc.planner == post {
				other = try
			}
			calls := tc.planner.calls()
			if len(calls) == 0 || calls[len(calls)-1] != builder {
				t.Errorf("the %s build was not planned by its domain's planner (calls %v)", tc.kind, calls)
			}
			for _, c := range other.calls() {
				if c == builder {
					t.Errorf("the %s build was planned by the other domain's planner", tc.kind)
				}
			}
		})
	}
}
