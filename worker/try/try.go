// Package try is the library behind "tryd try": it loads a build graph
// from a JSON or YAML file (or makes one from command lines), takes the
// local working tree as the graph's source when asked (the files "git
// ls-files" lists, uploaded only when the coordinator says it lacks them),
// submits it, follows the build's event stream with a live progress line
// (queued / running / cached / done / failed) on a terminal or plain lines
// otherwise, and prints each failed job with the tail of its log.
package try

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// ErrBuildFailed is returned by Run when the build finished in any state
// but succeeded; the CLI exits non-zero on it.
var ErrBuildFailed = errors.New("see the failures above")

// LoadGraph reads a graph file: JSON, or YAML of the same shape (chosen
// by the extension .yaml/.yml, else by content). Unknown keys are errors.
func LoadGraph(path string) (*graph.Graph, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("try: %w", err)
	}
	g, err := ParseGraph(data, strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml"))
	if err != nil {
		return nil, fmt.Errorf("try: %s: %w", path, err)
	}
	return g, nil
}

// ParseGraph decodes a graph from JSON or, when yamlInput is set or the
// data does not start with '{', from YAML (converted to JSON first so
// that both go through graph.Decode's strict checks).
func ParseGraph(data []byte, yamlInput bool) (*graph.Graph, error) {
	if len(data) > graph.MaxGraphBytes {
		return nil, fmt.Errorf("graph file larger than %d bytes", graph.MaxGraphBytes)
	}
	trimmed := bytes.TrimSpace(data)
	if yamlInput || len(trimmed) == 0 || trimmed[0] != '{' {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		v, err := jsonable(v, 0)
		if err != nil {
			return nil, err
		}
		if data, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
	}
	return graph.Decode(bytes.NewReader(data))
}

