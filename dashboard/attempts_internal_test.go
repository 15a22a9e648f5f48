package dashboard

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/logging"
)

// TestAbandonedAttemptRendering: an abandoned attempt (ended by the
// coordinator, not counted) is listed with its state styled as such and
// its reason, and the job's log link is the attempt that decided the
// job, not an abandoned run that started after it.
func TestAbandonedAttemptRendering(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	fin := now.Add(time.Second)
	exit := 1
	b := &api.Build{ID: 7, State: api.BuildFailed, Created: now, Finished: &fin, Jobs: []api.JobStatus{{
		ID: "j1", Name: "test", State: api.JobFailed, Worker: "w2", ExitCode: &exit, Error: "exit status 1", Started: &now, Finished: &fin,
		Attempts: []api.Attempt{
			{ID: "a2", Worker: "w2", State: api.AttemptFailed, Started: now, Finished: &fin, ExitCode: &exit},
			{ID: "a1", Worker: "w1", State: api.AttemptAbandoned, Started: now.Add(time.Millisecond), Finished: &fin,
				Error: "worker w1 started it after the coordinator had taken it back to run elsewhere"},
		},
	}}}
	v := makeBuildView(b, fin)
	if got := v.Jobs[0].LastAttempt; got != "a2" {
		t.Errorf("job's log link is attempt %s, want a2 (the failed one, not the abandoned run)", got)
	}
	tmpl, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{tmpl: tmpl, log: logging.Discard()}
	rec := httptest.NewRecorder()
	s.render(rec, httptest.NewRequest("GET", "/builds/7", nil), 200, "build", "build 7", v)
	body := rec.Body.String()
	for _, want := range []string{
		`<span class="st st-abandoned">abandoned</span> on w1: worker w1 started it after the coordinator had taken it back`,
		`<span class="st st-failed">failed</span> on w2`,
		`<a href="/logs/a2?build=7">log</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("build page lacks %q:\n%s", want, body)
		}
	}
}
