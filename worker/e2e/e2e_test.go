package e2e

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestSingleCommand(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "2")
	j := sh("hello", `echo "to the log"; echo err >&2; mkdir -p "$1/sub"; printf hi > "$1/sub/out.txt"`)
	j.Commands[0].Argv = append(j.Commands[0].Argv, "sh", "{{OUTPUT_DIR}}")
	j.Commands = append(j.Commands, graph.Command{WriteFile: &graph.WriteFile{Path: "w/note.txt", Content: "written"}})
	b, ids := e.run(&graph.Graph{Jobs: []*graph.Job{j}})
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %+v", b.State, b.Jobs)
	}
	contains(t, "log", e.log(ids["hello"]), "to the log\n", "err\n")
	out := e.output(ids["hello"])
	if got := readFile(t, filepath.Join(out, "sub/out.txt")); got != "hi" {
		t.Errorf("output = %q", got)
	}
	if got := readFile(t, filepath.Join(out, "w/note.txt")); got != "written" {
		t.Errorf("write_file output = %q", got)
	}
	// Job directories are cleaned up (just after the result is
	// reported): what stays for reuse is only empty out/ and tmp/.
	jobs := filepath.Join(e.dir, "worker-w1", "jobs")
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		left = nil
		filepath.WalkDir(jobs, func(p string, d fs.DirEntry, err error) error {
			if rel, _ := filepath.Rel(jobs, p); strings.Count(rel, "/") >= 1 && !d.IsDir() || strings.Count(rel, "/") >= 2 {
				left = append(left, rel)
			}
			return nil
		})
		if len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind after the job: %v", left)
	}
}

