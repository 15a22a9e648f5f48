package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

func marshalGraph(g *graph.Graph) ([]byte, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("coordinator: encode graph: %w", err)
	}
	return b, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// statusLocked renders a build in memory.
func (c *Coordinator) statusLocked(b *build, withJobs bool) *api.Build {
	out := &api.Build{
		ID: b.id, State: b.state, Priority: b.priority, Labels: b.labels, Created: b.created,
		Finished: timePtr(b.finishedAt), Counts: map[api.JobState]int{}, Error: b.err,
		Source: srcSummary(b.g.Source),
	}
	for _, j := range b.order {
		out.Counts[j.state]++
	}
	if !withJobs {
		return out
	}
	out.Jobs = make([]api.JobStatus, 0, len(b.order))
	for _, j := range b.order {
		js := api.JobStatus{
			ID: j.g.ID, Name: j.g.Name, State: j.state, Deps: j.g.Deps, Worker: j.worker, OutputDigest: j.output,
			ExitCode: j.exit, Error: j.errMsg, Started: timePtr(j.started), Finished: timePtr(j.finished),
			Planner: j.g.Planner, CachedFrom: j.cachedFrom,
		}
		for _, a := range j.attempts {
			js.Attempts = append(js.Attempts, a.rec)
		}
		out.Jobs = append(out.Jobs, js)
	}
	return out
}

