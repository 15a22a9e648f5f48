package try

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestParseGraph(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		yaml    bool
		wantErr string
		check   func(*testing.T, *graph.Graph)
	}{
		{
			name: "json",
			data: `{"jobs":[{"name":"a","commands":[{"argv":["true"]}],"timeout":"5s","cacheable":true}]}`,
			check: func(t *testing.T, g *graph.Graph) {
				if len(g.Jobs) != 1 || g.Jobs[0].Name != "a" || !g.Jobs[0].Cacheable || g.Jobs[0].Timeout.String() != "5s" {
					t.Errorf("got %+v", g.Jobs[0])
				}
			},
		},
		{
			name: "yaml",
			yaml: true,
			data: "source:\n  repo: https://m/x.git\n  revision: " + strings.Repeat("a", 40) + "\njobs:\n  - name: build\n    commands:\n      - argv: [go, build, ./...]\n        env: [CGO_ENABLED=0]\n    labels: {os: linux}\n    deps: [gen]\n  - name: gen\n    commands:\n      - write_file: {path: x.txt, content: hi}\n",
			check: func(t *testing.T, g *graph.Graph) {
				if g.Source.Repo != "https://m/x.git" || len(g.Jobs) != 2 {
					t.Fatalf("got %+v", g)
				}
				b := g.Jobs[0]
				if b.Labels["os"] != "linux" || b.Commands[0].Argv[2] != "./..." || b.Deps[0] != "gen" {
					t.Errorf("build = %+v", b)
				}
				if g.Jobs[1].Commands[0].WriteFile.Content != "hi" {
					t.Errorf("gen = %+v", g.Jobs[1])
				}
			},
		},
		{name: "yaml detected by content", data: "jobs: []\n", check: func(t *testing.T, g *graph.Graph) {}},
		{name: "unknown key", data: `{"jobs":[],"bogus":1}`, wantErr: "unknown field"},
		{name: "unknown yaml key", yaml: true, data: "jobz: []\n", wantErr: "unknown field"},
		{name: "bad yaml", yaml: true, data: "jobs: [\n", wantErr: "yaml"},
		{name: "trailing data", data: `{"jobs":[]} {}`, wantErr: "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := ParseGraph([]byte(tt.data), tt.yaml)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, g)
		})
	}
}

func FuzzParseGraph(f *testing.F) {
	f.Add([]byte(`{"jobs":[{"name":"a","commands":[{"argv":["true"]}]}]}`), false)
	f.Add([]byte("jobs:\n  - name: a\n    commands: [{argv: [x]}]\n"), true)
	f.Add([]byte("&a [*a]"), true)
	f.Add([]byte("{1: 2}"), true)
	f.Fuzz(func(t *testing.T, data []byte, isYAML bool) {
		g, err := ParseGraph(data, isYAML)
		if err == nil && g == nil {
			t.Fatal("nil graph without error")
		}
		if err != nil && !errors.Is(err, graph.ErrInvalid) && !strings.Contains(err.Error(), "yaml") {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

func TestCommandGraph(t *testing.T) {
	g := CommandGraph([]string{"go vet ./...", "go test ./..."})
	if err := g.Normalize(); err == nil {
		t.Fatal("a command graph without source should need one before it validates")
	}
	g.Source = graph.Source{Files: []graph.File{{Path: "a", Digest: strings.Repeat("0", 64)}}}
	if err := g.Normalize(); err != nil {
		t.Fatal(err)
	}
	if g.Jobs[1].Commands[0].Argv[2] != "go test ./..." {
		t.Errorf("job 2 = %+v", g.Jobs[1])
	}
}

func TestWorkTree(t *testing.T) {
	testenv.NeedTool(t, "git")
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, content string, mode os.FileMode) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	run("init", "--quiet")
	write(".gitignore", "*.o\n", 0o644)
	write("tracked.go", "package x", 0o644)
	write("gone.txt", "bye", 0o644)
	write("run.sh", "#!/bin/sh\n", 0o755)
	run("add", ".")
	run("-c", "user.email=t@e", "-c", "user.name=t", "commit", "--quiet", "-m", "x")
	os.Remove(filepath.Join(dir, "gone.txt"))
	write("untracked/new.go", "package y", 0o644)
	write("ignored.o", "junk", 0o644)
	os.Symlink("tracked.go", filepath.Join(dir, "link"))

	files, open, err := WorkTree(context.Background(), filepath.Join(dir, "untracked"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	want := ".gitignore run.sh tracked.go untracked/new.go"
	if strings.Join(got, " ") != want {
		t.Fatalf("files = %v, want %s", got, want)
	}
	if !files[1].Executable || files[2].Executable {
		t.Errorf("executable bits wrong: %+v", files)
	}
	rc, err := open(files[3])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "package y" || files[3].Size != 9 {
		t.Errorf("content %q size %d", b, files[3].Size)
	}
	if _, _, err := WorkTree(context.Background(), t.TempDir()); err == nil {
		t.Error("a directory outside git was accepted")
	}
}

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false, 3)
	one := 1
	for _, ev := range []api.Event{
		{Type: api.EventHello, Epoch: "e1"},
		{Type: api.EventJobQueued, JobID: "a", JobName: "alpha"},
		{Type: api.EventJobCached, JobID: "b", JobName: "beta"},
		{Type: api.EventJobStarted, JobID: "a"},
		{Type: api.EventJobFinished, JobID: "a", State: api.JobFailed, ExitCode: &one},
		{Type: api.EventJobSkipped, JobID: "c", JobName: "gamma"},
	} {
		p.event(ev)
	}
	p.show(true)
	got := out.String()
	for _, want := range []string{"cache beta", "FAIL  alpha: exit status 1", "skip  gamma", "3/3  queued 0  running 0  cached 1  done 0  failed 1  skipped 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	var term bytes.Buffer
	p2 := newProgress(&term, true, 2)
	p2.event(api.Event{Type: api.EventJobFinished, JobID: "a", State: api.JobSucceeded})
	p2.show(false)
	if !strings.Contains(term.String(), "\r\x1b[K[============            ] 1/2") {
		t.Errorf("terminal line = %q", term.String())
	}
}