// gitServer serves a real repository over smart HTTP (git http-backend),
// at <url>/proj.git.
func gitServer(t *testing.T) (url, workTree string) {
	t.Helper()
	git, _ := exec.LookPath("git")
	root := t.TempDir()
	wt := filepath.Join(root, "proj")
	for _, args := range [][]string{{"init", "--quiet", "-b", "main", wt}, {"-C", wt, "config", "user.email", "t@e"}, {"-C", wt, "config", "user.name", "t"}} {
		if out, err := exec.Command(git, args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	h := &cgi.Handler{Path: git, Args: []string{"http-backend"}, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.Replace(r.URL.Path, "/proj.git/", "/proj/.git/", 1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/proj.git", wt
}

func commit(t *testing.T, wt string, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(wt, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "--quiet", "-m", "c"}} {
		if out, err := exec.Command("git", append([]string{"-C", wt}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	out, _ := exec.Command("git", "-C", wt, "rev-parse", "HEAD").Output()
	return strings.TrimSpace(string(out))
}

func TestSourceFromGit(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	url, wt := gitServer(t)
	rev1 := commit(t, wt, map[string]string{"greeting.txt": "hello from git\n"})
	g := func(rev string) *graph.Graph {
		return &graph.Graph{Source: graph.Source{Repo: url, Revision: rev}, Jobs: []*graph.Job{{
			Name:     "cat",
			Commands: []graph.Command{{Argv: []string{"sh", "-c", `cat greeting.txt; cp greeting.txt "$0"/`, "{{OUTPUT_DIR}}"}}},
		}}}
	}
	b, ids := e.run(g(rev1))
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %+v", b.State, b.Jobs)
	}
	contains(t, "log", e.log(ids["cat"]), "hello from git")
	// A new revision arrives by incremental fetch into the same clone.
	rev2 := commit(t, wt, map[string]string{"greeting.txt": "second revision\n"})
	b, ids = e.run(g(rev2))
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %+v", b.State, b.Jobs)
	}
	if got := readFile(t, filepath.Join(e.output(ids["cat"]), "greeting.txt")); got != "second revision\n" {
		t.Errorf("second revision output = %q", got)
	}
}

func TestTryWorkTreeUploadsOnlyMissing(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	// A local working tree with a tracked, an untracked and an ignored file.
	wt := t.TempDir()
	for _, args := range [][]string{{"init", "--quiet"}, {"config", "user.email", "t@e"}, {"config", "user.name", "t"}} {
		exec.Command("git", append([]string{"-C", wt}, args...)...).Run()
	}
	os.WriteFile(filepath.Join(wt, ".gitignore"), []byte("*.o\n"), 0o644)
	os.WriteFile(filepath.Join(wt, "a.txt"), []byte("tracked\n"), 0o644)
	exec.Command("git", "-C", wt, "add", ".").Run()
	exec.Command("git", "-C", wt, "commit", "-qm", "x").Run()
	os.WriteFile(filepath.Join(wt, "b.txt"), []byte("untracked\n"), 0o644)
	os.WriteFile(filepath.Join(wt, "junk.o"), []byte("ignored\n"), 0o644)

	args := []string{"try", "--coordinator", e.c.URL, "--token-file", filepath.Join(e.dir, "client-token"),
		"--run", `cat a.txt b.txt; test ! -e junk.o`}
	out, code := tryd(t, wt, args...)
	if code != 0 {
		t.Fatalf("tryd try exit %d:\n%s", code, out)
	}
	contains(t, "try output", out, "ok    cmd1", "SUCCEEDED")
	contains(t, "job log", e.lastLog(), "tracked\nuntracked\n")
	// Everything is now uploaded: the store is asked and nothing is missing.
	files, _, err := tryWorkTree(wt)
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for _, f := range files {
		digests = append(digests, f.Digest)
	}
	missing, err := e.cl.Missing(context.Background(), digests)
	if err != nil || len(missing) != 0 {
		t.Fatalf("missing after try = %v, %v", missing, err)
	}
	// One file changes: only it is uploaded (counted by the coordinator's
	// PUT requests; the job's empty output is already stored).
	os.WriteFile(filepath.Join(wt, "b.txt"), []byte("changed\n"), 0o644)
	before := e.puts()
	out, code = tryd(t, wt, args...)
	if code != 0 {
		t.Fatalf("tryd try exit %d:\n%s", code, out)
	}
	contains(t, "job log", e.lastLog(), "tracked\nchanged\n")
	if n := e.puts() - before; n != 1 {
		t.Errorf("second try uploaded %d artifacts, want 1 (the changed file)", n)
	}
	// A failing command: non-zero exit and the log tail printed.
	args[len(args)-1] = `echo "something broke"; exit 3`
	out, code = tryd(t, wt, args...)
	if code == 0 {
		t.Fatalf("tryd try of a failing command exited 0:\n%s", out)
	}
	contains(t, "try output", out, "--- FAIL: cmd1", "something broke", "FAILED")
}

func TestArtifactsBetweenJobsAndWorkers(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--label", "pool=a")
	e.worker("w2", "--label", "pool=b")
	gen := sh("gen", `mkdir -p "$0/lib" && printf 'artifact-%s' "$(hostname)" > "$0/lib/data" && ln -s lib/data "$0/link"`)
	gen.Commands[0].Argv = append(gen.Commands[0].Argv, "{{OUTPUT_DIR}}")
	gen.Labels = map[string]string{"pool": "a"}
	use := sh("use", `cat "$0/lib/data" "$0/link" > "$1/copy"`)
	use.Commands[0].Argv = append(use.Commands[0].Argv, "{{DEP:gen}}", "{{OUTPUT_DIR}}")
	use.Deps = []string{"gen"}
	use.Labels = map[string]string{"pool": "b"}
	same := sh("same", `cat "$0/lib/data" > "$1/copy"`)
	same.Commands[0].Argv = append(same.Commands[0].Argv, "{{DEP:gen}}", "{{OUTPUT_DIR}}")
	same.Deps = []string{"gen"}
	same.Labels = map[string]string{"pool": "a"}
	b, ids := e.run(&graph.Graph{Jobs: []*graph.Job{gen, use, same}})
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %+v", b.State, b.Jobs)
	}
	if w := jobByName(b, "use").Worker; w != "w2" {
		t.Errorf("use ran on %q, want w2", w)
	}
	if w := jobByName(b, "gen").Worker; w != "w1" {
		t.Errorf("gen ran on %q, want w1", w)
	}
	host, _ := os.Hostname()
	want := "artifact-" + host
	if got := readFile(t, filepath.Join(e.output(ids["use"]), "copy")); got != want+want {
		t.Errorf("use (other worker) got %q, want %q", got, want+want)
	}
	if got := readFile(t, filepath.Join(e.output(ids["same"]), "copy")); got != want {
		t.Errorf("same (same worker) got %q, want %q", got, want)
	}
}

func TestResultCaching(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	counter := filepath.Join(t.TempDir(), "runs")
	mk := func() *graph.Graph {
		a := sh("a", `echo run >> "$0"; echo A > "$1/a"`)
		a.Commands[0].Argv = append(a.Commands[0].Argv, counter, "{{OUTPUT_DIR}}")
		a.Cacheable = true
		b := sh("b", `echo run >> "$0"; cat "$1/a"`)
		b.Commands[0].Argv = append(b.Commands[0].Argv, counter, "{{DEP:a}}")
		b.Deps, b.Cacheable = []string{"a"}, true
		return &graph.Graph{Jobs: []*graph.Job{a, b}}
	}
	b1, _ := e.run(mk())
	if b1.State != api.BuildSucceeded {
		t.Fatalf("first build %s: %+v", b1.State, b1.Jobs)
	}
	b2, _ := e.run(mk())
	if b2.State != api.BuildSucceeded {
		t.Fatalf("second build %s", b2.State)
	}
	for _, j := range b2.Jobs {
		if j.State != api.JobCached {
			t.Errorf("second build: job %s is %s, want cached", j.Name, j.State)
		}
	}
	if got := strings.Count(readFile(t, counter), "run"); got != 2 {
		t.Errorf("commands ran %d times over two builds, want 2", got)
	}
}

func TestFailurePropagation(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	bad := sh("bad", `echo "about to fail"; exit 3`)
	after := sh("after", `echo never`)
	after.Deps = []string{"bad"}
	ok := sh("ok", `true`)
	b, _ := e.run(&graph.Graph{Jobs: []*graph.Job{bad, after, ok}})
	if b.State != api.BuildFailed {
		t.Fatalf("build %s, want failed", b.State)
	}
	jb := jobByName(b, "bad")
	if jb.State != api.JobFailed || jb.ExitCode == nil || *jb.ExitCode != 3 {
		t.Errorf("bad = %s exit %v", jb.State, jb.ExitCode)
	}
	if s := jobByName(b, "after").State; s != api.JobSkipped {
		t.Errorf("after = %s, want skipped", s)
	}
	if s := jobByName(b, "ok").State; s != api.JobSucceeded {
		t.Errorf("ok = %s, want succeeded", s)
	}
	if n := len(jb.Attempts); n != 1 {
		t.Errorf("a command failure was tried %d times, want 1", n)
	}
}

// waitPid reads a pid written by a job.
func waitPid(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", file)
	return 0
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func waitDead(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("process %d still alive after %v", pid, within)
}

// sleeper is a job whose shell starts a background sleep (a grandchild)
// and records its pid.
func sleeper(name, pidFile string) *graph.Job {
	j := sh(name, `sleep 300 & echo $! > "$0.tmp"; mv "$0.tmp" "$0"; echo started; wait`)
	j.Commands[0].Argv = append(j.Commands[0].Argv, pidFile)
	return j
}

func TestTimeoutKillsProcessTree(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	pidFile := filepath.Join(t.TempDir(), "pid")
	j := sleeper("slow", pidFile)
	j.Timeout = graph.Duration(2 * time.Second)
	t0 := time.Now()
	b, _ := e.run(&graph.Graph{Jobs: []*graph.Job{j}})
	if d := time.Since(t0); d > 60*time.Second {
		t.Errorf("build took %v with a 2s timeout", d)
	}
	js := jobByName(b, "slow")
	if b.State != api.BuildFailed || len(js.Attempts) != 1 || js.Attempts[0].State != api.AttemptTimedOut {
		t.Fatalf("build %s, job %+v; want failed with one timed_out attempt", b.State, js)
	}
	waitDead(t, waitPid(t, pidFile), 10*time.Second)
}

func TestCancelKillsJob(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	pidFile := filepath.Join(t.TempDir(), "pid")
	id, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{sleeper("slow", pidFile)}})
	pid := waitPid(t, pidFile)
	if err := e.cl.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	b := e.wait(id)
	if b.State != api.BuildCancelled {
		t.Errorf("build %s, want cancelled", b.State)
	}
	waitDead(t, pid, 10*time.Second)
}

func TestWorkerKilledJobRerunsElsewhere(t *testing.T) {
	t.Parallel()
	e := start(t, "  heartbeat_timeout: 2s\n")
	w1 := e.worker("w1")
	dir := t.TempDir()
	// The first attempt blocks (and leaves its pid); later ones finish.
	j := sh("job", `if mkdir "$0/first" 2>/dev/null; then sleep 300 & echo $! > "$0/pid.tmp"; echo $$ > "$0/leader.tmp"; mv "$0/leader.tmp" "$0/leader"; mv "$0/pid.tmp" "$0/pid"; wait; fi; echo "ran on attempt"`)
	j.Commands[0].Argv = append(j.Commands[0].Argv, dir)
	id, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{j}})
	pid := waitPid(t, filepath.Join(dir, "pid"))
	defer syscall.Kill(pid, syscall.SIGKILL) // in case the test fails early
	leader := waitPid(t, filepath.Join(dir, "leader"))
	w1.Kill() // SIGKILL: no chance to give the job back
	// Pdeathsig: the job's process dies with its worker.
	waitDead(t, leader, 10*time.Second)
	e.worker("w2")
	b := e.wait(id)
	js := jobByName(b, "job")
	if b.State != api.BuildSucceeded || js.Worker != "w2" {
		t.Fatalf("build %s, job on %q: %+v", b.State, js.Worker, js)
	}
	if len(js.Attempts) != 2 || js.Attempts[0].State != api.AttemptLost || js.Attempts[0].Worker != "w1" {
		t.Errorf("attempts = %+v; want a lost one on w1, then one on w2", js.Attempts)
	}
	// The job's background process outlived its worker; w1, restarted on
	// the same directory, kills it.
	e.worker("w1")
	waitDead(t, pid, 10*time.Second)
}

