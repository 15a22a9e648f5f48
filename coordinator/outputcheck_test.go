package coordinator

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
)

// oneOutput is a build of one job writing the same output whatever its
// name.
func oneOutput(name string) string {
	return fmt.Sprintf(`{"jobs": [{"name": %q, "source_mode": "none", "commands": [{"argv": ["true", %[1]q]}, {"write_file": {"path": "o", "content": "same"}}]}]}`, name)
}

// TestOutputChecked: a result is accepted only if its output is in the
// artifact store; one naming an output that is gone (its build finished
// and nothing kept it) fails its attempt instead of being trusted.
func TestOutputChecked(t *testing.T) { forEachBackend(t, testOutputChecked) }

func testOutputChecked(t *testing.T, be backend) {
	var arts artifacts.Store
	e := newEnv(t, be, envOpts{mod: func(o *Options) { arts = o.Artifacts }})
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	sub := e.submit(oneOutput("a"), api.PriorityTry)
	resp := w.mustPoll(1, nil)
	if len(resp.Assignments) != 1 {
		t.Fatalf("%d assignments, want 1", len(resp.Assignments))
	}
	res := w.output(resp.Assignments[0])
	if resp := w.mustPoll(0, nil, res); len(resp.Rejected) > 0 {
		t.Fatal("result rejected")
	}
	if b := e.build(sub.BuildID); b.State != api.BuildSucceeded {
		t.Fatalf("build %s", b.State)
	}

	if err := arts.Delete(context.Background(), res.OutputDigest); err != nil {
		t.Fatal(err)
	}
	sub2 := e.submit(oneOutput("b"), api.PriorityTry)
	resp = w.mustPoll(1, nil)
	if len(resp.Assignments) != 1 {
		t.Fatalf("%d assignments, want 1", len(resp.Assignments))
	}
	zero := 0
	w.mustPoll(0, nil, api.AttemptResult{AttemptID: resp.Assignments[0].AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: res.OutputDigest, OutputSize: res.OutputSize})
	j := jobByName(e.build(sub2.BuildID), "b")
	if len(j.Attempts) == 0 || j.Attempts[0].State != api.AttemptError || !strings.Contains(j.Attempts[0].Error, "not in the artifact store") {
		t.Errorf("result naming a deleted output: job %+v", j)
	}
}
