package goplan

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
)

const goodList = `{"ImportPath":"fmt","Standard":true}
{"ImportPath":"example.com/other","Dir":"/mod/other","Module":{"Path":"example.com/other","Dir":"/mod/other"}}
{"ImportPath":"example.com/m/a","Dir":"/src/a","Module":{"Path":"example.com/m","Main":true,"Dir":"/src"},"GoFiles":["a.go"],"Imports":["fmt"]}
{"ImportPath":"example.com/m","Dir":"/src","Module":{"Path":"example.com/m","Main":true,"Dir":"/src"},"GoFiles":["m.go"],"TestGoFiles":["m_test.go"]}
{"ImportPath":"example.com/m/b","Dir":"/src/b","Module":{"Path":"example.com/m","Main":true,"Dir":"/src"},"GoFiles":["b.go"],"TestGoFiles":["b_test.go"],"TestEmbedFiles":["testdata/deep/gold"],"Imports":["example.com/m/a"],"TestImports":["testing"]}
`

func TestParseList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{name: "good", in: goodList, want: 3},
		{name: "empty", in: "", want: 0},
		{name: "truncated", in: `{"ImportPath":"x"`, wantErr: "package 0"},
		{name: "not an object", in: `[1,2]`, wantErr: "package 0"},
		{name: "duplicate", in: `{"ImportPath":"m","Dir":"/s","Module":{"Main":true,"Dir":"/s"}}{"ImportPath":"m","Dir":"/s","Module":{"Main":true,"Dir":"/s"}}`, wantErr: "listed twice"},
		{name: "file escapes", in: `{"ImportPath":"m","Dir":"/s","Module":{"Main":true,"Dir":"/s"},"GoFiles":["../x.go"]}`, wantErr: "bad file name"},
		{name: "absolute file", in: `{"ImportPath":"m","Dir":"/s","Module":{"Main":true,"Dir":"/s"},"GoFiles":["/etc/passwd"]}`, wantErr: "bad file name"},
		{name: "braces in path", in: `{"ImportPath":"m{{x}}","Dir":"/s","Module":{"Main":true,"Dir":"/s"}}`, wantErr: "bad import path"},
		{name: "no dir", in: `{"ImportPath":"m","Module":{"Main":true,"Dir":"/s"}}`, wantErr: "no directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkgs, err := ParseList(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadList) {
					t.Fatalf("err = %v, want ErrBadList containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(pkgs) != tc.want {
				t.Fatalf("got %d packages, %v; want %d", len(pkgs), err, tc.want)
			}
		})
	}
}

// testFS is the module goodList describes, as a planner's worktree
// checkout sees it: a .git file at the root, a .git directory below,
// testdata at the root and a symbolic link in b's testdata.
func testFS() fstest.MapFS {
	return fstest.MapFS{
		"go.mod":                {Data: []byte("module example.com/m\n")},
		"go.sum":                {Data: []byte("")},
		"m.go":                  {Data: []byte("package m\n")},
		"m_test.go":             {Data: []byte("package m\n")},
		"a/a.go":                {Data: []byte("package a\n")},
		"b/b.go":                {Data: []byte("package b\n")},
		"b/b_test.go":           {Data: []byte("package b\n")},
		"b/testdata/deep/gold":  {Data: []byte("x")},
		"b/testdata/link":       {Data: []byte("../../testdata/root.txt"), Mode: fs.ModeSymlink},
		"b/notes.txt":           {Data: []byte("n")},
		"b/sub/unrelated.go":    {Data: []byte("package sub\n")},
		"a/testdata/ignored.go": {Data: []byte("x")},
		"testdata/root.txt":     {Data: []byte("read by ../testdata")},
		".git":                  {Data: []byte("gitdir: /w/.git/worktrees/p1\n")},
		"x/.GIT/HEAD":           {Data: []byte("ref: refs/heads/main\n")},
	}
}