func TestGracefulShutdownFinishesJobs(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	w1 := e.worker("w1", "--drain", "30s")
	dir := t.TempDir()
	j := sh("job", `touch "$0/started"; sleep 2; echo finished`)
	j.Commands[0].Argv = append(j.Commands[0].Argv, dir)
	id, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{j}})
	deadline := time.Now().Add(60 * time.Second)
	for _, err := os.Stat(filepath.Join(dir, "started")); err != nil && time.Now().Before(deadline); _, err = os.Stat(filepath.Join(dir, "started")) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := w1.Stop(60 * time.Second); err != nil {
		t.Errorf("worker exit after SIGTERM: %v", err)
	}
	b := e.wait(id)
	if b.State != api.BuildSucceeded || jobByName(b, "job").Worker != "w1" {
		t.Fatalf("build %s: %+v", b.State, b.Jobs)
	}
}

func TestCoordinatorRestart(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	dir := t.TempDir()
	j := sh("job", `touch "$0/started"; sleep 3; echo done`)
	j.Commands[0].Argv = append(j.Commands[0].Argv, dir)
	id, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{j}})
	deadline := time.Now().Add(60 * time.Second)
	for _, err := os.Stat(filepath.Join(dir, "started")); err != nil && time.Now().Before(deadline); _, err = os.Stat(filepath.Join(dir, "started")) {
		time.Sleep(20 * time.Millisecond)
	}
	e.killCoordinator(500 * time.Millisecond)
	b := e.wait(id)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s after coordinator restart: %+v", b.State, b.Jobs)
	}
	// And the reconnected worker takes new work.
	b2, _ := e.run(&graph.Graph{Jobs: []*graph.Job{sh("after", "true")}})
	if b2.State != api.BuildSucceeded {
		t.Fatalf("build after restart %s", b2.State)
	}
}

