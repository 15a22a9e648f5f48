package goplan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tryd-ci/tryd/coordinator/graph"
)

// TemplateFile is the file at a repository's root that replaces the Go
// planner's per-package graph with a plain graph of steps.
const TemplateFile = ".tryd.yaml"

// maxTemplateBytes bounds TemplateFile.
const maxTemplateBytes = 1 << 20

// Template is the content of TemplateFile:
//
//	steps:
//	  - name: generate
//	    run: [go, generate, ./...]
//	  - name: test
//	    shell: go test -short ./...
//	    env: {CGO_ENABLED: "0"}
//	    dir: sub/module
//
// The steps run in order as a chain of jobs (each depends on the
// previous), like a builder's steps in tryd.yaml.
type Template struct {
	Steps []TemplateStep `yaml:"steps"`
}

// TemplateStep is one step: exactly one of Run (an argv) and Shell (a
// line for sh -c).
type TemplateStep struct {
	Name  string            `yaml:"name"`
	Run   []string          `yaml:"run"`
	Shell string            `yaml:"shell"`
	Env   map[string]string `yaml:"env"`
	Dir   string            `yaml:"dir"`
}

// ErrBadTemplate marks a TemplateFile the planner refuses.
var ErrBadTemplate = errors.New("goplan: bad " + TemplateFile)

var stepNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._:/+-]{0,99}$`)

// ParseTemplate decodes and checks a TemplateFile: known fields only, at
// most 100 steps, names unique, exactly one of run and shell per step.
func ParseTemplate(r io.Reader) (*Template, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTemplateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTemplate, err)
	}
	if len(data) > maxTemplateBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadTemplate, maxTemplateBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var t Template
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTemplate, err)
	}
	if len(t.Steps) == 0 || len(t.Steps) > 100 {
		return nil, fmt.Errorf("%w: want 1 to 100 steps, have %d", ErrBadTemplate, len(t.Steps))
	}
	seen := map[string]bool{}
	for i := range t.Steps {
		s := &t.Steps[i]
		if s.Name == "" {
			s.Name = fmt.Sprintf("step%d", i+1)
		}
		switch {
		case !stepNameRE.MatchString(s.Name) || graph.IsID(s.Name):
			return nil, fmt.Errorf("%w: step %d: bad name %q", ErrBadTemplate, i+1, trunc(s.Name))
		case seen[s.Name]:
			return nil, fmt.Errorf("%w: step %q defined twice", ErrBadTemplate, s.Name)
		case (len(s.Run) == 0) == (s.Shell == ""):
			return nil, fmt.Errorf("%w: step %q: set exactly one of run and shell", ErrBadTemplate, s.Name)
		case len(s.Run) > 0 && s.Run[0] == "":
			return nil, fmt.Errorf("%w: step %q: empty command", ErrBadTemplate, s.Name)
		case s.Dir != "" && !validRel(s.Dir):
			return nil, fmt.Errorf("%w: step %q: dir %q must be a clean relative path", ErrBadTemplate, s.Name, trunc(s.Dir))
		}
		seen[s.Name] = true
	}
	return &t, nil
}

// Graph returns the template's jobs: a chain, each step depending on the
// previous one, with the given labels and timeout. The fragment is
// validated like any graph when the coordinator splices it in.
func (t *Template) Graph(labels map[string]string, timeout time.Duration) *graph.Graph {
	g := &graph.Graph{}
	prev := ""
	for _, s := range t.Steps {
		cmd := StepCommand(s.Run, s.Shell, s.Dir, s.Env)
		j := &graph.Job{Name: s.Name, Commands: []graph.Command{cmd}, Labels: labels, Timeout: graph.Duration(timeout), Cacheable: true}
		if prev != "" {
			j.Deps = []string{prev}
		}
		prev = s.Name
		g.Jobs = append(g.Jobs, j)
	}
	return g
}

// LoadTemplate reads dir's TemplateFile; ok is false when there is none.
func LoadTemplate(dir string) (t *Template, ok bool, err error) {
	f, err := os.Open(filepath.Join(dir, TemplateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("goplan: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%w: not a regular file", ErrBadTemplate)
	}
	t, err = ParseTemplate(f)
	return t, err == nil, err
}

// StepCommand is the command of a step, of a builder in tryd.yaml or of
// a template: argv run as is, or shell run with sh -c, in dir, with env
// in sorted order so that the job's content-derived ID does not depend
// on map iteration.
func StepCommand(run []string, shell, dir string, env map[string]string) graph.Command {
	cmd := graph.Command{Argv: slices.Clone(run), Dir: dir}
	if shell != "" {
		cmd.Argv = []string{"sh", "-c", shell}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	return cmd
}
