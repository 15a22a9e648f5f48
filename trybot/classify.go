package trybot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/trybot/client"
	"github.com/tryd-ci/tryd/trybot/postsubmit"
)

// DefaultFlakyRetries is how often the failed jobs of a try build run
// again at the same revision when trybot.flaky_retries is not set.
const DefaultFlakyRetries = 1

// maxClassifyAttempts bounds the attempts to classify one build's
// failures: past it the failures count as new, and the run reports.
const maxClassifyAttempts = 3

// needsClassify reports whether build b failed by the change's own jobs
// and those were not classified yet.
func needsClassify(b client.Build) bool {
	if b.State != client.BuildFailed || b.ClassifyError != "" {
		return false
	}
	for _, j := range b.Failed {
		if !j.Infra && j.Classification == "" {
			return true
		}
	}
	return false
}

// classifyBuild classifies the failures of build i of ar's run (see
// postsubmit.Builder.Classify): run again at the same revision to find
// flakes, then compared with the change's base. The result is stored with
// the run (and in the classifications table) before the builder's result
// is posted, so that a restart neither loses nor redoes it.
func (t *Trybot) classifyBuild(ctx context.Context, ar *activeRun, rep reporter, i int) error {
	r := t.snapshot(ar)
	b := r.Builds[i]
	if !needsClassify(b) {
		return nil
	}
	// A classification recorded before a crash (the run's data and the
	// table are written together, so this only matters for data written
	// by hand) is taken as is.
	known, err := t.store.classifications(ctx, r.ID, b.Builder)
	if err != nil {
		return err
	}
	classes := map[string]string{}
	var failed []string
	for _, j := range b.Failed {
		if j.Infra {
			continue
		}
		if c, ok := known[j.Name]; ok {
			classes[j.Name] = c
			continue
		}
		failed = append(failed, j.Name)
	}
	base := r.Base
	var cerr error
	if len(failed) > 0 && base == "" {
		err := t.retry(ctx, "find the base revision", func() error {
			var err error
			base, err = rep.base(ctx, r)
			if errors.Is(err, errNoBase) {
				return permanent{err}
			}
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cerr = err
		}
	}
	if len(failed) > 0 && cerr == nil {
		req := postsubmit.ClassifyRequest{
			Repo: r.Repo, Builder: b.Builder,
			Source:  graph.Source{Repo: t.opts.Gitmirror.RepoURL(r.Repo), Revision: r.Revision},
			Base:    base,
			Failed:  failed,
			Retries: t.flakyRetries,
			Labels:  map[string]string{"trybot_run": strconv.FormatInt(r.ID, 10)},
		}
		var got map[string]postsubmit.Classification
		for attempt := 1; ; attempt++ {
			got, cerr = t.classifier.Classify(ctx, req)
			if cerr == nil || ctx.Err() != nil || attempt == maxClassifyAttempts ||
				errors.Is(cerr, postsubmit.ErrUnknown) || errors.Is(cerr, postsubmit.ErrBadRevision) || errors.Is(cerr, api.ErrBadRequest) {
				break
			}
			t.log.WithError(cerr).WithField("run", r.ID).Warn("trybot: classify failures: retrying")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, name := range failed {
			if c, ok := got[name]; ok {
				classes[name] = string(c)
			}
		}
	}
	msg := ""
	if cerr != nil {
		msg = cerr.Error()
		t.log.WithError(cerr).WithFields(map[string]any{"run": r.ID, "builder": b.Builder}).Warn("trybot: failures not classified; they count as new")
	}
	ar.mu.Lock()
	if ar.superseded {
		ar.mu.Unlock()
		return context.Canceled
	}
	if ar.run.Base == "" {
		ar.run.Base = base
	}
	nb := &ar.run.Builds[i]
	nb.Failed = append([]client.FailedJob(nil), nb.Failed...)
	for k := range nb.Failed {
		if c, ok := classes[nb.Failed[k].Name]; ok && !nb.Failed[k].Infra {
			nb.Failed[k].Classification = c
		}
	}
	if cerr != nil || len(classes) < len(failed) {
		nb.ClassifyError = or(msg, "some failures were not classified")
	}
	snap := cloneRun(ar.run)
	ar.mu.Unlock()
	return t.store.updateClassified(ctx, snap, b.Builder, classes)
}

// errNoBase marks a change whose base revision cannot be known.
var errNoBase = errors.New("trybot: no base revision")

// buildVerdict sums up the classified failures of build b; failures not
// classified count as new.
func buildVerdict(b client.Build) postsubmit.Verdict {
	classes := map[string]postsubmit.Classification{}
	for _, j := range b.Failed {
		if j.Infra {
			continue
		}
		classes[j.Name] = classOf(j)
	}
	return postsubmit.Summarize(classes)
}

func classOf(j client.FailedJob) postsubmit.Classification {
	switch j.Classification {
	case client.ClassPreExisting:
		return postsubmit.ClassPreExisting
	case client.ClassFlaky:
		return postsubmit.ClassFlaky
	}
	return postsubmit.ClassNew
}

// runVerdict sums up the failures of every failed build of r (job names
// prefixed by their builder when several builders failed).
func runVerdict(r *client.Run) postsubmit.Verdict {
	var failed []client.Build
	for _, b := range r.Builds {
		if b.State == client.BuildFailed {
			failed = append(failed, b)
		}
	}
	classes := map[string]postsubmit.Classification{}
	for _, b := range failed {
		for _, j := range b.Failed {
			if j.Infra {
				continue
			}
			name := j.Name
			if len(failed) > 1 {
				name = b.Builder + ": " + name
			}
			classes[name] = classOf(j)
		}
	}
	return postsubmit.Summarize(classes)
}

// vote is the result vote of a finished run: +1 when it succeeded
// (failures that passed when run again included), 0 (no vote) for
// infrastructure failures, and for failed runs Verdict.Vote: -1 with any
// new failure, trybot.preexisting_vote when all failures are
// pre-existing.
func (t *Trybot) vote(r *client.Run) int {
	switch outcome(r) {
	case client.StateSucceeded:
		return 1
	case client.StateFailed:
		return runVerdict(r).Vote(t.preexistingVote)
	}
	return 0
}

// buildConclusion is a failed build's check run conclusion and title.
func (t *Trybot) buildConclusion(b client.Build) (conclusion, title string) {
	v := buildVerdict(b)
	switch v.Vote(t.preexistingVote) {
	case 1:
		if len(v.PreExisting) > 0 {
			return "success", "Pre-existing failures only (they fail at the base revision too)"
		}
		return "success", "Passed (failures were flaky: they passed when run again)"
	case 0:
		return "neutral", "Pre-existing failures only (they fail at the base revision too)"
	}
	return "failure", "Failed"
}

func (t *Trybot) newClassifier() (*postsubmit.Builder, error) {
	cfg := t.opts.Config
	var repos []postsubmit.Repo
	for _, r := range cfg.Repos {
		repos = append(repos, postsubmit.Repo{Name: r.Name, URL: t.opts.Gitmirror.RepoURL(r.Name), Branches: r.Branches})
	}
	b, err := postsubmit.New(postsubmit.Options{
		Coordinator: t.opts.Coordinator, Planner: t.builders, Repos: repos, Builders: cfg.Builders,
		Dir: filepath.Join(t.opts.Dir, "postsubmit"), PollInterval: -1, Log: t.log, Now: t.opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("trybot: classifier: %w", err)
	}
	return b, nil
}