// TestResultDuringCoordinatorOutage: a job finishes (and produces
// outputs) while the coordinator is down; the worker keeps the result,
// re-registers when the coordinator is back and reports it, so the job
// is not run again.
func TestResultDuringCoordinatorOutage(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	dir := t.TempDir()
	j := sh("job", `touch "$0/started"; sleep 1; echo out > "$1/result"; echo finished`)
	j.Commands[0].Argv = append(j.Commands[0].Argv, dir, "{{OUTPUT_DIR}}")
	id, ids := e.submit(&graph.Graph{Jobs: []*graph.Job{j}})
	deadline := time.Now().Add(60 * time.Second)
	for _, err := os.Stat(filepath.Join(dir, "started")); err != nil && time.Now().Before(deadline); _, err = os.Stat(filepath.Join(dir, "started")) {
		time.Sleep(20 * time.Millisecond)
	}
	e.killCoordinator(2500 * time.Millisecond) // the job finishes meanwhile
	b := e.wait(id)
	js := jobByName(b, "job")
	if b.State != api.BuildSucceeded || len(js.Attempts) != 1 {
		t.Fatalf("build %s, attempts %+v; want success with the one attempt", b.State, js.Attempts)
	}
	if got := readFile(t, filepath.Join(e.output(ids["job"]), "result")); got != "out\n" {
		t.Errorf("output = %q", got)
	}
}

