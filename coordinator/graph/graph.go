// Package graph is tryd's build graph model: a source (a git revision
// served by gitmirror, or a manifest of uploaded files) plus a set of jobs
// with content-derived IDs, their validation, the placeholder substitution
// workers apply to commands, and the output archive format (a tar of a
// job's output directory) with the checks that keep outputs inside it.
//
// # Wire format
//
// A graph is JSON (a YAML file can be converted to the same shape):
//
//	{"source": {"repo": "https://mirror/x.git", "revision": "<40 or 64 hex>"},
//	 "jobs": [{"name": "build", "commands": [{"argv": ["go", "build", "./..."]}],
//	           "deps": ["gen"], "labels": {"os": "linux"}, "timeout": "10m",
//	           "cacheable": true}, ...]}
//
// Dependencies and {{DEP:x}} placeholders may name a job of the same graph
// by its name or by its ID; Normalize rewrites them to IDs and computes
// every job's ID, a SHA-256 over everything that determines the job's
// output (see ComputeID). A job that states an ID must state the right one.
//
// This package imports only the standard library, so that workers, trybot
// and clients can share it.
package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Limits on graphs accepted from outside, so that a hostile or broken
// client cannot exhaust the coordinator.
const (
	// MaxGraphBytes bounds the JSON encoding of a graph.
	MaxGraphBytes = 64 << 20
	// MaxJobs bounds the jobs of one graph (including spliced fragments).
	MaxJobs = 200_000
	// MaxCommands bounds the commands of one job.
	MaxCommands = 1000
	// MaxFiles bounds the files of an uploaded source.
	MaxFiles = 200_000
	// MaxTimeout bounds a job's timeout.
	MaxTimeout = 48 * time.Hour
	// MaxNameLen bounds job names, label keys and values, and paths.
	MaxNameLen = 1024
)

// Graph is a build: the source every job sees and the jobs to run.
type Graph struct {
	Source Source `json:"source"`
	Jobs   []*Job `json:"jobs"`
}

// Source is what a job's {{SOURCE_DIR}} holds: either a git revision of a
// repository (Repo and Revision) or a set of uploaded files (Files, whose
// contents are blobs in the coordinator's artifact store). A graph whose
// jobs all use SourceNone may leave it empty.
type Source struct {
	// Repo is the repository URL (http, https or file), normally a
	// gitmirror URL.
	Repo string `json:"repo,omitempty"`
	// Revision is a full commit hash (40 or 64 lower-case hex digits);
	// branch names must be resolved by the client so that a graph always
	// means one tree.
	Revision string `json:"revision,omitempty"`
	// Files are uploaded files, sorted by path once normalized.
	Files []File `json:"files,omitempty"`
}

// File is one uploaded source file.
type File struct {
	// Path is slash-separated and relative to the source root.
	Path string `json:"path"`
	// Digest is the lower-case hex SHA-256 of the contents.
	Digest string `json:"digest"`
	// Size is the length of the contents in bytes.
	Size int64 `json:"size"`
	// Executable makes the file mode 0755 instead of 0644.
	Executable bool `json:"executable,omitempty"`
}

// SourceMode says how much of the source a job sees, and therefore what of
// it goes into the job's ID.
type SourceMode string

// Source modes. With SourceAll (the default) the source's identity (the
// revision, or the manifest digest) is part of the ID, so the job reruns
// for every new revision. With SourceInputs only the listed inputs (path
// and content digest) are, so the job's result is reused across revisions
// that leave those inputs alone; the job promises to read nothing else of
// the source. With SourceNone the job gets no source at all.
const (
	SourceAll    SourceMode = "all"
	SourceInputs SourceMode = "inputs"
	SourceNone   SourceMode = "none"
)

// Job is one unit of work: commands run in order on one worker.
type Job struct {
	// ID is the job's content hash (64 hex digits); empty means "compute
	// it". Normalize rejects a stated ID that does not match.
	ID string `json:"id,omitempty"`
	// Name is unique within the graph and shown to people.
	Name string `json:"name"`
	// SourceMode is all (default), inputs or none.
	SourceMode SourceMode `json:"source_mode,omitempty"`
	// Inputs are the source paths the job reads (files or directories).
	Inputs []Input `json:"inputs,omitempty"`
	// Deps are jobs whose outputs this job needs (IDs once normalized).
	Deps []string `json:"deps,omitempty"`
	// Commands run in order; the first failure fails the job.
	Commands []Command `json:"commands"`
	// Labels are required worker labels: a worker runs the job only if
	// it has every key with the same value.
	Labels map[string]string `json:"labels,omitempty"`
	// Timeout bounds the whole job; zero means the coordinator's default.
	Timeout Duration `json:"timeout,omitempty"`
	// Cacheable lets a later graph reuse a successful result of the same
	// job ID instead of running it again.
	Cacheable bool `json:"cacheable,omitempty"`
	// Planner jobs write a graph fragment (JSON, the Graph shape without
	// source) to {{OUTPUT_DIR}}/graph.json; the coordinator splices its
	// jobs into the build when the planner succeeds.
	Planner bool `json:"planner,omitempty"`
}

