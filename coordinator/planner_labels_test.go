package coordinator

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// TestPlannerCannotEscapeItsPool runs a planner confined to an untrusted
// worker pool whose fragment asks for the release pool: the coordinator
// must fail the planner, naming the job, and never dispatch it.
func TestPlannerCannotEscapeItsPool(t *testing.T) { forEachBackend(t, testPlannerCannotEscapeItsPool) }

func testPlannerCannotEscapeItsPool(t *testing.T, be backend) {
	e := newEnv(t, be, envOpts{})
	w := newTestWorker(t, e, "w1", tokenW1, map[string]string{"pool": "untrusted"})
	frag := `{"jobs": [{"name": "sign-release", "source_mode": "none", "labels": {"pool": "release"}, "commands": [{"argv": ["sign"]}]}]}`
	plan := fmt.Sprintf(`{"jobs": [
		{"name": "plan", "planner": true, "source_mode": "none", "labels": {"pool": "untrusted"}, "commands": [{"write_file": {"path": "graph.json", "content": %q}}]}]}`, frag)
	sub := e.submit(plan, api.PriorityTry)
	order := w.drain(e, sub.BuildID, nil)
	b := e.build(sub.BuildID)
	p := jobByName(b, "plan")
	if p.State != api.JobFailed || !strings.Contains(p.Error, `job "sign-release": label pool="release" differs from its planner's pool="untrusted"`) {
		t.Errorf("planner: %s %q", p.State, p.Error)
	}
	if j := jobByName(b, "sign-release"); j.Name != "" {
		t.Errorf("the escaping job was added to the build: %+v", j)
	}
	if strings.Contains(strings.Join(order, ","), "sign-release") {
		t.Errorf("the escaping job was dispatched: %v", order)
	}
}
