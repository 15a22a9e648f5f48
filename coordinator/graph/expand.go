package graph

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Dirs are the directories a worker substitutes for placeholders.
type Dirs struct {
	// Output is the job's output directory ({{OUTPUT_DIR}}).
	Output string
	// Source is the job's source tree ({{SOURCE_DIR}}); empty for
	// SourceNone jobs, whose commands must not use it.
	Source string
	// Deps maps a dependency's job ID to the directory holding its
	// unpacked outputs ({{DEP:<id>}}).
	Deps map[string]string
}

// Expand replaces {{OUTPUT_DIR}}, {{SOURCE_DIR}} and {{DEP:<id>}} in s. An
// unknown placeholder or a dependency missing from d is an error.
func Expand(s string, d Dirs) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	var err error
	out := placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		inner := m[2 : len(m)-2]
		switch {
		case inner == "OUTPUT_DIR" && d.Output != "":
			return d.Output
		case inner == "SOURCE_DIR" && d.Source != "":
			return d.Source
		case strings.HasPrefix(inner, "DEP:"):
			if dir, ok := d.Deps[inner[4:]]; ok {
				return dir
			}
		}
		if err == nil {
			err = fmt.Errorf("graph: expand %q: placeholder %s has no value", truncate(s), m)
		}
		return m
	})
	return out, err
}

// ExpandCommand returns the argv, environment additions and working
// directory of an exec command with placeholders expanded. An empty Dir
// means d.Source (or d.Output for jobs without source).
func ExpandCommand(c Command, d Dirs) (argv, env []string, dir string, err error) {
	argv = make([]string, len(c.Argv))
	for i, a := range c.Argv {
		if argv[i], err = Expand(a, d); err != nil {
			return nil, nil, "", err
		}
	}
	env = make([]string, len(c.Env))
	for i, e := range c.Env {
		if env[i], err = Expand(e, d); err != nil {
			return nil, nil, "", err
		}
	}
	switch {
	case c.Dir == "" && d.Source != "":
		dir = d.Source
	case c.Dir == "":
		dir = d.Output
	case strings.HasPrefix(c.Dir, "{{"):
		if dir, err = Expand(c.Dir, d); err != nil {
			return nil, nil, "", err
		}
	default:
		if d.Source == "" {
			return nil, nil, "", fmt.Errorf("graph: dir %q is relative to the source, but the job has none", c.Dir)
		}
		dir = filepath.Join(d.Source, filepath.FromSlash(c.Dir))
	}
	return argv, env, dir, nil
}