// Build returns a build's status.
func (c *Coordinator) Build(ctx context.Context, id int64) (*api.Build, error) {
	c.mu.Lock()
	if b, ok := c.builds[id]; ok {
		out := c.statusLocked(b, true)
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	return c.buildFromStore(ctx, id)
}

// buildFromStore renders a build that is no longer in memory.
func (c *Coordinator) buildFromStore(ctx context.Context, id int64) (*api.Build, error) {
	sb, err := c.store.Build(ctx, id)
	if err != nil {
		return nil, storeErr(fmt.Sprintf("build %d", id), err)
	}
	jobs, err := c.store.Jobs(ctx, id)
	if err != nil {
		return nil, storeErr(fmt.Sprintf("build %d", id), err)
	}
	atts, err := c.store.Attempts(ctx, id)
	if err != nil {
		return nil, storeErr(fmt.Sprintf("build %d", id), err)
	}
	var g graph.Graph
	if err := json.Unmarshal(sb.Graph, &g); err != nil {
		return nil, fmt.Errorf("coordinator: build %d: stored graph: %w", id, err)
	}
	deps := map[string][]string{}
	planner := map[string]bool{}
	for _, j := range g.Jobs {
		deps[j.ID], planner[j.ID] = j.Deps, j.Planner
	}
	byJob := map[string][]api.Attempt{}
	for _, a := range atts {
		byJob[a.JobID] = append(byJob[a.JobID], a)
	}
	out := buildRecord(sb)
	out.Source = srcSummary(g.Source)
	for _, j := range jobs {
		out.Counts[j.State]++
		out.Jobs = append(out.Jobs, api.JobStatus{
			ID: j.JobID, Name: j.Name, State: j.State, Deps: deps[j.JobID], Worker: j.Worker, OutputDigest: j.OutputDigest,
			ExitCode: j.ExitCode, Error: j.Error, Attempts: byJob[j.JobID], Started: timePtr(j.Started), Finished: timePtr(j.Finished),
			Planner: planner[j.JobID],
		})
	}
	return out, nil
}

func buildRecord(sb *state.Build) *api.Build {
	return &api.Build{
		ID: sb.ID, State: sb.State, Priority: sb.Priority, Labels: sb.Labels, Created: sb.Created,
		Finished: timePtr(sb.Finished), Counts: map[api.JobState]int{}, Error: sb.Error,
	}
}

// Builds lists builds, newest first. Builds in memory report live counts.
func (c *Coordinator) Builds(ctx context.Context, opts api.ListOptions) ([]api.Build, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = 50
	}
	if limit > 1000 {
		limit = 1000
	}
	bs, err := c.store.ListBuilds(ctx, state.Filter{State: opts.State, Labels: opts.Labels, Before: opts.Before, Limit: limit})
	if err != nil {
		return nil, storeErr("list builds", err)
	}
	ids := make([]int64, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	var counts map[int64]map[api.JobState]int
	if jc, ok := c.store.(state.JobCounter); ok {
		if counts, err = jc.JobCounts(ctx, ids); err != nil {
			return nil, storeErr("list builds", err)
		}
	}
	out := make([]api.Build, 0, len(bs))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range bs {
		if b, ok := c.builds[bs[i].ID]; ok {
			out = append(out, *c.statusLocked(b, false))
			continue
		}
		r := buildRecord(&bs[i])
		if cs := counts[r.ID]; cs != nil {
			r.Counts = cs
		}
		out = append(out, *r)
	}
	return out, nil
}

// Events streams a build's events from index from (if epoch is this
// coordinator's epoch; else from 0) to fn until the build finishes, fn
// fails or ctx ends. The first event is always a hello.
func (c *Coordinator) Events(ctx context.Context, id int64, from int, epoch string, fn func([]api.Event) error) error {
	c.mu.Lock()
	b, ok := c.builds[id]
	if !ok {
		c.mu.Unlock()
		return c.eventsFromStore(ctx, id, fn)
	}
	switch {
	case epoch != c.epoch || from < 0 || from > len(b.events):
		// Unknown position: replay from the start.
		from = 0
	case b.state.Finished() && from == len(b.events) && from > 0:
		// Always end a stream with build_finished.
		from--
	}
	hello := api.Event{Type: api.EventHello, Time: c.clock.Now(), Epoch: c.epoch, Count: len(b.events), Index: -1}
	c.mu.Unlock()
	if err := fn([]api.Event{hello}); err != nil {
		return err
	}
	for {
		c.mu.Lock()
		if c.builds[id] != b && !b.state.Finished() {
			// Dropped: another replica took the build (this one's
			// lease expired). The stream ends without build_finished,
			// and the client reconnects to the new holder.
			c.mu.Unlock()
			return fmt.Errorf("coordinator: build %d moved to another replica: %w", id, api.ErrUnavailable)
		}
		var evs []api.Event
		if from < len(b.events) {
			evs = append(evs, b.events[from:]...)
			from = len(b.events)
		}
		done := b.state.Finished() && from == len(b.events)
		ch := b.watch()
		c.mu.Unlock()
		if len(evs) > 0 {
			if err := fn(evs); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return errNotRunning
		}
	}
}

// eventsFromStore replays a finished (or not yet restored) build's final
// state as events.
func (c *Coordinator) eventsFromStore(ctx context.Context, id int64, fn func([]api.Event) error) error {
	b, err := c.buildFromStore(ctx, id)
	if err != nil {
		return err
	}
	evs := []api.Event{{Type: api.EventHello, Time: c.clock.Now(), Epoch: c.epoch, Index: -1}}
	for _, j := range b.Jobs {
		typ := api.EventJobFinished
		switch j.State {
		case api.JobCached:
			typ = api.EventJobCached
		case api.JobSkipped:
			typ = api.EventJobSkipped
		}
		t := b.Created
		if j.Finished != nil {
			t = *j.Finished
		}
		evs = append(evs, api.Event{Index: len(evs) - 1, Type: typ, Time: t, JobID: j.ID, JobName: j.Name, State: j.State, Worker: j.Worker, ExitCode: j.ExitCode, Error: j.Error})
	}
	if !b.State.Finished() {
		// Running but not in memory: the coordinator is restoring it.
		return fmt.Errorf("build %d is being restored: %w", id, api.ErrUnavailable)
	}
	t := b.Created
	if b.Finished != nil {
		t = *b.Finished
	}
	evs = append(evs, api.Event{Index: len(evs) - 1, Type: api.EventBuildFinished, Time: t, BuildState: b.State, Error: b.Error})
	return fn(evs)
}

// AttemptLog writes an attempt's log from offset to w. With follow it
// keeps writing until the attempt ends or ctx is done; flush is called
// after each write.
func (c *Coordinator) AttemptLog(ctx context.Context, id string, offset int64, follow bool, w io.Writer, flush func()) error {
	if !attemptIDRE.MatchString(id) {
		return fmt.Errorf("attempt %q: %w", truncate(id), api.ErrNotFound)
	}
	c.mu.Lock()
	_, running := c.attempts[id]
	c.mu.Unlock()
	if !running {
		// A finished attempt is in the store, or still only in memory
		// (its result acknowledged early, the commit under way): reads
		// see every answered write.
		if _, err := c.store.Attempt(ctx, id); err != nil && (!errors.Is(err, state.ErrNotFound) || !c.attemptInMemory(id)) {
			return storeErr("attempt "+id, err)
		}
	}
	for {
		rc, err := c.logs.open(id, offset)
		if err != nil {
			return err
		}
		n, err := io.Copy(w, rc)
		rc.Close()
		offset += n
		if err != nil {
			return err
		}
		if flush != nil && n > 0 {
			flush()
		}
		if !follow {
			return nil
		}
		c.mu.Lock()
		a, running := c.attempts[id]
		var ch <-chan struct{}
		if running {
			ch = a.j.b.watch()
		}
		c.mu.Unlock()
		if !running {
			// Copy whatever arrived between the read and the check.
			rc, err := c.logs.open(id, offset)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, rc)
			rc.Close()
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		case <-c.ctx.Done():
			return nil
		}
	}
}

