package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestGoplanCommand(t *testing.T) {
	testenv.NeedTool(t, "go")
	dir := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":      "module example.com/m\n\ngo 1.21\n",
		"a/a.go":      "package a\n",
		"b/b.go":      "package b\n\nimport _ \"example.com/m/a\"\n",
		"b/b_test.go": "package b\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out", "graph.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"goplan", "--source", dir, "--out", out, "--label", "os=linux", "--test-flag", "-short"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range g.Jobs {
		names = append(names, j.Name)
		if j.Labels["os"] != "linux" {
			t.Errorf("job %s labels %v", j.Name, j.Labels)
		}
	}
	if got := strings.Join(names, ","); got != "vet example.com/m/a,vet example.com/m/b,test example.com/m/b" {
		t.Errorf("jobs %s", got)
	}
	if test := g.Job("test example.com/m/b"); test == nil || !strings.Contains(strings.Join(test.Commands[0].Argv, " "), "-short") {
		t.Errorf("test job %+v", test)
	}
	// Not a module: a clear error, exit 1.
	stderr.Reset()
	if code := run(context.Background(), []string{"goplan", "--source", t.TempDir()}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "not a module root") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestSelfOnPath(t *testing.T) {
	dir := t.TempDir()
	bin, err := selfOnPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if target, err := os.Readlink(filepath.Join(bin, "tryd")); err != nil || target != exe {
		t.Fatalf("link -> %q, %v; want %q", target, err, exe)
	}
	// Idempotent across restarts.
	if _, err := selfOnPath(dir); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"prepended", []string{"HOME=/h", "PATH=/usr/bin"}, "PATH=" + bin + string(os.PathListSeparator) + "/usr/bin"},
		{"added", []string{"HOME=/h"}, "PATH=" + bin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := withPath(tc.env, bin)
			found := false
			for _, e := range got {
				if strings.HasPrefix(e, "PATH=") {
					found = e == tc.want
				}
			}
			if !found {
				t.Errorf("withPath = %q, want %q in it", got, tc.want)
			}
		})
	}
}