// PlannerOutput is the file a planner job writes in its output directory.
const PlannerOutput = "graph.json"

// Input is a source path a job reads and the digest of its content.
type Input struct {
	// Path is slash-separated, relative to the source root; a directory
	// means everything under it.
	Path string `json:"path"`
	// Digest identifies the content: for uploaded sources Normalize
	// computes it from the manifest (and checks it if given); for git
	// sources the client supplies it (e.g. a git blob or tree ID).
	Digest string `json:"digest,omitempty"`
}

// Command is either an exec (Argv, with Env and Dir) or a file write
// (WriteFile); exactly one must be set.
type Command struct {
	// Argv is the program and its arguments; placeholders are expanded.
	Argv []string `json:"argv,omitempty"`
	// Env holds KEY=VALUE pairs added to the worker's base environment.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory: empty for {{SOURCE_DIR}}, a path
	// relative to it, or a path starting with a placeholder.
	Dir string `json:"dir,omitempty"`
	// WriteFile writes a string to a file in the output directory.
	WriteFile *WriteFile `json:"write_file,omitempty"`
}

// WriteFile writes Content to Path, relative to {{OUTPUT_DIR}}.
type WriteFile struct {
	Path       string `json:"path"`
	Content    string `json:"content"`
	Executable bool   `json:"executable,omitempty"`
}

// Duration is a time.Duration that is written in JSON as a Go duration
// string ("90s", "10m"); a JSON number is read as seconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// String formats the duration like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("bad duration %q (want e.g. 90s, 10m)", s)
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("bad duration %s (want a string like \"10m\" or seconds)", b)
	}
	if f < 0 || f > MaxTimeout.Seconds()*10 {
		return fmt.Errorf("bad duration %v seconds", f)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// ErrInvalid marks every validation error, so that callers can map it to a
// "bad request" answer with errors.Is.
var ErrInvalid = errors.New("invalid graph")

// ValidationError lists what is wrong with a graph; each message names the
// job it is about.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	const max = 20
	var b bytes.Buffer
	b.WriteString("invalid graph: ")
	for i, p := range e.Problems {
		if i == max {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-max)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Parse decodes a graph from JSON with size limits and strict field
// checking, then normalizes and validates it. The returned graph has every
// ID computed and every reference rewritten to an ID.
func Parse(data []byte) (*Graph, error) {
	g, err := Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := g.Normalize(); err != nil {
		return nil, err
	}
	return g, nil
}

// Decode reads a graph's JSON without normalizing it. Unknown fields and
// trailing data are errors, so that a misspelled key is not silently
// ignored.
func Decode(r io.Reader) (*Graph, error) {
	lr := &io.LimitedReader{R: r, N: MaxGraphBytes + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	var g Graph
	if err := dec.Decode(&g); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("graph: decode: larger than %d bytes: %w", MaxGraphBytes, ErrInvalid)
		}
		return nil, fmt.Errorf("graph: decode: %v: %w", err, ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("graph: decode: trailing data after the graph: %w", ErrInvalid)
	}
	return &g, nil
}

// Job returns the job with the given ID or name, or nil.
func (g *Graph) Job(idOrName string) *Job {
	for _, j := range g.Jobs {
		if j.ID == idOrName || j.Name == idOrName {
			return j
		}
	}
	return nil
}

// Clone returns a deep copy of the job.
func (j *Job) Clone() *Job {
	c := *j
	c.Inputs = append([]Input(nil), j.Inputs...)
	c.Deps = append([]string(nil), j.Deps...)
	c.Commands = make([]Command, len(j.Commands))
	for i, cmd := range j.Commands {
		cc := cmd
		cc.Argv = append([]string(nil), cmd.Argv...)
		cc.Env = append([]string(nil), cmd.Env...)
		if cmd.WriteFile != nil {
			wf := *cmd.WriteFile
			cc.WriteFile = &wf
		}
		c.Commands[i] = cc
	}
	if j.Labels != nil {
		c.Labels = make(map[string]string, len(j.Labels))
		for k, v := range j.Labels {
			c.Labels[k] = v
		}
	}
	return &c
}

// Mode returns the job's source mode with the default applied.
func (j *Job) Mode() SourceMode {
	if j.SourceMode == "" {
		return SourceAll
	}
	return j.SourceMode
}

// EffectiveTimeout returns the job's timeout, or def when it has none.
func (j *Job) EffectiveTimeout(def time.Duration) time.Duration {
	if j.Timeout <= 0 {
		return def
	}
	return time.Duration(j.Timeout)
}
