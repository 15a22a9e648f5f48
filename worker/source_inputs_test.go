package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/worker"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// listSource is a job that prints every path of its source, sorted, and
// then runs check (a shell command in the source directory).
func listSource(name string, inputs []graph.Input, check string) *graph.Job {
	return &graph.Job{Name: name, SourceMode: graph.SourceInputs, Inputs: inputs,
		Commands: []graph.Command{{Argv: []string{"sh", "-c", "find . | LC_ALL=C sort; " + check}}}}
}

// inputsCluster is an in-process coordinator with one worker, so that
// the worker's inputs checkouts run under the race detector (worker/e2e
// runs the same with separate processes).
type inputsCluster struct {
	t  *testing.T
	cc *api.Client
}

func startInputsCluster(t *testing.T) *inputsCluster {
	t.Helper()
	testenv.NeedTool(t, "sh")
	url := startCoordinator(t)
	wc, _ := api.NewClient(url, workerToken, nil)
	cc, _ := api.NewClient(url, clientToken, nil)
	w, err := worker.New(worker.Options{Client: wc, Dir: t.TempDir(), Slots: 2, DrainTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		w.Close()
	})
	return &inputsCluster{t: t, cc: cc}
}

// run submits g (uploading its files from files when it has any) and
// returns the finished build and the log of each job by name.
func (c *inputsCluster) run(g *graph.Graph, files map[string]string) (*api.Build, map[string]string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := c.cc.SubmitWithFiles(ctx, api.SubmitRequest{Graph: *g}, func(f graph.File) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(files[f.Path])), nil
	})
	if err != nil {
		c.t.Fatalf("submit: %v", err)
	}
	if _, err := c.cc.Wait(ctx, sub.BuildID, nil); err != nil {
		c.t.Fatal(err)
	}
	b, err := c.cc.Build(ctx, sub.BuildID)
	if err != nil {
		c.t.Fatal(err)
	}
	logs := map[string]string{}
	for name, id := range sub.Jobs {
		rc, err := c.cc.JobLog(ctx, id)
		if err != nil {
			continue // a job that never ran has no log
		}
		var buf bytes.Buffer
		io.Copy(&buf, rc)
		rc.Close()
		logs[name] = buf.String()
	}
	return b, logs
}

func jobNamed(b *api.Build, name string) api.JobStatus {
	for _, j := range b.Jobs {
		if j.Name == name {
			return j
		}
	}
	return api.JobStatus{}
}

var inputsRepoFiles = map[string]string{
	"go.mod":             "module example.com/m\n",
	"a/a.go":             "package a\n",
	"a/testdata/x.txt":   "x\n",
	"a/testdata/s/y.txt": "y\n",
	"b/b.go":             "package b\n",
	"secret.txt":         "not an input\n",
}

// TestSourceInputsGit runs source_mode inputs jobs against a real git
// repository: a job sees only its inputs (a directory input with its
// subtree), and a job whose digest describes other content than the
// revision's fails on its first attempt with a message naming the input.
func TestSourceInputsGit(t *testing.T) {
	r := testenv.NewGitRepo(t)
	r.Commit("old", map[string]string{"a/a.go": "package old\n"})
	rev := r.Commit("new", inputsRepoFiles)
	c := startInputsCluster(t)

	files := listSource("files", []graph.Input{
		{Path: "go.mod", Digest: sha256Hex(inputsRepoFiles["go.mod"])},
		{Path: "a/a.go", Digest: sha256Hex(inputsRepoFiles["a/a.go"])},
	}, "cat a/a.go; test ! -e secret.txt")
	dir := listSource("dir", []graph.Input{{Path: "a/testdata", Digest: r.Git("rev-parse", rev+":a/testdata")}}, "cat a/testdata/s/y.txt")
	stale := listSource("stale", []graph.Input{{Path: "a/a.go", Digest: sha256Hex("package old\n")}}, "true")
	// trybot/goplan's jobs (TRYD_GOPLAN_GOVERSION in their env) are no
	// exception: they too get only their inputs.
	goplanEnv := []string{"TRYD_GOPLAN_GOVERSION=go1.x"}
	planned := listSource("planned", []graph.Input{{Path: "a/a.go", Digest: sha256Hex(inputsRepoFiles["a/a.go"])}}, "test ! -e secret.txt")
	planned.Commands[0].Env = goplanEnv
	plannedStale := listSource("planned-stale", []graph.Input{{Path: "a/a.go", Digest: sha256Hex("package old\n")}}, "true")
	plannedStale.Commands[0].Env = goplanEnv
	b, logs := c.run(&graph.Graph{Source: graph.Source{Repo: r.URL(), Revision: rev}, Jobs: []*graph.Job{files, dir, stale, planned, plannedStale}}, nil)
	for _, tc := range []struct {
		job, want string
	}{
		{"files", ".\n./a\n./a/a.go\n./go.mod\npackage a\n"},
		{"planned", ".\n./a\n./a/a.go\n"},
		{"dir", ".\n./a\n./a/testdata\n./a/testdata/s\n./a/testdata/s/y.txt\n./a/testdata/x.txt\ny\n"},
	} {
		if j := jobNamed(b, tc.job); j.State != api.JobSucceeded {
			t.Errorf("job %s: %s (%s)\n%s", tc.job, j.State, j.Error, logs[tc.job])
		} else if !strings.HasPrefix(logs[tc.job], tc.want) {
			t.Errorf("job %s saw:\n%s\nwant:\n%s", tc.job, logs[tc.job], tc.want)
		}
	}
	for _, name := range []string{"stale", "planned-stale"} {
		j := jobNamed(b, name)
		if j.State != api.JobFailed || len(j.Attempts) != 1 {
			t.Errorf("%s job: %s after %d attempts, want failed after 1 (error %q)", name, j.State, len(j.Attempts), j.Error)
		}
		if !strings.Contains(j.Error, `input "a/a.go"`) || !strings.Contains(j.Error, "does not match") {
			t.Errorf("%s job's error %q does not name the input and the mismatch", name, j.Error)
		}
	}
}

// TestSourceInputsUploaded runs a source_mode inputs job on an uploaded
// source: only the manifest's files under its inputs are written.
func TestSourceInputsUploaded(t *testing.T) {
	c := startInputsCluster(t)
	var src graph.Source
	for p, content := range inputsRepoFiles {
		src.Files = append(src.Files, graph.File{Path: p, Digest: sha256Hex(content), Size: int64(len(content))})
	}
	job := listSource("up", []graph.Input{{Path: "b/b.go"}, {Path: "a/testdata"}}, "cat b/b.go")
	b, logs := c.run(&graph.Graph{Source: src, Jobs: []*graph.Job{job}}, inputsRepoFiles)
	want := ".\n./a\n./a/testdata\n./a/testdata/s\n./a/testdata/s/y.txt\n./a/testdata/x.txt\n./b\n./b/b.go\npackage b\n"
	if j := jobNamed(b, "up"); j.State != api.JobSucceeded {
		t.Fatalf("job: %s (%s)\n%s", j.State, j.Error, logs["up"])
	}
	if !strings.HasPrefix(logs["up"], want) {
		t.Errorf("job saw:\n%s\nwant:\n%s", logs["up"], want)
	}
}
