package postsubmit

import (
	"context"
	"fmt"
	"slices"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Classification says why a job of a try run failed.
type Classification string

// Classifications of failed jobs (the `classification` field of failed
// jobs in the trybot's JSON).
const (
	// ClassNew: the job passes at the change's base revision (or does not
	// exist there): the change broke it.
	ClassNew Classification = "new"
	// ClassPreExisting: the job fails at the base revision too.
	ClassPreExisting Classification = "pre-existing"
	// ClassFlaky: the job passed when run again at the same revision.
	ClassFlaky Classification = "flaky"
)

// ClassifyRequest describes the failures of one builder's build of a try
// run.
type ClassifyRequest struct {
	// Repo is the repository's name (the repo label of post-submit
	// builds) and Builder the builder.
	Repo, Builder string
	// Source is the try run's source; Base is the change's parent on its
	// branch (a full commit hash of the same repository URL).
	Source graph.Source
	Base   string
	// Failed are the names of the failed jobs.
	Failed []string
	// Retries is how often the failed jobs run again at Source to detect
	// flakes (0: never).
	Retries int
	// Labels are added to the builds Classify submits (e.g. the try
	// run's), besides kind.
	Labels map[string]string
}

// Classify runs the failed jobs of a try build again at the same revision
// (up to Retries times; jobs whose results are cached are not rerun, so
// only the failed jobs and what they skipped run) and, for those still
// failing, looks at the base revision: the post-submit build of Base by
// Builder when there is one, otherwise a base build it submits. It
// returns a classification for every failed job.
func (b *Builder) Classify(ctx context.Context, req ClassifyRequest) (map[string]Classification, error) {
	if _, ok := b.builders[req.Builder]; !ok {
		return nil, fmt.Errorf("%w builder %q", ErrUnknown, req.Builder)
	}
	if !hashRE.MatchString(req.Base) {
		return nil, fmt.Errorf("%w: base %q is not a full commit hash", ErrBadRevision, req.Base)
	}
	out := map[string]Classification{}
	pending := slices.Clone(req.Failed)
	for try := 0; try < req.Retries && len(pending) > 0; try++ {
		l := copyLabels(req.Labels)
		l["kind"] = "try"
		l["retry"] = fmt.Sprint(try + 1)
		l[LabelBuilder] = req.Builder
		states, err := b.runAndWait(ctx, req.Builder, req.Source, api.PriorityTry, l)
		if err != nil {
			return nil, err
		}
		var still []string
		for _, name := range pending {
			if states[name].OK() {
				out[name] = ClassFlaky
			} else {
				still = append(still, name)
			}
		}
		pending = still
	}
	if len(pending) == 0 {
		return out, nil
	}
	base, err := b.baseStates(ctx, req)
	if err != nil {
		return nil, err
	}
	for _, name := range pending {
		if s, ok := base[name]; ok && s == api.JobFailed {
			out[name] = ClassPreExisting
		} else {
			out[name] = ClassNew
		}
	}
	return out, nil
}

// baseStates returns the job states of Builder at the base revision:
// from its finished post-submit (or earlier base) build, else from a new
// base build.
func (b *Builder) baseStates(ctx context.Context, req ClassifyRequest) (map[string]api.JobState, error) {
	for _, kind := range []string{KindPostSubmit, KindBase} {
		bs, err := b.opts.Coordinator.Builds(ctx, api.ListOptions{Labels: map[string]string{
			LabelRepo: req.Repo, LabelRevision: req.Base, LabelBuilder: req.Builder, LabelKind: kind}, Limit: 5})
		if err != nil {
			return nil, fmt.Errorf("postsubmit: base builds: %w", err)
		}
		for _, bl := range bs {
			if bl.State == api.BuildCancelled {
				continue
			}
			full, err := b.opts.Coordinator.Build(ctx, bl.ID)
			if err != nil {
				return nil, fmt.Errorf("postsubmit: base build %d: %w", bl.ID, err)
			}
			if !full.State.Finished() {
				if full, err = b.opts.Coordinator.Wait(ctx, bl.ID, nil); err != nil {
					return nil, fmt.Errorf("postsubmit: base build %d: %w", bl.ID, err)
				}
			}
			return jobStates(full), nil
		}
	}
	src := graph.Source{Repo: req.Source.Repo, Revision: req.Base}
	if r, ok := b.repos[req.Repo]; ok {
		src.Repo = r.URL
	}
	l := copyLabels(req.Labels)
	l[LabelRepo], l[LabelRevision], l[LabelBuilder], l[LabelKind] = req.Repo, req.Base, req.Builder, KindBase
	// A base build serves a waiting try run: try priority.
	return b.runAndWait(ctx, req.Builder, src, api.PriorityTry, l)
}

func (b *Builder) runAndWait(ctx context.Context, builder string, src graph.Source, prio api.Priority, l map[string]string) (map[string]api.JobState, error) {
	g, err := b.opts.Planner.Plan(builder, src)
	if err != nil {
		return nil, fmt.Errorf("postsubmit: plan %s at %s: %w", builder, src.Revision, err)
	}
	resp, err := b.opts.Coordinator.Submit(ctx, api.SubmitRequest{Graph: *g, Priority: prio, Labels: l})
	if err != nil {
		return nil, fmt.Errorf("postsubmit: submit %s at %s: %w", builder, src.Revision, err)
	}
	full, err := b.opts.Coordinator.Wait(ctx, resp.BuildID, nil)
	if err != nil {
		return nil, fmt.Errorf("postsubmit: wait for build %d: %w", resp.BuildID, err)
	}
	return jobStates(full), nil
}

// jobStates returns the state of each job of b by name. A job that
// failed without its commands failing (its worker lost, its source
// unavailable) is left out: it says nothing about the revision, so a try
// failure is not called pre-existing (nor flaky) on its account.
func jobStates(b *api.Build) map[string]api.JobState {
	m := make(map[string]api.JobState, len(b.Jobs))
	for _, j := range b.Jobs {
		if j.State == api.JobFailed {
			a := api.LatestAttempt(j.Attempts)
			if a == nil || (a.State != api.AttemptFailed && a.State != api.AttemptTimedOut) {
				continue
			}
		}
		m[j.Name] = j.State
	}
	return m
}

func copyLabels(l map[string]string) map[string]string {
	c := make(map[string]string, len(l)+4)
	for k, v := range l {
		c[k] = v
	}
	return c
}

// Verdict sums up the classified failures of a try run (of one builder
// or of all), for the TryBot-Result message, check runs and the vote.
type Verdict struct {
	New, PreExisting, Flaky []string // job names, sorted
}

// Summarize groups classifications by kind.
func Summarize(classes map[string]Classification) Verdict {
	var v Verdict
	for name, c := range classes {
		switch c {
		case ClassPreExisting:
			v.PreExisting = append(v.PreExisting, name)
		case ClassFlaky:
			v.Flaky = append(v.Flaky, name)
		default:
			v.New = append(v.New, name)
		}
	}
	slices.Sort(v.New)
	slices.Sort(v.PreExisting)
	slices.Sort(v.Flaky)
	return v
}

// OnlyPreExisting reports whether every real failure also fails at the
// base revision: no new failure and at least one pre-existing one.
func (v Verdict) OnlyPreExisting() bool { return len(v.New) == 0 && len(v.PreExisting) > 0 }

// Vote is the result vote: -1 with any new failure, preexistingVote (the
// trybot.preexisting_vote setting: -1, 0 or +1) when the only failures are
// pre-existing, +1 otherwise (flakes passed on retry).
func (v Verdict) Vote(preexistingVote int) int {
	switch {
	case len(v.New) > 0:
		return -1
	case len(v.PreExisting) > 0:
		return max(-1, min(1, preexistingVote))
	}
	return 1
}

// Message says which failures are which, one line per kind, e.g.
//
//	New failures (pass at the base revision): test ./x
//	Pre-existing failures (fail at the base revision too): vet ./y
//	Flaky (passed when run again): test ./z
func (v Verdict) Message() string {
	var lines []string
	add := func(title string, names []string) {
		if len(names) == 0 {
			return
		}
		const max = 20
		list := names
		more := ""
		if len(list) > max {
			list, more = list[:max], fmt.Sprintf(" and %d more", len(names)-max)
		}
		lines = append(lines, fmt.Sprintf("%s: %s%s", title, joinNames(list), more))
	}
	add("New failures (pass at the base revision)", v.New)
	add("Pre-existing failures (fail at the base revision too)", v.PreExisting)
	add("Flaky (passed when run again)", v.Flaky)
	if v.OnlyPreExisting() {
		lines = append(lines, "This change adds no failures: every failure also happens without it.")
	}
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "\n"
		}
		out += l
	}
	return out
}

func joinNames(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += clip(n)
	}
	return out
}
