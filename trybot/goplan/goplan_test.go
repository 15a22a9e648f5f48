package goplan_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot/goplan"
)

// module is a small real module: a leaf a, b importing a, c importing b
// (with an external test importing a), an independent d whose test
// reads ../testdata (outside its package, as klauspost/compress's tests
// do), and a command at the root importing c, with a test (in a
// worktree checkout, the root directory also holds the .git file).
var module = map[string]string{
	"go.mod":       "module example.com/m\n\ngo 1.21\n",
	"a/a.go":       "package a\n\nfunc A() int { return 1 }\n",
	"a/a_test.go":  "package a\n\nimport \"testing\"\n\nfunc TestA(t *testing.T) {\n\tif A() != 1 {\n\t\tt.Fatal(A())\n\t}\n}\n",
	"b/b.go":       "package b\n\nimport \"example.com/m/a\"\n\nfunc B() int { return a.A() + 1 }\n",
	"c/c.go":       "package c\n\nimport \"example.com/m/b\"\n\nfunc C() int { return b.B() + 1 }\n",
	"c/c_test.go":  "package c_test\n\nimport (\n\t\"testing\"\n\n\t\"example.com/m/a\"\n\t\"example.com/m/c\"\n)\n\nfunc TestC(t *testing.T) {\n\tif c.C() != a.A()+2 {\n\t\tt.Fatal(c.C())\n\t}\n}\n",
	"c/testdata/x": "golden\n",
	"d/d.go":       "package d\n\n// D is independent.\nfunc D() string { return \"d\" }\n",
	"d/d_test.go":  "package d\n\nimport \"testing\"\n\nfunc TestD(t *testing.T) {\n\tif D() != \"d\" {\n\t\tt.Fatal(D())\n\t}\n}\n",
	"d/shared_test.go": "package d\n\nimport (\n\t\"os\"\n\t\"strings\"\n\t\"testing\"\n)\n\n" +
		"func TestShared(t *testing.T) {\n\tb, err := os.ReadFile(\"../testdata/shared.txt\")\n" +
		"\tif err != nil || !strings.HasPrefix(string(b), \"shared\") {\n\t\tt.Fatalf(\"%q, %v\", b, err)\n\t}\n}\n",
	"testdata/shared.txt": "shared\n",
	"main.go":             "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/m/c\"\n)\n\nfunc main() { fmt.Println(c.C()) }\n",
	"main_test.go":        "package main\n\nimport \"testing\"\n\nfunc TestRun(t *testing.T) { main() }\n",
	"README":              "not go\n",
}

// runBuild submits the planner graph of rev and waits for the build,
// returning the job states by name (the planner included).
func runBuild(t *testing.T, cc *api.Client, repo, rev string) map[string]api.JobState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := graph.Graph{Source: graph.Source{Repo: repo, Revision: rev},
		Jobs: []*graph.Job{goplan.PlannerJob(goplan.PlannerOptions{Timeout: 5 * time.Minute})}}
	resp, err := cc.Submit(ctx, api.SubmitRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cc.Wait(ctx, resp.BuildID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.State != api.BuildSucceeded {
		t.Fatalf("build %d: %s (%s); jobs %+v", b.ID, b.State, b.Error, b.Jobs)
	}
	states := map[string]api.JobState{}
	for _, j := range b.Jobs {
		states[j.Name] = j.State
	}
	return states
}

// ran returns the names of jobs that ran (not cached), sorted, planner
// left out.
func ran(states map[string]api.JobState) (run []string, cached int) {
	for name, s := range states {
		switch {
		case name == "plan":
		case s == api.JobCached:
			cached++
		default:
			run = append(run, name)
		}
	}
	sort.Strings(run)
	return run, cached
}

func TestIncremental(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "go")
	cc := startStack(t, 2)
	repo := newRepo(t)
	rev1 := repo.Commit("first", module)

	states := runBuild(t, cc, repo.URL(), rev1)
	run, cached := ran(states)
	want := []string{
		"test example.com/m", "test example.com/m/a", "test example.com/m/c", "test example.com/m/d",
		"vet example.com/m", "vet example.com/m/a", "vet example.com/m/b", "vet example.com/m/c", "vet example.com/m/d",
	}
	if strings.Join(run, ",") != strings.Join(want, ",") || cached != 0 {
		t.Fatalf("cold build ran %q, %d cached; want %q and none cached", run, cached, want)
	}

	tests := []struct {
		name       string
		files      map[string]string
		wantRun    []string
		wantCached int
	}{
		{
			name:       "leaf package d changed",
			files:      map[string]string{"d/d.go": "package d\n\n// D is still independent.\nfunc D() string { return \"d\" }\n"},
			wantRun:    []string{"test example.com/m/d", "vet example.com/m/d"},
			wantCached: 7,
		},
		{
			// Any test may read any file that is not Go source: every
			// test reruns (the planner's conservative trade-off); no
			// vet job does.
			name:       "file outside packages",
			files:      map[string]string{"README": "still not go\n"},
			wantRun:    []string{"test example.com/m", "test example.com/m/a", "test example.com/m/c", "test example.com/m/d"},
			wantCached: 5,
		},
		{
			name:       "root testdata, which d's test reads as ../testdata",
			files:      map[string]string{"testdata/shared.txt": "shared 2\n"},
			wantRun:    []string{"test example.com/m", "test example.com/m/a", "test example.com/m/c", "test example.com/m/d"},
			wantCached: 5,
		},
		{
			name:       "Go file of c: d's test stays cached",
			files:      map[string]string{"c/c.go": "package c\n\nimport \"example.com/m/b\"\n\n// C is three.\nfunc C() int { return b.B() + 1 }\n"},
			wantRun:    []string{"test example.com/m", "test example.com/m/c", "vet example.com/m", "vet example.com/m/c"},
			wantCached: 5,
		},
		{
			name:  "a changed: everything importing it reruns",
			files: map[string]string{"a/a.go": "package a\n\n// A is one.\nfunc A() int { return 1 }\n"},
			wantRun: []string{"test example.com/m", "test example.com/m/a", "test example.com/m/c",
				"vet example.com/m", "vet example.com/m/a", "vet example.com/m/b", "vet example.com/m/c"},
			wantCached: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev := repo.Commit(tc.name, tc.files)
			run, cached := ran(runBuild(t, cc, repo.URL(), rev))
			if strings.Join(run, ",") != strings.Join(tc.wantRun, ",") || cached != tc.wantCached {
				t.Errorf("ran %q with %d cached; want %q with %d cached", run, cached, tc.wantRun, tc.wantCached)
			}
		})
	}
}