func TestBadTokensRefused(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	p, err := e.c.StartWorker(testcluster.BadWorker, testcluster.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		if p.Err() == nil {
			t.Error("worker with an unknown token exited 0")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("worker with an unknown token kept running")
	}
	contains(t, "worker log", e.logs.String(), "refused")
	graphFile := filepath.Join(t.TempDir(), "g.json")
	os.WriteFile(graphFile, []byte(`{"jobs":[{"name":"x","source_mode":"none","commands":[{"argv":["true"]}]}]}`), 0o644)
	out, code := tryd(t, t.TempDir(), "try", "--coordinator", e.c.URL, "--token-file", e.c.TokenFile("bad"), graphFile)
	if code == 0 || !strings.Contains(out, "unauthorized") {
		t.Errorf("try with a bad token: exit %d:\n%s", code, out)
	}
	// A worker token is not a client token.
	out, code = tryd(t, t.TempDir(), "try", "--coordinator", e.c.URL, "--token-file", e.c.TokenFile("w1"), graphFile)
	if code == 0 || !strings.Contains(out, "unauthorized") {
		t.Errorf("try with a worker token: exit %d:\n%s", code, out)
	}
}

// TestManyJobsOneAttemptEach runs a wide graph and a chain of trivial
// jobs on two workers: the protocol (concurrent result reports, a waiting
// long-poll, batched assignments) must not lose any attempt, so every job
// runs exactly once.
func TestManyJobsOneAttemptEach(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--slots", "2")
	e.worker("w2", "--slots", "2")
	g := &graph.Graph{}
	for i := 0; i < 1000; i++ {
		g.Jobs = append(g.Jobs, &graph.Job{Name: "w" + strconv.Itoa(i), SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{"true", strconv.Itoa(i)}}}})
	}
	for i := 0; i < 100; i++ {
		j := &graph.Job{Name: "d" + strconv.Itoa(i), SourceMode: graph.SourceNone,
			Commands: []graph.Command{{Argv: []string{"true", "d" + strconv.Itoa(i)}}}}
		if i > 0 {
			j.Deps = []string{"d" + strconv.Itoa(i-1)}
		}
		g.Jobs = append(g.Jobs, j)
	}
	b, _ := e.run(g)
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %s: %v", b.State, b.Counts)
	}
	for _, j := range b.Jobs {
		if counted(j.Attempts) != 1 {
			t.Errorf("job %s ran %d counted attempts: %+v", j.Name, counted(j.Attempts), j.Attempts)
		}
	}
}

// TestHugeLogTruncated: a job printing more than the coordinator keeps
// gets its log cut at the limit with a marker, and still succeeds.
func TestHugeLogTruncated(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	b, ids := e.run(&graph.Graph{Jobs: []*graph.Job{sh("loud", `head -c 20000000 /dev/zero | tr '\0' x; echo; echo done`)}})
	j := jobByName(b, "loud")
	if b.State != api.BuildSucceeded || len(j.Attempts) != 1 || !j.Attempts[0].LogTruncated {
		t.Fatalf("build %s, job %+v; want success with a truncated log", b.State, j)
	}
	log := e.log(ids["loud"])
	if !strings.HasSuffix(log, "later output was dropped]\n") || strings.Contains(log, "done") {
		t.Errorf("log (%d bytes) ends %q; want the truncation marker", len(log), log[max(0, len(log)-120):])
	}
	if int64(len(log)) != j.Attempts[0].LogBytes {
		t.Errorf("log is %d bytes, attempt says %d", len(log), j.Attempts[0].LogBytes)
	}
}

// TestTryInterruptCancels: ^C on tryd try cancels its build and kills
// the running job.
func TestTryInterruptCancels(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	graphFile := filepath.Join(dir, "g.json")
	os.WriteFile(graphFile, []byte(`{"jobs":[{"name":"slow","source_mode":"none","commands":[{"argv":["sh","-c","sleep 300 & echo $! > `+pidFile+`.tmp; mv `+pidFile+`.tmp `+pidFile+`; wait"]}]}]}`), 0o644)
	cmd := exec.Command(testenv.TrydBinary(t), "try", "--coordinator", e.c.URL, "--token-file", filepath.Join(e.dir, "client-token"), graphFile)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitPid(t, pidFile)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if err == nil {
		t.Errorf("interrupted tryd try exited 0:\n%s", out.String())
	}
	contains(t, "try output", out.String(), "cancelled")
	waitDead(t, pid, 10*time.Second)
	bs, err := e.cl.Builds(context.Background(), api.ListOptions{Limit: 1})
	if err != nil || len(bs) != 1 || bs[0].State != api.BuildCancelled {
		t.Errorf("build after interrupt: %+v, %v", bs, err)
	}
}