// Inputs of the jobs of goodList over testFS: every test job reads the
// module's data (every file but the Go source of packages and .git).
const (
	dataInputs = "a/testdata/ignored.go b/notes.txt b/testdata/deep/gold b/testdata/link go.mod go.sum testdata/root.txt"
	rootInputs = "a/testdata/ignored.go b/notes.txt b/testdata/deep/gold b/testdata/link go.mod go.sum m.go m_test.go testdata/root.txt"
	bInputs    = "a/a.go a/testdata/ignored.go b/b.go b/b_test.go b/notes.txt b/testdata/deep/gold b/testdata/link go.mod go.sum testdata/root.txt"
	vetMInputs = "go.mod go.sum m.go m_test.go"
	vetAInputs = "a/a.go go.mod go.sum"
	vetBInputs = "a/a.go b/b.go b/b_test.go b/testdata/deep/gold go.mod go.sum"
)

func TestPlan(t *testing.T) {
	pkgs, err := ParseList(strings.NewReader(goodList))
	if err != nil {
		t.Fatal(err)
	}
	g, err := Plan(pkgs, "/src", testFS(), Options{GoVersion: "go1.99", TestFlags: []string{"-short"}})
	if err != nil {
		t.Fatal(err)
	}
	inputs := func(j *graph.Job) string {
		var p []string
		for _, in := range j.Inputs {
			p = append(p, in.Path)
		}
		return strings.Join(p, " ")
	}
	tests := []struct {
		job, inputs, deps, argv string
	}{
		{"vet example.com/m/a", vetAInputs, "", "go vet -trimpath ./a"},
		{"vet example.com/m/b", vetBInputs, "vet example.com/m/a", "go vet -trimpath ./b"},
		{"test example.com/m/b", bInputs, "vet example.com/m/b", "go test -trimpath -short ./b"},
		{"vet example.com/m", vetMInputs, "", "go vet -trimpath ."},
		{"test example.com/m", rootInputs, "vet example.com/m", "go test -trimpath -short ."},
	}
	if len(g.Jobs) != len(tests) {
		t.Fatalf("%d jobs, want %d", len(g.Jobs), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.job, func(t *testing.T) {
			j := g.Job(tc.job)
			if j == nil {
				t.Fatal("missing")
			}
			if got := inputs(j); got != tc.inputs {
				t.Errorf("inputs %q, want %q", got, tc.inputs)
			}
			if got := strings.Join(j.Deps, ","); got != tc.deps {
				t.Errorf("deps %q, want %q", got, tc.deps)
			}
			if got := strings.Join(j.Commands[0].Argv, " "); got != tc.argv {
				t.Errorf("argv %q, want %q", got, tc.argv)
			}
		})
	}
	// The fragment must splice into a build.
	b := &graph.Graph{Source: graph.Source{Repo: "https://m/x.git", Revision: strings.Repeat("a", 40)},
		Jobs: []*graph.Job{PlannerJob(PlannerOptions{})}}
	if err := b.Normalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Splice(b.Jobs[0], g); err != nil {
		t.Fatalf("splice: %v", err)
	}
}

