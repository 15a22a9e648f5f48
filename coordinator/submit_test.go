package coordinator

import (
	"context"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestCachedJobsSurviveKill9(t *testing.T) { forEachBackend(t, testCachedJobsSurviveKill9) }

// testCachedJobsSurviveKill9: the cached jobs of a submission are part of
// its build once the submit is answered, also when the coordinator is
// killed at once (SQLite keeps them with the build as a job set, other
// stores commit them after the answer, or a restore finds them in the
// result cache), and later, when the finished build is read back from the
// store, each shows the output it reused; so do those of a build that
// was all cached.
func testCachedJobsSurviveKill9(t *testing.T, be backend) {
	testenv.Short(t)
	dir, db := t.TempDir(), be.newDB(t)
	cmd, url := startChild(t, be, dir, db)
	e := &env{t: t, url: url}
	e.client, _ = api.NewClient(url, clientToken, nil)
	w := newTestWorker(t, e, "w1", tokenW1, nil)
	first := e.submit(chainGraph, api.PriorityTry)
	w.drain(e, first.BuildID, nil)
	outputs := map[string]string{}
	for _, j := range e.build(first.BuildID).Jobs {
		outputs[j.Name] = j.OutputDigest
	}

	// vet changes: gen, build and test are cached, vet waits for a worker
	// when the coordinator dies.
	changed := strings.Replace(chainGraph, `["vet"]`, `["vet", "-v"]`, 1)
	sub := e.submit(changed, api.PriorityTry)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	cmd, url = startChild(t, be, dir, db)
	e.url = url
	e.client, _ = api.NewClient(url, clientToken, nil)
	w.c, _ = api.NewClient(url, tokenW1, nil)
	w.register(nil)
	if order := w.drain(e, sub.BuildID, nil); !reflect.DeepEqual(order, []string{"vet"}) {
		t.Errorf("after the restart ran %v, want [vet]", order)
	}
	// All cached: finished when answered, and soon in the database.
	again := e.submit(chainGraph, api.PriorityTry)
	store := be.openDB(t, db)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sb, err := store.Build(context.Background(), again.BuildID)
		if err == nil && sb.State == api.BuildSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("all-cached build in the database: %+v, %v", sb, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	store.Close()
	// Once more, so that the finished builds are read from the store.
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	_, url = startChild(t, be, dir, db)
	e.client, _ = api.NewClient(url, clientToken, nil)
	b := e.build(sub.BuildID)
	if b.State != api.BuildSucceeded || len(b.Jobs) != 4 ||
		!reflect.DeepEqual(b.Counts, map[api.JobState]int{api.JobCached: 3, api.JobSucceeded: 1}) {
		t.Fatalf("build from the store: %s, %d jobs, counts %v", b.State, len(b.Jobs), b.Counts)
	}
	for _, j := range b.Jobs {
		switch {
		case j.Name == "vet":
			if j.State != api.JobSucceeded || j.OutputDigest == "" || len(j.Attempts) != 1 {
				t.Errorf("vet: %+v", j)
			}
		case j.State != api.JobCached || j.OutputDigest != outputs[j.Name] || j.Finished == nil || len(j.Attempts) != 0:
			t.Errorf("%s: %+v, want cached with output %s", j.Name, j, outputs[j.Name])
		}
	}
	b2 := e.build(again.BuildID)
	if b2.State != api.BuildSucceeded || len(b2.Jobs) != 4 || !reflect.DeepEqual(b2.Counts, map[api.JobState]int{api.JobCached: 4}) {
		t.Fatalf("cached build from the store: %s, %d jobs, counts %v", b2.State, len(b2.Jobs), b2.Counts)
	}
	for _, j := range b2.Jobs {
		if j.OutputDigest != outputs[j.Name] || j.Finished == nil {
			t.Errorf("%s: %+v, want cached with output %s", j.Name, j, outputs[j.Name])
		}
	}
	bs, err := e.client.Builds(context.Background(), api.ListOptions{Limit: 2})
	if err != nil || len(bs) != 2 || bs[0].ID != again.BuildID || !reflect.DeepEqual(bs[0].Counts, b2.Counts) ||
		bs[1].ID != sub.BuildID || !reflect.DeepEqual(bs[1].Counts, b.Counts) {
		t.Errorf("build list: %+v, %v; want counts %v and %v", bs, err, b2.Counts, b.Counts)
	}
}
