package graph

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const rev = "0123456789abcdef0123456789abcdef01234567"

func TestParseValid(t *testing.T) {
	g, err := Parse([]byte(`{
		"source": {"repo": "https://mirror.example/x.git", "revision": "` + rev + `"},
		"jobs": [
			{"name": "gen", "commands": [{"write_file": {"path": "a.txt", "content": "hi"}}], "cacheable": true},
			{"name": "build", "deps": ["gen"], "timeout": "10m", "labels": {"os": "linux"},
			 "commands": [{"argv": ["cp", "{{DEP:gen}}/a.txt", "{{OUTPUT_DIR}}/b"], "env": ["X=1"]}]}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	gen, build := g.Job("gen"), g.Job("build")
	if !IsID(gen.ID) || !IsID(build.ID) {
		t.Fatalf("ids not computed: %q %q", gen.ID, build.ID)
	}
	if build.Deps[0] != gen.ID {
		t.Errorf("dep not rewritten to ID: %v", build.Deps)
	}
	if want := "{{DEP:" + gen.ID + "}}/a.txt"; build.Commands[0].Argv[1] != want {
		t.Errorf("placeholder = %q, want %q", build.Commands[0].Argv[1], want)
	}
	// Normalizing again (IDs now stated) must accept the graph unchanged.
	again := &Graph{Source: g.Source, Jobs: []*Job{gen.Clone(), build.Clone()}}
	if err := again.Normalize(); err != nil {
		t.Fatalf("renormalize: %v", err)
	}
	if again.Jobs[1].ID != build.ID {
		t.Errorf("ID not stable")
	}
}

func TestIDsFollowContent(t *testing.T) {
	mk := func(mut func(j *Job), src Source) string {
		j := &Job{Name: "j", Commands: []Command{{Argv: []string{"true"}}}}
		mut(j)
		g := &Graph{Source: src, Jobs: []*Job{j}}
		if err := g.Normalize(); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	git := Source{Repo: "https://m/x.git", Revision: rev}
	git2 := Source{Repo: "https://other/x.git", Revision: rev}
	git3 := Source{Repo: "https://m/x.git", Revision: strings.Repeat("1", 40)}
	base := mk(func(*Job) {}, git)
	tests := []struct {
		name string
		id   string
		same bool
	}{
		{"same content", mk(func(*Job) {}, git), true},
		{"other name", mk(func(j *Job) { j.Name = "k" }, git), true},
		{"timeout", mk(func(j *Job) { j.Timeout = Duration(5e9) }, git), true},
		{"cacheable", mk(func(j *Job) { j.Cacheable = true }, git), true},
		{"other mirror same revision", mk(func(*Job) {}, git2), true},
		{"other revision", mk(func(*Job) {}, git3), false},
		{"argv", mk(func(j *Job) { j.Commands[0].Argv = []string{"false"} }, git), false},
		{"env", mk(func(j *Job) { j.Commands[0].Env = []string{"A=1"} }, git), false},
		{"labels", mk(func(j *Job) { j.Labels = map[string]string{"os": "linux"} }, git), false},
		{"planner", mk(func(j *Job) { j.Planner = true }, git), false},
		{"no source", mk(func(j *Job) { j.SourceMode = SourceNone }, git), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.id == base) != tt.same {
				t.Errorf("same ID = %v, want %v", tt.id == base, tt.same)
			}
		})
	}
	// With source_mode inputs, only the inputs count.
	in := func(src Source, digest string) string {
		return mk(func(j *Job) {
			j.SourceMode = SourceInputs
			j.Inputs = []Input{{Path: "go.mod", Digest: digest}}
		}, src)
	}
	if in(git, "d1") != in(git3, "d1") {
		t.Error("inputs job: ID changed with revision although inputs did not")
	}
	if in(git, "d1") == in(git, "d2") {
		t.Error("inputs job: ID did not change with input digest")
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		json string
		want string
	}{
		{"no jobs", `{"jobs": []}`, "graph has no jobs"},
		{"unknown field", `{"jobs": [{"name": "a", "comands": []}]}`, "unknown field"},
		{"trailing", `{"jobs": []} {}`, "trailing data"},
		{"empty commands", `{"jobs": [{"name": "a", "source_mode": "none", "commands": []}]}`, `job "a": no commands`},
		{"empty argv", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": []}]}]}`, `job "a": command 1: empty command`},
		{"both kinds", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"], "write_file": {"path": "p", "content": ""}}]}]}`, "not both"},
		{"unknown dep", `{"jobs": [{"name": "a", "source_mode": "none", "deps": ["zz"], "commands": [{"argv": ["x"]}]}]}`, `job "a": unknown dependency "zz"`},
		{"self dep", `{"jobs": [{"name": "a", "source_mode": "none", "deps": ["a"], "commands": [{"argv": ["x"]}]}]}`, `job "a": depends on itself`},
		{"cycle", `{"jobs": [
			{"name": "a", "source_mode": "none", "deps": ["b"], "commands": [{"argv": ["x"]}]},
			{"name": "b", "source_mode": "none", "deps": ["c"], "commands": [{"argv": ["x"]}]},
			{"name": "c", "source_mode": "none", "deps": ["a"], "commands": [{"argv": ["x"]}]}]}`, "dependency cycle"},
		{"duplicate name", `{"jobs": [
			{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]},
			{"name": "a", "source_mode": "none", "commands": [{"argv": ["y"]}]}]}`, `job "a": duplicate name`},
		{"same content", `{"jobs": [
			{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]},
			{"name": "b", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}`, `same content, hence same ID, as job "a"`},
		{"wrong id", `{"jobs": [{"id": "` + strings.Repeat("a", 64) + `", "name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}`, `job "a": id aaaa`},
		{"malformed id", `{"jobs": [{"id": "xyz", "name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}`, `job "a": id "xyz" is not 64 hex digits`},
		{"write escapes", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "../x", "content": ""}}]}]}`, "escapes the output directory"},
		{"write absolute", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"write_file": {"path": "/etc/passwd", "content": ""}}]}]}`, "escapes the output directory"},
		{"dir escapes", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"], "dir": "{{OUTPUT_DIR}}/../.."}]}]}`, "escapes its directory"},
		{"unknown placeholder", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["{{HOME}}"]}]}]}`, "unknown placeholder {{HOME}}"},
		{"dep placeholder not a dep", `{"jobs": [
			{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]},
			{"name": "b", "source_mode": "none", "commands": [{"argv": ["{{DEP:a}}"]}]}]}`, `job "b": {{DEP:a}} does not name one of its dependencies`},
		{"bad env", `{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"], "env": ["NOEQUALS"]}]}]}`, "not KEY=VALUE"},
		{"needs source", `{"jobs": [{"name": "a", "commands": [{"argv": ["x"]}]}]}`, `job "a": needs a source`},
		{"branch revision", `{"source": {"repo": "https://m/x.git", "revision": "main"}, "jobs": [{"name": "a", "commands": [{"argv": ["x"]}]}]}`, "not a full commit hash"},
		{"bad repo", `{"source": {"repo": "ext::sh -c evil", "revision": "` + rev + `"}, "jobs": [{"name": "a", "commands": [{"argv": ["x"]}]}]}`, "not an http, https or file URL"},
		{"bad file path", `{"source": {"files": [{"path": "../x", "digest": "` + strings.Repeat("a", 64) + `", "size": 1}]}, "jobs": [{"name": "a", "commands": [{"argv": ["x"]}]}]}`, `file "../x"`},
		{"input missing", `{"source": {"files": [{"path": "x", "digest": "` + strings.Repeat("a", 64) + `", "size": 1}]}, "jobs": [{"name": "a", "source_mode": "inputs", "inputs": [{"path": "y"}], "commands": [{"argv": ["x"]}]}]}`, `job "a": input "y" is not in the uploaded source`},
		{"bad timeout", `{"jobs": [{"name": "a", "source_mode": "none", "timeout": "1000h", "commands": [{"argv": ["x"]}]}]}`, `job "a": timeout`},
		{"bad label", `{"jobs": [{"name": "a", "source_mode": "none", "labels": {"os": "a,b"}, "commands": [{"argv": ["x"]}]}]}`, `job "a": label os`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestUploadedInputsDigests(t *testing.T) {
	d := func(c byte) string { return strings.Repeat(string(c), 64) }
	g := &Graph{
		Source: Source{Files: []File{{Path: "pkg/b.go", Digest: d('b')}, {Path: "go.mod", Digest: d('a')}, {Path: "pkg/a.go", Digest: d('c')}}},
		Jobs:   []*Job{{Name: "j", SourceMode: SourceInputs, Inputs: []Input{{Path: "pkg"}, {Path: "go.mod"}}, Commands: []Command{{Argv: []string{"go", "build", "./pkg"}}}}},
	}
	if err := g.Normalize(); err != nil {
		t.Fatal(err)
	}
	if g.Source.Files[0].Path != "go.mod" {
		t.Errorf("files not sorted: %v", g.Source.Files)
	}
	j := g.Jobs[0]
	if j.Inputs[0].Path != "go.mod" || j.Inputs[0].Digest != d('a') || !strings.HasPrefix(j.Inputs[1].Digest, "tree:") {
		t.Errorf("inputs = %+v", j.Inputs)
	}
}

func TestSplice(t *testing.T) {
	g, err := Parse([]byte(`{"jobs": [{"name": "plan", "planner": true, "source_mode": "none", "commands": [{"argv": ["plan"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	frag, err := Decode(strings.NewReader(`{"jobs": [
		{"name": "p1", "source_mode": "none", "deps": ["plan"], "commands": [{"argv": ["ls", "{{DEP:plan}}"]}]},
		{"name": "p2", "source_mode": "none", "deps": ["p1"], "commands": [{"argv": ["true"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	added, err := g.Splice(g.Jobs[0], frag)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 2 || len(g.Jobs) != 3 || added[0].Deps[0] != g.Jobs[0].ID || added[1].Deps[0] != added[0].ID {
		t.Fatalf("splice result wrong: %+v", added)
	}
	bad, _ := Decode(strings.NewReader(`{"jobs": [{"name": "p1", "source_mode": "none", "commands": [{"argv": ["again"]}]}]}`))
	if _, err := g.Splice(g.Jobs[0], bad); err == nil || !strings.Contains(err.Error(), `planner "plan": job "p1": name already used`) {
		t.Errorf("splice of a colliding name: %v", err)
	}
}

func TestDeepChain(t *testing.T) {
	var jobs []*Job
	for i := range 20000 {
		j := &Job{Name: "j" + itoa(i), SourceMode: SourceNone, Commands: []Command{{Argv: []string{"true"}}}}
		if i > 0 {
			j.Deps = []string{"j" + itoa(i-1)}
		}
		jobs = append(jobs, j)
	}
	// Reverse so that dependencies come after dependents in the input.
	for i, k := 0, len(jobs)-1; i < k; i, k = i+1, k-1 {
		jobs[i], jobs[k] = jobs[k], jobs[i]
	}
	g := &Graph{Jobs: jobs}
	if err := g.Normalize(); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestExpand(t *testing.T) {
	d := Dirs{Output: "/o", Source: "/s", Deps: map[string]string{strings.Repeat("a", 64): "/d"}}
	tests := []struct {
		name, in, want string
		err            bool
	}{
		{"plain", "abc", "abc", false},
		{"all", "{{SOURCE_DIR}}:{{OUTPUT_DIR}}:{{DEP:" + strings.Repeat("a", 64) + "}}", "/s:/o:/d", false},
		{"unknown dep", "{{DEP:b}}", "", true},
		{"unknown", "{{X}}", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.in, d)
			if (err != nil) != tt.err || (!tt.err && got != tt.want) {
				t.Errorf("Expand(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestOutputsRoundTrip(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(src, "sub", "a"), []byte("A"), 0o644))
	must(os.WriteFile(filepath.Join(src, "run"), []byte("#!/bin/sh"), 0o755))
	must(os.Symlink("sub/a", filepath.Join(src, "link")))
	var buf1, buf2 bytes.Buffer
	must(WriteOutputs(&buf1, src))
	must(WriteOutputs(&buf2, src))
	if !bytes.Equal(buf1.Bytes(), buf2.Bytes()) {
		t.Error("archives of the same directory differ")
	}
	dst := t.TempDir()
	must(ReadOutputs(bytes.NewReader(buf1.Bytes()), dst, OutputLimits{}))
	if b, err := os.ReadFile(filepath.Join(dst, "link")); err != nil || string(b) != "A" {
		t.Errorf("link: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "run")); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("run not executable: %v %v", fi, err)
	}
	b, err := ReadOutputFile(bytes.NewReader(buf1.Bytes()), "sub/a", 10)
	if err != nil || string(b) != "A" {
		t.Errorf("ReadOutputFile = %q, %v", b, err)
	}
}

func TestOutputsRefuseEscapes(t *testing.T) {
	tests := []struct {
		name   string
		target string
	}{
		{"absolute", "/etc/passwd"},
		{"dotdot", "../../etc/passwd"},
		{"nested dotdot", "sub/../../x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.Symlink(tt.target, filepath.Join(src, "evil")); err != nil {
				t.Fatal(err)
			}
			err := WriteOutputs(&bytes.Buffer{}, src)
			if !errors.Is(err, ErrUnsafeOutput) {
				t.Errorf("WriteOutputs = %v, want ErrUnsafeOutput", err)
			}
		})
	}
}

func BenchmarkNormalize10000(b *testing.B) {
	var jobs []string
	for i := range 10000 {
		jobs = append(jobs, `{"name": "j`+itoa(i)+`", "source_mode": "none", "cacheable": true, "commands": [{"argv": ["true", "`+itoa(i)+`"]}]}`)
	}
	data := []byte(`{"jobs": [` + strings.Join(jobs, ",") + `]}`)
	b.ResetTimer()
	for range b.N {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSpliceKeepsPlannerLabels checks that a planner's fragment cannot send
// jobs to workers the planner itself was not confined to.
func TestSpliceKeepsPlannerLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels string // the fragment job's labels, as JSON
		want   string // a substring of the error; empty means accepted
	}{
		{"same labels", `{"os": "linux", "pool": "untrusted"}`, ""},
		{"narrower", `{"os": "linux", "pool": "untrusted", "arch": "amd64"}`, ""},
		{"no labels", `{}`, `planner "plan": job "frag": missing label os="linux" required by its planner`},
		{"one dropped", `{"os": "linux"}`, `job "frag": missing label pool="untrusted"`},
		{"privileged pool", `{"os": "linux", "pool": "release"}`, `job "frag": label pool="release" differs from its planner's pool="untrusted"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Parse([]byte(`{"jobs": [{"name": "plan", "planner": true, "source_mode": "none", "labels": {"os": "linux", "pool": "untrusted"}, "commands": [{"argv": ["plan"]}]}]}`))
			if err != nil {
				t.Fatal(err)
			}
			frag, err := Decode(strings.NewReader(`{"jobs": [
				{"name": "ok", "source_mode": "none", "labels": {"os": "linux", "pool": "untrusted"}, "commands": [{"argv": ["true"]}]},
				{"name": "frag", "source_mode": "none", "deps": ["plan"], "labels": ` + tc.labels + `, "commands": [{"argv": ["make"]}]}]}`))
			if err != nil {
				t.Fatal(err)
			}
			added, err := g.Splice(g.Jobs[0], frag)
			if tc.want == "" {
				if err != nil || len(added) != 2 || len(g.Jobs) != 3 {
					t.Fatalf("Splice = %d jobs, %v; want 2 jobs spliced", len(added), err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Splice error = %v; want ErrInvalid containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), `job "ok"`) {
				t.Errorf("error blames the conforming job: %v", err)
			}
			if len(g.Jobs) != 1 {
				t.Errorf("a rejected fragment was spliced: graph has %d jobs", len(g.Jobs))
			}
		})
	}
}

func TestIsDigest(t *testing.T) {
	valid := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"valid", valid, true},
		{"empty", "", false},
		{"short", valid[:63], false},
		{"long", valid + "0", false},
		{"upper case", strings.ToUpper(valid), false},
		{"not hex", valid[:63] + "g", false},
		{"below 0", valid[:63] + "/", false},
		{"between 9 and a", valid[:63] + ":", false},
		{"multibyte", valid[:62] + "é", false},
	}
	for _, tt := range tests {
		if got := IsDigest(tt.s); got != tt.want {
			t.Errorf("%s: IsDigest(%q) = %v, want %v", tt.name, tt.s, got, tt.want)
		}
	}
}
