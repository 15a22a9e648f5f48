package trybot

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot/goplan"
)

// Builders is the configured set of builders and SlowBot aliases, and
// plans each builder's graph.
type Builders struct {
	byName  map[string]config.Builder
	names   []string
	aliases map[string][]string
}

// DefaultJobTimeout bounds a builder's jobs when its config sets none.
const DefaultJobTimeout = 20 * time.Minute

// NewBuilders validates the builders of a configuration. A builder with
// planner "go" and no steps is planned by the Go planner (goplan): its
// graph is a planner job that lists the module's packages on a worker.
func NewBuilders(bs []config.Builder, aliases map[string][]string) (*Builders, error) {
	b := &Builders{byName: map[string]config.Builder{}, aliases: map[string][]string{}}
	for _, c := range bs {
		if !termRE.MatchString(c.Name) {
			return nil, fmt.Errorf("trybot: builder %q: bad name", c.Name)
		}
		if _, dup := b.byName[c.Name]; dup {
			return nil, fmt.Errorf("trybot: builder %q defined twice", c.Name)
		}
		switch {
		case c.Planner == "go" && len(c.Steps) > 0:
			return nil, fmt.Errorf("trybot: builder %q: planner go plans the graph itself: remove its steps", c.Name)
		case c.Planner == "go":
		case c.Planner != "":
			return nil, fmt.Errorf("trybot: builder %q: unknown planner %q (known: go)", c.Name, c.Planner)
		case len(c.Steps) == 0:
			return nil, fmt.Errorf("trybot: builder %q has no steps", c.Name)
		}
		for i, s := range c.Steps {
			if (len(s.Run) == 0) == (s.Shell == "") {
				return nil, fmt.Errorf("trybot: builder %q step %d: set exactly one of run and shell", c.Name, i)
			}
		}
		b.byName[c.Name] = c
		b.names = append(b.names, c.Name)
	}
	sort.Strings(b.names)
	for a, names := range aliases {
		if _, ok := b.byName[a]; ok {
			return nil, fmt.Errorf("trybot: alias %q is also a builder", a)
		}
		for _, n := range names {
			if _, ok := b.byName[n]; !ok {
				return nil, fmt.Errorf("trybot: alias %q: unknown builder %q", a, n)
			}
		}
		b.aliases[strings.ToLower(a)] = slices.Clone(names)
	}
	return b, nil
}

// WithLabels returns copies of bs whose labels also hold extra (the
// trust domain's worker labels: trybot.try_labels for try runs,
// trybot.postsubmit_labels for post-submit builds), so that every job of
// their graphs, and every job a Go planner job plans, requires them. The
// labels are part of job IDs, so the two domains share no cached
// results either: a try run cannot plant a result that a post-submit
// build would reuse. bs is not modified.
func WithLabels(bs []config.Builder, extra map[string]string) []config.Builder {
	out := slices.Clone(bs)
	if len(extra) == 0 {
		return out
	}
	for i := range out {
		l := make(map[string]string, len(out[i].Labels)+len(extra))
		maps.Copy(l, out[i].Labels)
		maps.Copy(l, extra)
		out[i].Labels = l
	}
	return out
}

// Names returns every builder name, sorted.
func (b *Builders) Names() []string { return slices.Clone(b.names) }

// applies reports whether builder c runs for changes of repo to branch.
func applies(c config.Builder, repo, branch string) bool {
	if len(c.Repos) > 0 && !slices.Contains(c.Repos, repo) {
		return false
	}
	if len(c.Branches) > 0 && branch != "" && !slices.Contains(c.Branches, branch) {
		return false
	}
	return true
}

// Select returns the builders of a try run of repo's branch: the default
// try set plus the SlowBots named by terms (builder names or aliases,
// case-insensitive). Terms that name nothing, or name builders that do
// not build this repository or branch, are returned in unknown (with the
// reason) so they can be told to the user.
func (b *Builders) Select(repo, branch string, terms []string) (builders, unknown []string) {
	set := map[string]bool{}
	for _, n := range b.names {
		if c := b.byName[n]; c.InTrySet() && applies(c, repo, branch) {
			set[n] = true
		}
	}
	for _, t := range terms {
		var names []string
		if _, ok := b.byName[t]; ok {
			names = []string{t}
		} else if a, ok := b.aliases[strings.ToLower(t)]; ok {
			names = a
		} else {
			for _, n := range b.names {
				if strings.EqualFold(n, t) {
					names = []string{n}
				}
			}
		}
		if len(names) == 0 {
			unknown = append(unknown, t)
			continue
		}
		for _, n := range names {
			if applies(b.byName[n], repo, branch) {
				set[n] = true
			} else {
				unknown = append(unknown, fmt.Sprintf("%s (does not build %s)", n, repo))
			}
		}
	}
	for n := range set {
		builders = append(builders, n)
	}
	sort.Strings(builders)
	return builders, unknown
}

// Plan returns the graph of builder name for source src. A builder with
// planner "go" gets goplan.BuilderGraph: one planner job, run by `tryd
// goplan` on a worker (the worker puts its own tryd on the job's PATH),
// whose per-package fragment the coordinator splices in, so unchanged
// packages hit the result cache. Any other builder gets one job per
// step, each depending on the previous one, on the builder's labels.
func (b *Builders) Plan(name string, src graph.Source) (*graph.Graph, error) {
	c, ok := b.byName[name]
	if !ok {
		return nil, fmt.Errorf("trybot: plan: unknown builder %q", name)
	}
	if c.Planner == "go" {
		return goplan.BuilderGraph(c, src), nil
	}
	g := &graph.Graph{Source: src}
	timeout := time.Duration(c.Timeout)
	if timeout == 0 {
		timeout = DefaultJobTimeout
	}
	prev := ""
	for i, s := range c.Steps {
		jobName := s.Name
		if jobName == "" {
			jobName = fmt.Sprintf("step%d", i+1)
		}
		cmd := goplan.StepCommand(s.Run, s.Shell, s.Dir, s.Env)
		j := &graph.Job{
			Name:      jobName,
			Commands:  []graph.Command{cmd},
			Labels:    c.Labels,
			Timeout:   graph.Duration(timeout),
			Cacheable: true,
		}
		if prev != "" {
			j.Deps = []string{prev}
		}
		prev = jobName
		g.Jobs = append(g.Jobs, j)
	}
	return g, nil
}

// Limits on SlowBot requests.
const (
	maxTerms   = 50
	maxTermLen = 100
)

var termRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// ParseTerms splits a SlowBot request ("linux-amd64, race windows") into
// terms. Malformed terms are kept (truncated) so that they are reported
// back as unknown rather than silently dropped; at most maxTerms are
// returned and duplicates are removed.
func ParseTerms(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if len(f) > maxTermLen {
			f = f[:maxTermLen] + "…"
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
		if len(out) == maxTerms {
			break
		}
	}
	return out
}

// TryLine finds a "TRY=..." line in a Gerrit message and returns what
// follows "TRY=". ok is false when the message has none.
func TryLine(msg string) (terms string, ok bool) {
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if rest, found := strings.CutPrefix(line, "TRY="); found {
			terms, ok = rest, true
		}
	}
	return terms, ok
}

// CommandArgs reports whether a GitHub comment is the command (e.g.
// "/trybot linux-amd64,race") and returns its arguments: the command
// must start a line of its own.
func CommandArgs(body, command string) (args string, ok bool) {
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if line == command {
			return "", true
		}
		if rest, found := strings.CutPrefix(line, command+" "); found {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}