// jsonable converts YAML's decoded values to JSON-encodable ones (maps
// with string keys), bounding the nesting depth.
func jsonable(v any, depth int) (any, error) {
	if depth > 64 {
		return nil, errors.New("yaml: nested too deeply")
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonable(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonable(e, depth+1)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []any:
		for i, e := range x {
			c, err := jsonable(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	}
	return v, nil
}

// CommandGraph makes a graph of one job per shell command line ("sh -c"),
// named cmd1, cmd2, ..., each with the whole source.
func CommandGraph(cmds []string) *graph.Graph {
	g := &graph.Graph{}
	for i, c := range cmds {
		g.Jobs = append(g.Jobs, &graph.Job{
			Name:     fmt.Sprintf("cmd%d", i+1),
			Commands: []graph.Command{{Argv: []string{"sh", "-c", c}}},
		})
	}
	return g
}

// WorkTree lists the files of the git working tree at dir that a build
// should see (tracked files plus untracked ones not ignored, as "git
// ls-files --cached --others --exclude-standard" lists them), with their
// contents' digests. Deleted files, directories (submodules) and symlinks
// are left out. It returns the manifest (sorted by path) and a function
// that opens a file of it.
func WorkTree(ctx context.Context, dir string) ([]graph.File, func(graph.File) (io.ReadCloser, error), error) {
	top, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("try: %s is not in a git working tree: %w", dir, err)
	}
	root := strings.TrimSpace(string(top))
	out, err := exec.CommandContext(ctx, "git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("try: git ls-files: %w", err)
	}
	seen := map[string]bool{}
	var paths []string
	for _, p := range strings.Split(string(out), "\x00") {
		if p != "" && !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	if len(paths) > graph.MaxFiles {
		return nil, nil, fmt.Errorf("try: %d files in the working tree, more than the limit of %d", len(paths), graph.MaxFiles)
	}
	files := make([]graph.File, len(paths))
	keep := make([]bool, len(paths))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, p := range paths {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			full := filepath.Join(root, filepath.FromSlash(p))
			st, err := os.Lstat(full)
			if err != nil || !st.Mode().IsRegular() {
				return nil // deleted, a submodule or a symlink
			}
			f, err := os.Open(full)
			if err != nil {
				return fmt.Errorf("try: %w", err)
			}
			defer f.Close()
			h := sha256.New()
			n, err := io.Copy(h, f)
			if err != nil {
				return fmt.Errorf("try: read %s: %w", p, err)
			}
			files[i] = graph.File{Path: p, Digest: hex.EncodeToString(h.Sum(nil)), Size: n, Executable: st.Mode().Perm()&0o111 != 0}
			keep[i] = true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	var kept []graph.File
	for i, f := range files {
		if keep[i] {
			kept = append(kept, f)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Path < kept[j].Path })
	open := func(f graph.File) (io.ReadCloser, error) {
		return os.Open(filepath.Join(root, filepath.FromSlash(f.Path)))
	}
	return kept, open, nil
}

// Options configures Run.
type Options struct {
	// Client talks to the coordinator with a client token.
	Client *api.Client
	// Graph is what to submit.
	Graph *graph.Graph
	// Open, when the graph's source is uploaded files, opens a file's
	// contents for upload (see WorkTree).
	Open func(graph.File) (io.ReadCloser, error)
	// Priority and Labels are passed with the submission.
	Priority api.Priority
	Labels   map[string]string
	// Out receives progress and the report.
	Out io.Writer
	// Terminal selects the live progress line (redrawn in place);
	// otherwise progress is plain lines.
	Terminal bool
	// TailLines is how many log lines to show for each failed job
	// (default 20).
	TailLines int
	// Interval is how often progress is shown (default 100ms on a
	// terminal, 5s otherwise).
	Interval time.Duration
	// KeepOnInterrupt leaves the build running when ctx is cancelled
	// (by default Run cancels it: the build belongs to the command).
	KeepOnInterrupt bool
}

// Run submits the graph, shows progress until the build finishes and
// prints failures. It returns the final build, and ErrBuildFailed (with
// the build) when it did not succeed.
func Run(ctx context.Context, o Options) (*api.Build, error) {
	if o.Client == nil || o.Graph == nil || o.Out == nil {
		return nil, errors.New("try: Options.Client, Graph and Out are required")
	}
	if o.TailLines <= 0 {
		o.TailLines = 20
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
		if o.Terminal {
			o.Interval = 100 * time.Millisecond
		}
	}
	req := api.SubmitRequest{Graph: *o.Graph, Priority: o.Priority, Labels: o.Labels}
	var sub *api.SubmitResponse
	var err error
	if len(o.Graph.Source.Files) > 0 {
		if o.Open == nil {
			return nil, errors.New("try: the graph has uploaded files but no Open function")
		}
		sub, err = o.Client.SubmitWithFiles(ctx, req, o.Open)
	} else {
		sub, err = o.Client.Submit(ctx, req)
	}
	if err != nil {
		return nil, fmt.Errorf("try: submit: %w", err)
	}
	fmt.Fprintf(o.Out, "build %d: %d jobs submitted to %s\n", sub.BuildID, len(sub.Jobs), o.Client.BaseURL())

	p := newProgress(o.Out, o.Terminal, len(sub.Jobs))
	stopTicker := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(o.Interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.show(false)
			case <-stopTicker:
				return
			}
		}
	}()
	b, err := o.Client.Wait(ctx, sub.BuildID, p.event)
	close(stopTicker)
	wg.Wait()
	if err != nil {
		p.show(true)
		if ctx.Err() != nil && !o.KeepOnInterrupt {
			// Interrupted (^C): the build is this command's, stop it.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if cerr := o.Client.Cancel(cctx, sub.BuildID); cerr == nil {
				fmt.Fprintf(o.Out, "\nbuild %d cancelled\n", sub.BuildID)
			} else {
				fmt.Fprintf(o.Out, "\ncould not cancel build %d: %v\n", sub.BuildID, cerr)
			}
		}
		return nil, fmt.Errorf("build %d: %w", sub.BuildID, err)
	}
	p.final(b)
	report(ctx, o, b)
	if b.State != api.BuildSucceeded {
		return b, fmt.Errorf("build %d %s: %w", b.ID, b.State, ErrBuildFailed)
	}
	return b, nil
}

// report prints every failed job with the tail of its log, and a summary.
func report(ctx context.Context, o Options, b *api.Build) {
	var failed []api.JobStatus
	for _, j := range b.Jobs {
		if j.State == api.JobFailed {
			failed = append(failed, j)
		}
	}
	sort.Slice(failed, func(i, k int) bool { return failed[i].Name < failed[k].Name })
	for _, j := range failed {
		why := j.Error
		if why == "" && j.ExitCode != nil {
			why = fmt.Sprintf("exit status %d", *j.ExitCode)
		}
		fmt.Fprintf(o.Out, "\n--- FAIL: %s (%s)\n", j.Name, why)
		if tail, err := logTail(ctx, o.Client, j, o.TailLines); err != nil {
			fmt.Fprintf(o.Out, "    (log unavailable: %v)\n", err)
		} else {
			for _, line := range tail {
				fmt.Fprintf(o.Out, "    %s\n", line)
			}
		}
	}
	if b.Error != "" {
		fmt.Fprintf(o.Out, "\nbuild error: %s\n", b.Error)
	}
	fmt.Fprintf(o.Out, "\nbuild %d %s: %s\n", b.ID, strings.ToUpper(string(b.State)), summary(b.Counts))
}

// logTail returns the last n lines of the log of the attempt that stands
// for a job (api.LatestAttempt).
func logTail(ctx context.Context, c *api.Client, j api.JobStatus, n int) ([]string, error) {
	const maxTail = 256 << 10
	var rc io.ReadCloser
	var err error
	if last := api.LatestAttempt(j.Attempts); last != nil {
		rc, err = c.AttemptLog(ctx, last.ID, max(last.LogBytes-maxTail, 0), false)
	} else {
		rc, err = c.JobLog(ctx, j.ID)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTail {
		data = data[len(data)-maxTail:]
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return []string{"(empty log)"}, nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// summary formats job counts in a fixed order.
func summary(counts map[api.JobState]int) string {
	order := []api.JobState{api.JobSucceeded, api.JobCached, api.JobFailed, api.JobSkipped, api.JobCancelled, api.JobRunning, api.JobQueued, api.JobWaiting}
	var parts []string
	for _, s := range order {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(parts) == 0 {
		return "no jobs"
	}
	return strings.Join(parts, ", ")
}