// latestAttempt returns the attempt whose log and output stand for a job
// ID: the latest successful one, else the latest not abandoned (see
// api.LatestAttempt).
func (c *Coordinator) latestAttempt(ctx context.Context, jobID string) (*api.Attempt, error) {
	if !graph.IsID(jobID) {
		return nil, fmt.Errorf("job %q: %w", truncate(jobID), api.ErrNotFound)
	}
	atts, err := c.store.JobAttempts(ctx, jobID)
	if err != nil {
		return nil, storeErr("job "+jobID, err)
	}
	// Attempts in memory (running, or finished and maybe not committed
	// yet) override the stored ones: reads see every acknowledged write.
	byID := map[string]int{}
	for i, a := range atts {
		byID[a.ID] = i
	}
	c.mu.Lock()
	for _, b := range c.builds {
		j := b.jobs[jobID]
		if j == nil {
			continue
		}
		for _, a := range j.attempts {
			if i, ok := byID[a.rec.ID]; ok {
				atts[i] = a.rec
			} else {
				byID[a.rec.ID] = len(atts)
				atts = append(atts, a.rec)
			}
		}
	}
	c.mu.Unlock()
	if len(atts) == 0 {
		return nil, fmt.Errorf("job %s has no attempts: %w", jobID, api.ErrNotFound)
	}
	sort.SliceStable(atts, func(i, k int) bool { return atts[i].Started.Before(atts[k].Started) })
	for i := len(atts) - 1; i >= 0; i-- {
		if atts[i].State == api.AttemptSucceeded {
			return &atts[i], nil
		}
	}
	return api.LatestAttempt(atts), nil
}

// JobLog writes the log of a job ID's latest attempt.
func (c *Coordinator) JobLog(ctx context.Context, jobID string, w io.Writer) error {
	a, err := c.latestAttempt(ctx, jobID)
	if err != nil {
		return err
	}
	return c.AttemptLog(ctx, a.ID, 0, false, w, nil)
}

// JobResult returns the cached result of a job ID.
func (c *Coordinator) JobResult(ctx context.Context, jobID string) (*api.JobResult, error) {
	if !graph.IsID(jobID) {
		return nil, fmt.Errorf("job %q: %w", truncate(jobID), api.ErrNotFound)
	}
	c.mu.Lock()
	r, ok := c.results[jobID]
	c.mu.Unlock()
	if !ok {
		rs, err := c.store.Results(ctx, []string{jobID})
		if err != nil {
			return nil, storeErr("job "+jobID, err)
		}
		if r, ok = rs[jobID]; !ok {
			return nil, fmt.Errorf("job %s has no cached result: %w", jobID, api.ErrNotFound)
		}
	}
	return &api.JobResult{JobID: r.JobID, OutputDigest: r.OutputDigest, AttemptID: r.AttemptID, BuildID: r.BuildID, Finished: r.Finished}, nil
}

// JobOutput opens the output archive of a job ID.
func (c *Coordinator) JobOutput(ctx context.Context, jobID string) (io.ReadCloser, int64, error) {
	digest := ""
	if r, err := c.JobResult(ctx, jobID); err == nil {
		digest = r.OutputDigest
	} else if !errors.Is(err, api.ErrNotFound) {
		return nil, 0, err
	} else {
		a, err := c.latestAttempt(ctx, jobID)
		if err != nil {
			return nil, 0, err
		}
		if a.State != api.AttemptSucceeded {
			return nil, 0, fmt.Errorf("job %s has no output: %w", jobID, api.ErrNotFound)
		}
		digest = a.OutputDigest
	}
	return c.OpenArtifact(ctx, digest)
}

// OpenArtifact opens a blob of the artifact store.
func (c *Coordinator) OpenArtifact(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	rc, n, err := c.arts.Open(ctx, digest)
	if errors.Is(err, artifacts.ErrNotFound) || errors.Is(err, artifacts.ErrBadDigest) {
		return nil, 0, fmt.Errorf("artifact %s: %w", truncate(digest), api.ErrNotFound)
	}
	return rc, n, err
}

// Workers lists connected workers and those known from the store.
func (c *Coordinator) Workers(ctx context.Context) ([]api.Worker, error) {
	known, err := c.store.Workers(ctx)
	if err != nil {
		return nil, storeErr("workers", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []api.Worker{}
	seen := map[string]bool{}
	for _, s := range c.sessions {
		if s.slots == 0 { // restored placeholder: not connected yet
			continue
		}
		w := api.Worker{Name: s.name, ID: s.id, Labels: s.labels, Slots: s.slots, Version: s.version, LastSeen: s.lastSeen, Connected: true, Running: []string{}}
		for id := range s.running {
			w.Running = append(w.Running, id)
		}
		sort.Strings(w.Running)
		out = append(out, w)
		seen[s.name] = true
	}
	for _, k := range known {
		if !seen[k.Name] {
			out = append(out, api.Worker{Name: k.Name, Labels: k.Labels, Slots: k.Slots, Version: k.Version, LastSeen: k.LastSeen, Running: []string{}})
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// srcSummary is a source without its file list (which can be large).
func srcSummary(s graph.Source) graph.Source {
	return graph.Source{Repo: s.Repo, Revision: s.Revision}
}

// attemptInMemory reports whether a build in memory has an attempt of
// this ID (running or finished, committed or not). It looks at
// every job of the builds in memory: only reads the store could not
// answer come here.
func (c *Coordinator) attemptInMemory(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.builds {
		for _, j := range b.order {
			for _, a := range j.attempts {
				if a.rec.ID == id {
					return true
				}
			}
		}
	}
	return false
}
