package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker/try"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// env is one test's cluster.
type env struct {
	t    *testing.T
	c    *testcluster.Cluster
	logs *testenv.Buffer
	cl   *api.Client
	dir  string
}

// start starts a coordinator (with extra config YAML) for the test; its
// processes are killed when the test ends, and their logs shown if it
// failed.
func start(t *testing.T, coordYAML string) *env {
	t.Helper()
	testenv.Short(t)
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	logs := &testenv.Buffer{}
	dir := t.TempDir()
	c := testcluster.Start(t, testcluster.Options{Dir: dir, Log: logs, CoordinatorYAML: coordYAML, StopTimeout: -1})
	cl, err := api.NewClient(c.URL, c.ClientToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, c: c, logs: logs, cl: cl, dir: dir}
}

// killCoordinator kills the coordinator with SIGKILL and starts it
// again after outage.
func (e *env) killCoordinator(outage time.Duration) {
	e.t.Helper()
	e.c.Coordinator().Kill()
	time.Sleep(outage)
	e.restartCoordinator()
}

// restartCoordinator starts the coordinator again after a kill.
func (e *env) restartCoordinator() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.c.StartCoordinator(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// worker starts a worker with extra flags (e.g. --slots 2, --label
// pool=x) and waits until the coordinator lists it.
func (e *env) worker(name string, args ...string) *testcluster.Proc {
	e.t.Helper()
	p, err := e.c.StartWorker(name, testcluster.WorkerOptions{Args: args})
	if err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ws, err := e.cl.Workers(context.Background())
		if err == nil {
			for _, w := range ws {
				if w.Name == name && w.Connected {
					return p
				}
			}
		}
		select {
		case <-p.Done():
			e.t.Fatalf("worker %s exited: %v", name, p.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatalf("worker %s never connected", name)
	return nil
}

// submit submits g and returns the build ID and job IDs by name.
func (e *env) submit(g *graph.Graph) (int64, map[string]string) {
	e.t.Helper()
	sub, err := e.cl.Submit(context.Background(), api.SubmitRequest{Graph: *g})
	if err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	return sub.BuildID, sub.Jobs
}

// wait waits for a build to finish.
func (e *env) wait(id int64) *api.Build {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	b, err := e.cl.Wait(ctx, id, nil)
	if err != nil {
		e.t.Fatalf("wait for build %d: %v", id, err)
	}
	return b
}

// run submits and waits.
func (e *env) run(g *graph.Graph) (*api.Build, map[string]string) {
	e.t.Helper()
	id, jobs := e.submit(g)
	return e.wait(id), jobs
}

func jobByName(b *api.Build, name string) api.JobStatus {
	for _, j := range b.Jobs {
		if j.Name == name {
			return j
		}
	}
	return api.JobStatus{}
}

// log returns the log of a job ID.
func (e *env) log(jobID string) string {
	e.t.Helper()
	rc, err := e.cl.JobLog(context.Background(), jobID)
	if err != nil {
		e.t.Fatalf("log of %s: %v", jobID, err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// output unpacks a job's output archive into a new directory.
func (e *env) output(jobID string) string {
	e.t.Helper()
	rc, err := e.cl.JobOutput(context.Background(), jobID)
	if err != nil {
		e.t.Fatalf("output of %s: %v", jobID, err)
	}
	defer rc.Close()
	dir := e.t.TempDir()
	if err := graph.ReadOutputs(rc, dir, graph.OutputLimits{}); err != nil {
		e.t.Fatalf("unpack output of %s: %v", jobID, err)
	}
	return dir
}

func sh(name, script string) *graph.Job {
	return &graph.Job{Name: name, SourceMode: graph.SourceNone, Commands: []graph.Command{{Argv: []string{"sh", "-c", script}}}}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tryd runs the tryd binary (e.g. "try") and returns its combined output
// and exit code.
func tryd(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testenv.TrydBinary(t), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func contains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

// tryWorkTree lists a working tree's files as tryd try does.
func tryWorkTree(dir string) ([]graph.File, func(graph.File) (io.ReadCloser, error), error) {
	return try.WorkTree(context.Background(), dir)
}

// puts returns how many PUT requests the coordinator has answered (all
// of them artifact uploads), from its /metrics.
func (e *env) puts() int {
	e.t.Helper()
	resp, err := http.Get(e.c.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "tryd_http_requests_total{") && strings.Contains(line, `method="PUT"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

// lastLog returns the log of the first job of the newest build.
func (e *env) lastLog() string {
	e.t.Helper()
	bs, err := e.cl.Builds(context.Background(), api.ListOptions{Limit: 1})
	if err != nil || len(bs) == 0 {
		e.t.Fatalf("list builds: %v", err)
	}
	b, err := e.cl.Build(context.Background(), bs[0].ID)
	if err != nil || len(b.Jobs) == 0 || len(b.Jobs[0].Attempts) == 0 {
		e.t.Fatalf("build %d: %v", bs[0].ID, err)
	}
	atts := b.Jobs[0].Attempts
	rc, err := e.cl.AttemptLog(context.Background(), atts[len(atts)-1].ID, 0, false)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	return string(data)
}