func TestPlanRefusesOutsideDir(t *testing.T) {
	list := `{"ImportPath":"example.com/m/a","Dir":"/elsewhere/a","Module":{"Path":"example.com/m","Main":true,"Dir":"/src"},"GoFiles":["a.go"]}`
	pkgs, err := ParseList(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Plan(pkgs, "/src", testFS(), Options{}); !errors.Is(err, ErrBadList) {
		t.Fatalf("err = %v, want ErrBadList", err)
	}
}

func FuzzParseList(f *testing.F) {
	f.Add(goodList)
	f.Add(`{"ImportPath":"m","Dir":"/s","Module":{"Main":true,"Dir":"/s"},"GoFiles":["x.go"]}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, in string) {
		pkgs, err := ParseList(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses must plan or fail cleanly, never panic.
		_, _ = Plan(pkgs, "/src", testFS(), Options{})
		_, _ = Plan(pkgs, "/src", testFS(), Options{MaxPackageJobs: 1, Shards: 2})
	})
}

type fixedPlanner struct{}

func (fixedPlanner) Plan(builder string, src graph.Source) (*graph.Graph, error) {
	return &graph.Graph{Source: src, Jobs: []*graph.Job{{Name: "plain " + builder}}}, nil
}

func TestWithGoPlanner(t *testing.T) {
	p := WithGoPlanner([]config.Builder{
		{Name: "gobot", Planner: "go", Labels: map[string]string{"os": "linux"}},
		{Name: "steps", Steps: []config.Step{{Shell: "true"}}},
	}, fixedPlanner{})
	src := graph.Source{Repo: "https://m/x.git", Revision: strings.Repeat("a", 40)}
	tests := []struct{ builder, firstJob string }{
		{"gobot", "plan"},
		{"steps", "plain steps"},
	}
	for _, tc := range tests {
		t.Run(tc.builder, func(t *testing.T) {
			g, err := p.Plan(tc.builder, src)
			if err != nil || g.Jobs[0].Name != tc.firstJob {
				t.Fatalf("Plan = %+v, %v", g, err)
			}
		})
	}
	g, _ := p.Plan("gobot", src)
	j := g.Jobs[0]
	if !j.Planner || j.Labels["os"] != "linux" || j.Timeout != graph.Duration(DefaultJobTimeout) || g.Normalize() != nil {
		t.Errorf("planner job %+v", j)
	}
}

func TestPlanShards(t *testing.T) {
	pkgs, err := ParseList(strings.NewReader(goodList))
	if err != nil {
		t.Fatal(err)
	}
	// Weights (1 + files): m 3, a 2, b 3; two shards cut at 4 of 8.
	tests := []struct {
		name string
		opts Options
		want []string // per job: name | inputs | argv of each command
	}{
		{
			name: "small module planned per package",
			opts: Options{},
			want: []string{
				"vet example.com/m|" + vetMInputs + "|go vet -trimpath .",
				"vet example.com/m/a|" + vetAInputs + "|go vet -trimpath ./a",
				"vet example.com/m/b|" + vetBInputs + "|go vet -trimpath ./b",
				"test example.com/m|" + rootInputs + "|go test -trimpath -short .",
				"test example.com/m/b|" + bInputs + "|go test -trimpath -short ./b",
			},
		},
		{
			name: "two shards",
			opts: Options{MaxPackageJobs: 4, Shards: 2},
			want: []string{
				"test example.com/m|" + rootInputs + "|go test -trimpath -vet=all -short .",
				"test example.com/m/a example.com/m/b|" + bInputs + "|go test -trimpath -vet=all -short ./a ./b",
			},
		},
		{
			name: "more shards than packages",
			opts: Options{MaxPackageJobs: 1, Shards: 10},
			want: []string{
				"test example.com/m|" + rootInputs + "|go test -trimpath -vet=all -short .",
				"test example.com/m/a|" + vetAInputs + "|go test -trimpath -vet=all -short ./a",
				"test example.com/m/b|" + bInputs + "|go test -trimpath -vet=all -short ./b",
			},
		},
		{
			name: "vet flags: vet then test without vet",
			opts: Options{MaxPackageJobs: 1, Shards: 1, VetFlags: []string{"-printf=false"}},
			want: []string{
				"test example.com/m example.com/m/a example.com/m/b|a/a.go a/testdata/ignored.go b/b.go b/b_test.go b/notes.txt b/testdata/deep/gold b/testdata/link go.mod go.sum m.go m_test.go testdata/root.txt|go vet -trimpath -printf=false . ./a ./b|go test -trimpath -vet=off -short . ./a ./b",
			},
		},
		{
			name: "no tests",
			opts: Options{MaxPackageJobs: 2, Shards: 2, NoTests: true},
			want: []string{
				// Weights without tests: m 2, a 2, b 2; cut at 3 of 6.
				"vet example.com/m|" + vetMInputs + "|go vet -trimpath .",
				"vet example.com/m/a example.com/m/b|" + vetBInputs + "|go vet -trimpath ./a ./b",
			},
		},
		{
			name: "per package forced",
			opts: Options{MaxPackageJobs: -1, Shards: 1},
			want: []string{
				"vet example.com/m|" + vetMInputs + "|go vet -trimpath .",
				"vet example.com/m/a|" + vetAInputs + "|go vet -trimpath ./a",
				"vet example.com/m/b|" + vetBInputs + "|go vet -trimpath ./b",
				"test example.com/m|" + rootInputs + "|go test -trimpath -short .",
				"test example.com/m/b|" + bInputs + "|go test -trimpath -short ./b",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.GoVersion, opts.TestFlags = "go1.99", []string{"-short"}
			g, err := Plan(pkgs, "/src", testFS(), opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, j := range g.Jobs {
				var in []string
				for _, i := range j.Inputs {
					in = append(in, i.Path)
				}
				s := j.Name + "|" + strings.Join(in, " ")
				for _, c := range j.Commands {
					s += "|" + strings.Join(c.Argv, " ")
				}
				got = append(got, s)
				if tc.opts.MaxPackageJobs > 0 && len(j.Deps) > 0 {
					t.Errorf("shard %q has dependencies %q", j.Name, j.Deps)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("jobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			b := &graph.Graph{Source: graph.Source{Repo: "https://m/x.git", Revision: strings.Repeat("a", 40)},
				Jobs: []*graph.Job{PlannerJob(PlannerOptions{})}}
			if err := b.Normalize(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Splice(b.Jobs[0], g); err != nil {
				t.Fatalf("splice: %v", err)
			}
		})
	}
}

// TestShardIDs checks that a shard's ID follows its inputs: an edit
// changes the IDs of exactly the shards that read the edited file, and
// leaves every package in its shard.
func TestShardIDs(t *testing.T) {
	pkgs, err := ParseList(strings.NewReader(goodList))
	if err != nil {
		t.Fatal(err)
	}
	plan := func(fsys fstest.MapFS) map[string]string {
		t.Helper()
		g, err := Plan(pkgs, "/src", fsys, Options{GoVersion: "go1.99", MaxPackageJobs: 1, Shards: 2})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, j := range g.Jobs {
			ids[j.Name] = graph.ComputeID(j, "")
		}
		return ids
	}
	base := plan(testFS())
	tests := []struct {
		name, file string
		changed    []string
	}{
		{"root file", "m.go", []string{"test example.com/m"}},
		{"leaf a: its shard (b imports a)", "a/a.go", []string{"test example.com/m/a example.com/m/b"}},
		{"testdata of b: every test (any test may read it)", "b/testdata/deep/gold", []string{"test example.com/m", "test example.com/m/a example.com/m/b"}},
		{"root testdata: every test", "testdata/root.txt", []string{"test example.com/m", "test example.com/m/a example.com/m/b"}},
		{"go.mod: everything", "go.mod", []string{"test example.com/m", "test example.com/m/a example.com/m/b"}},
		{"Go file of no package", "b/sub/unrelated.go", nil},
		{"the worktree's .git file", ".git", nil},
		{"a .git directory", "x/.GIT/HEAD", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := testFS()
			fsys[tc.file] = &fstest.MapFile{Data: append(slices.Clone(fsys[tc.file].Data), "// edited\n"...)}
			ids := plan(fsys)
			var changed []string
			for name, id := range ids {
				if _, ok := base[name]; !ok {
					t.Fatalf("shard %q is new: packages moved between shards", name)
				}
				if id != base[name] {
					changed = append(changed, name)
				}
			}
			slices.Sort(changed)
			if !slices.Equal(changed, tc.changed) {
				t.Errorf("changed shards %q, want %q", changed, tc.changed)
			}
		})
	}
}