func TestFailingPackage(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "go")
	cc := startStack(t, 2)
	repo := newRepo(t)
	files := map[string]string{}
	for k, v := range module {
		files[k] = v
	}
	files["d/d_test.go"] = "package d\n\nimport \"testing\"\n\nfunc TestD(t *testing.T) { t.Fatal(\"broken\") }\n"
	rev := repo.Commit("broken d", files)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := graph.Graph{Source: graph.Source{Repo: repo.URL(), Revision: rev},
		Jobs: []*graph.Job{goplan.PlannerJob(goplan.PlannerOptions{})}}
	resp, err := cc.Submit(ctx, api.SubmitRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cc.Wait(ctx, resp.BuildID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, j := range b.Jobs {
		if j.State == api.JobFailed {
			failed = append(failed, j.Name)
		}
	}
	if b.State != api.BuildFailed || strings.Join(failed, ",") != "test example.com/m/d" {
		t.Errorf("build %s with failed jobs %q; want failed with only test example.com/m/d", b.State, failed)
	}
}

func TestTemplateFile(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "go")
	cc := startStack(t, 2)
	repo := newRepo(t)
	files := map[string]string{}
	for k, v := range module {
		files[k] = v
	}
	files[".tryd.yaml"] = "steps:\n  - name: gen\n    shell: test -f go.mod\n  - name: check\n    run: [sh, -c, 'test -f a/a.go']\n"
	rev := repo.Commit("template", files)
	states := runBuild(t, cc, repo.URL(), rev)
	if len(states) != 3 || states["gen"] != api.JobSucceeded || states["check"] != api.JobSucceeded {
		t.Errorf("jobs %v, want plan, gen and check, succeeded", states)
	}

	// A broken template fails the planner, with the reason in its log.
	files[".tryd.yaml"] = "steps:\n  - nme: x\n"
	rev = repo.Commit("broken template", files)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cc.Submit(ctx, api.SubmitRequest{Graph: graph.Graph{Source: graph.Source{Repo: repo.URL(), Revision: rev},
		Jobs: []*graph.Job{goplan.PlannerJob(goplan.PlannerOptions{})}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cc.Wait(ctx, resp.BuildID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.State != api.BuildFailed {
		t.Fatalf("build %s, want failed", b.State)
	}
	rc, err := cc.JobLog(ctx, b.Jobs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	log, _ := io.ReadAll(rc)
	if !strings.Contains(string(log), "nme") {
		t.Errorf("planner log does not name the bad field:\n%s", log)
	}
}

// shardModule has eight packages with tests, more jobs per package than
// DefaultMaxPackageJobs, so it is planned in DefaultShards shards of two
// packages each: p0 p1, p2 p3, p4 p5, p6 p7; p1 and p5 import p0.
func shardModule() map[string]string {
	files := map[string]string{"go.mod": "module example.com/s\n\ngo 1.21\n"}
	for i := range 8 {
		p := fmt.Sprintf("p%d", i)
		imp, val := "", "1"
		if i == 1 || i == 5 {
			imp, val = "import \"example.com/s/p0\"\n\n", "p0.V() + 1"
		}
		files[p+"/"+p+".go"] = fmt.Sprintf("package %s\n\n%s// V is a value.\nfunc V() int { return %s }\n", p, imp, val)
		files[p+"/"+p+"_test.go"] = fmt.Sprintf("package %s\n\nimport \"testing\"\n\nfunc TestV(t *testing.T) {\n\tif V() < 1 {\n\t\tt.Fatal(V())\n\t}\n}\n", p)
	}
	return files
}

func TestShardedIncremental(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "go")
	cc := startStack(t, 2)
	repo := newRepo(t)
	shard := func(a, b int) string { return fmt.Sprintf("test example.com/s/p%d example.com/s/p%d", a, b) }

	run, cached := ran(runBuild(t, cc, repo.URL(), repo.Commit("first", shardModule())))
	want := []string{shard(0, 1), shard(2, 3), shard(4, 5), shard(6, 7)}
	if !slices.Equal(run, want) || cached != 0 {
		t.Fatalf("cold build ran %q, %d cached; want %q and none cached", run, cached, want)
	}
	tests := []struct {
		name       string
		file       string
		wantRun    []string
		wantCached int
	}{
		{"leaf p7 changed: its shard", "p7/p7.go", []string{shard(6, 7)}, 3},
		{"p0 changed: its shard and p5's", "p0/p0.go", []string{shard(0, 1), shard(4, 5)}, 2},
		// Every shard runs tests, and any test may read any file that is
		// not Go source.
		{"new file outside packages: every shard", "NOTES", []string{shard(0, 1), shard(2, 3), shard(4, 5), shard(6, 7)}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old, _ := os.ReadFile(filepath.Join(repo.Dir, tc.file))
			rev := repo.Commit(tc.name, map[string]string{tc.file: string(old) + "\n// " + tc.name + "\n"})
			run, cached := ran(runBuild(t, cc, repo.URL(), rev))
			if !slices.Equal(run, tc.wantRun) || cached != tc.wantCached {
				t.Errorf("ran %q with %d cached; want %q with %d cached", run, cached, tc.wantRun, tc.wantCached)
			}
		})
	}

	// A vet failure in a package without tests fails its shard: go test
	// -vet=all vets every package of the shard.
	files := shardModule()
	delete(files, "p3/p3_test.go")
	files["p3/p3.go"] = "package p3\n\nimport \"fmt\"\n\n// V is a value.\nfunc V() int { fmt.Printf(\"%d\\n\", \"x\"); return 1 }\n"
	os.Remove(filepath.Join(repo.Dir, "p3/p3_test.go"))
	rev := repo.Commit("vet failure", files)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := cc.Submit(ctx, api.SubmitRequest{Graph: graph.Graph{Source: graph.Source{Repo: repo.URL(), Revision: rev},
		Jobs: []*graph.Job{goplan.PlannerJob(goplan.PlannerOptions{})}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cc.Wait(ctx, resp.BuildID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, j := range b.Jobs {
		if j.State == api.JobFailed {
			failed = append(failed, j.Name)
		}
	}
	if b.State != api.BuildFailed || !slices.Equal(failed, []string{shard(2, 3)}) {
		t.Errorf("build %s with failed jobs %q; want failed with only %q", b.State, failed, shard(2, 3))
	}
}

// TestRunInputs plans module in two worktree checkouts of one revision,
// in different directories, where .git is a file naming the worktree:
// every job gets the same ID in both (nothing of .git is an input), d's
// test lists the ../testdata file it reads, and no vet job lists data.
func TestRunInputs(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "go")
	repo := newRepo(t)
	rev := repo.Commit("first", module)
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	var ids []map[string]string
	var last *graph.Graph
	for _, name := range []string{"one", "two"} {
		dir := filepath.Join(t.TempDir(), name)
		repo.Git("worktree", "add", "--detach", dir, rev)
		if st, err := os.Lstat(filepath.Join(dir, ".git")); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("worktree %s: .git is not a file: %v", dir, err)
		}
		g, err := goplan.Run(context.Background(), dir, "", env, goplan.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, j := range g.Jobs {
			m[j.Name] = graph.ComputeID(j, "")
			for _, in := range j.Inputs {
				if in.Path == ".git" || strings.HasPrefix(in.Path, ".git/") {
					t.Errorf("job %q lists %s", j.Name, in.Path)
				}
			}
		}
		ids, last = append(ids, m), g
	}
	if len(ids[0]) != 9 || !reflect.DeepEqual(ids[0], ids[1]) {
		t.Errorf("job IDs differ between checkouts:\n%v\n%v", ids[0], ids[1])
	}
	has := func(job, path string) bool {
		j := last.Job(job)
		if j == nil {
			t.Fatalf("no job %q", job)
		}
		return slices.ContainsFunc(j.Inputs, func(in graph.Input) bool { return in.Path == path })
	}
	tests := []struct {
		job, path string
		want      bool
	}{
		{"test example.com/m/d", "testdata/shared.txt", true},
		{"test example.com/m/d", "README", true},
		{"test example.com/m/d", "c/c.go", false},
		{"test example.com/m/a", "c/testdata/x", true},
		{"vet example.com/m/d", "testdata/shared.txt", false},
		{"vet example.com/m/d", "d/shared_test.go", true},
		{"vet example.com/m", "c/c.go", true},
		{"test example.com/m", "main_test.go", true},
	}
	for _, tc := range tests {
		if got := has(tc.job, tc.path); got != tc.want {
			t.Errorf("job %q lists %s: %v, want %v", tc.job, tc.path, got, tc.want)
		}
	}
}
