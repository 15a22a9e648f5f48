package postsubmit

import (
	"reflect"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
)

func TestJobStatesLeaveOutInfrastructureFailures(t *testing.T) {
	b := &api.Build{Jobs: []api.JobStatus{
		{Name: "test", State: api.JobFailed, Attempts: []api.Attempt{{State: api.AttemptFailed}}},
		{Name: "slow", State: api.JobFailed, Attempts: []api.Attempt{{State: api.AttemptLost}, {State: api.AttemptTimedOut}}},
		{Name: "lost", State: api.JobFailed, Attempts: []api.Attempt{{State: api.AttemptFailed}, {State: api.AttemptLost}}},
		{Name: "nosource", State: api.JobFailed},
		{Name: "vet", State: api.JobSucceeded},
	}}
	want := map[string]api.JobState{"test": api.JobFailed, "slow": api.JobFailed, "vet": api.JobSucceeded}
	if got := jobStates(b); !reflect.DeepEqual(got, want) {
		t.Errorf("jobStates = %v, want %v", got, want)
	}
}
