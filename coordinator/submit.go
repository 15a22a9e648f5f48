package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

var buildLabelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)

// maxBuildLabels bounds the metadata labels of one build.
const maxBuildLabels = 32

func badRequest(err error) error { return fmt.Errorf("%w: %w", api.ErrBadRequest, err) }

// Submit validates a graph, reuses cached results, stores the build
// durably and queues its ready jobs. It returns the build ID and the
// normalized job IDs by name.
func (c *Coordinator) Submit(ctx context.Context, req api.SubmitRequest) (*api.SubmitResponse, error) {
	if c.ctx.Err() != nil {
		return nil, errNotRunning
	}
	g := &req.Graph
	if err := g.Normalize(); err != nil {
		return nil, badRequest(err)
	}
	prio := req.Priority
	if prio == "" {
		prio = api.PriorityTry
	}
	if prio.Rank() < 0 {
		return nil, badRequest(fmt.Errorf("unknown priority %q (want try, post-submit or periodic)", truncate(string(prio))))
	}
	if len(req.Labels) > maxBuildLabels {
		return nil, badRequest(fmt.Errorf("%d labels, more than %d", len(req.Labels), maxBuildLabels))
	}
	for k, v := range req.Labels {
		if !buildLabelRE.MatchString(k) || len(v) > 1024 || strings.ContainsAny(v, "\x00\n") {
			return nil, badRequest(fmt.Errorf("bad label %q", truncate(k)))
		}
	}
	// The graph is stored as JSON (~1.5 MB for 10,000 jobs, a few ms to
	// encode): encoded meanwhile on another core, as nothing changes it
	// until the build is registered.
	gjsonc := make(chan encodedGraph, 1)
	go func() {
		b, err := json.Marshal(g)
		gjsonc <- encodedGraph{b, err}
	}()
	now := c.clock.Now()
	b := newBuild(g, prio, req.Labels, now)

	// Pin before checking, so that nothing checked can be evicted before
	// the build is registered.
	var pins []string
	if len(g.Source.Files) > 0 {
		for _, f := range g.Source.Files {
			pins = append(pins, f.Digest)
		}
		pins = append(pins, b.source.Manifest)
	}
	c.pin(pins, 1)
	registered := false
	defer func() {
		if !registered {
			c.pin(pins, -1)
		}
	}()
	if err := c.checkFiles(ctx, g); err != nil {
		return nil, err
	}
	cached, err := c.lookupResults(ctx, b)
	if err != nil {
		return nil, err
	}
	outPins := make([]string, 0, len(cached))
	for _, r := range cached {
		outPins = append(outPins, r.OutputDigest)
	}
	c.pin(outPins, 1)
	pins = append(pins, outPins...)

	// Initial states: cached jobs are done; the rest wait for their
	// dependencies or are ready.
	for _, j := range b.order {
		if r, ok := cached[j.g.ID]; ok {
			j.state, j.output, j.finished = api.JobCached, r.OutputDigest, now
			j.cachedFrom = &api.JobResult{JobID: r.JobID, OutputDigest: r.OutputDigest, AttemptID: r.AttemptID, BuildID: r.BuildID, Finished: r.Finished}
			b.remaining--
		}
	}
	for _, j := range b.order {
		if j.state == api.JobWaiting {
			for _, d := range j.deps {
				if !d.state.OK() {
					j.waiting++
				}
			}
		}
	}
	enc := <-gjsonc
	if enc.err != nil {
		return nil, fmt.Errorf("coordinator: encode graph: %w", enc.err)
	}
	// Only the build (with its graph) must be written before the answer:
	// the jobs' initial states follow from the graph and the result
	// cache, so their rows go through the group committer and a restore
	// derives the states of jobs that have no row yet. A store that keeps
	// job sets takes the cached jobs with the build instead, as one
	// record: for a resubmitted graph of 10,000 cached jobs, SQLite
	// spends ~6 ms of CPU on the build with its graph and set, where the
	// build and 10,000 rows cost ~45 ms (sqlite's BenchmarkCachedBuild).
	var cachedRows []state.Job
	if js, ok := c.store.(state.JobSetter); ok && js.KeepsJobSets() && len(cached) > 0 {
		cachedRows = make([]state.Job, 0, len(cached))
		for _, j := range b.order {
			if j.state == api.JobCached {
				cachedRows = append(cachedRows, b.record(j))
			}
		}
	}
	id, err := c.store.CreateBuild(ctx, &state.Build{
		Priority: prio, Labels: req.Labels, Graph: enc.json, State: api.BuildRunning, Created: now,
	}, cachedRows)
	if err != nil {
		return nil, fmt.Errorf("coordinator: store build: %w: %w", api.ErrUnavailable, err)
	}
	b.id = id
	c.m.buildsSubmitted.Inc()
	resp := &api.SubmitResponse{BuildID: id, Jobs: make(map[string]string, len(g.Jobs))}
	for _, j := range g.Jobs {
		resp.Jobs[j.Name] = j.ID
	}
	if !c.holdSubmitted(ctx, id, &offeredBuild{g: g, prio: prio, labels: req.Labels, created: now, rows: cachedRows}) {
		// Another replica runs it (see ReplicaOptions).
		c.log.WithFields(map[string]any{"build": id, "jobs": len(b.order)}).Info("build submitted; left for another replica")
		return resp, nil
	}
	b.pinned = pins
	registered = true

	c.mu.Lock()
	defer c.mu.Unlock()
	c.builds[id] = b
	var rows []state.Job
	for _, j := range b.order {
		if j.waiting > 0 || (j.state == api.JobCached && cachedRows == nil) {
			rows = append(rows, b.record(j))
		}
	}
	if len(rows) > 0 {
		c.commit.jobList(rows)
	}
	b.events = slices.Grow(b.events, len(b.order))
	for _, j := range b.order {
		switch {
		case j.state == api.JobCached:
			b.event(jobEvent(api.EventJobCached, j, now))
		case j.waiting > 0:
		case j.waiting == 0:
			c.enqueue(j, now)
		}
	}
	if b.remaining == 0 {
		c.finishBuild(b, now)
	}
	c.wakeAll()
	c.log.WithFields(map[string]any{"build": id, "jobs": len(b.order), "cached": len(cached), "priority": prio}).Info("build submitted")
	return resp, nil
}

// encodedGraph is a graph encoded as JSON, or the error.
type encodedGraph struct {
	json []byte
	err  error
}

// checkFiles verifies that every uploaded file is stored, and stores the
// manifest (which workers fetch to lay out the source).
func (c *Coordinator) checkFiles(ctx context.Context, g *graph.Graph) error {
	if len(g.Source.Files) == 0 {
		return nil
	}
	var missing []string
	seen := map[string]bool{}
	for _, f := range g.Source.Files {
		if seen[f.Digest] {
			continue
		}
		seen[f.Digest] = true
		n, err := c.arts.Stat(ctx, f.Digest)
		switch {
		case errors.Is(err, artifacts.ErrNotFound):
			missing = append(missing, f.Digest)
		case err != nil:
			return fmt.Errorf("coordinator: check file %s: %w", f.Path, err)
		case n != f.Size:
			return badRequest(fmt.Errorf("source: file %q: size %d, but the stored blob has %d bytes", f.Path, f.Size, n))
		}
	}
	if len(missing) > 0 {
		return &api.MissingError{Digests: missing}
	}
	manifest, err := json.Marshal(g.Source.Files)
	if err != nil {
		return fmt.Errorf("coordinator: encode manifest: %w", err)
	}
	if err := c.arts.Put(ctx, g.Source.ManifestDigest(), bytes.NewReader(manifest)); err != nil {
		return fmt.Errorf("coordinator: store manifest: %w", err)
	}
	return nil
}

// lookupResults returns the cached results usable by the build's
// cacheable jobs: known to the cache and with their output still stored.
func (c *Coordinator) lookupResults(ctx context.Context, b *build) (map[string]state.Result, error) {
	// Sized for a resubmission, where every job is found: growing a map
	// of 10,000 results cost more than filling it.
	found := make(map[string]state.Result, len(b.order))
	var ask []string
	c.mu.Lock()
	for _, j := range b.order {
		// A planner always runs: its fragment must be spliced into this
		// build, and the fragment's jobs are cached on their own.
		if !j.g.Cacheable || j.g.Planner {
			continue
		}
		if r, ok := c.results[j.g.ID]; ok {
			found[j.g.ID] = r
		} else {
			ask = append(ask, j.g.ID)
		}
	}
	c.mu.Unlock()
	if len(ask) > 0 {
		rs, err := c.store.Results(ctx, ask)
		if err != nil {
			return nil, fmt.Errorf("coordinator: look up results: %w: %w", api.ErrUnavailable, err)
		}
		c.mu.Lock()
		for _, r := range rs {
			found[r.JobID] = r
			c.remember(r)
		}
		c.mu.Unlock()
	}
	stored := map[string]bool{}
	for id, r := range found {
		ok, seen := stored[r.OutputDigest]
		if !seen {
			_, err := c.arts.Stat(ctx, r.OutputDigest)
			ok = err == nil
			stored[r.OutputDigest] = ok
		}
		if !ok {
			// Evicted: the job runs again and replaces the result.
			delete(found, id)
		}
	}
	return found, nil
}

// maxRemembered bounds the in-memory copy of the result cache; the store
// holds all of it.
const maxRemembered = 1 << 20

// remember keeps a result in memory (under c.mu), forgetting an
// arbitrary half of the remembered ones when full.
func (c *Coordinator) remember(r state.Result) {
	if len(c.results) >= maxRemembered {
		n := 0
		for id := range c.results {
			delete(c.results, id)
			if n++; n >= maxRemembered/2 {
				break
			}
		}
	}
	c.results[r.JobID] = r
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// Cancel cancels a build. Cancelling a finished build does nothing. A
// replica cancels a running build that no replica holds (offered, and
// still waiting for spare workers) by taking it: it resumes the build
// and cancels it, so that the cancellation is recorded like any other
// (before, the call answered success and the build ran later anyway).
func (c *Coordinator) Cancel(ctx context.Context, id int64) error {
	c.mu.Lock()
	b, ok := c.builds[id]
	if ok {
		c.cancelBuild(b, c.clock.Now())
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	sb, err := c.store.Build(ctx, id)
	if err != nil {
		return storeErr(fmt.Sprintf("build %d", id), err)
	}
	if sb.State != api.BuildRunning || c.rep == nil {
		return nil // finished long ago
	}
	now := c.clock.Now()
	held, err := c.rep.leases.HoldBuild(ctx, id, c.rep.self, now, now.Add(c.rep.opts.LeaseTTL))
	if err != nil {
		return storeErr(fmt.Sprintf("build %d", id), err)
	}
	var cb *claimedBuild
	if held {
		cb = c.loadClaimed(ctx, id, now, false)
	}
	if cb == nil {
		c.awaitResumed(ctx, id) // claimed here, being read back
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.installClaimed(cb, "claimed build to cancel it")
	if b, ok := c.builds[id]; ok {
		c.cancelBuild(b, now)
		return nil
	}
	// Another replica holds it (the call was forwarded to one that
	// lost it meanwhile), or resuming it failed: the client retries.
	return fmt.Errorf("coordinator: cancel build %d: not held here: %w", id, api.ErrUnavailable)
}

// storeErr maps a store error to an API error kind.
func storeErr(what string, err error) error {
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, api.ErrNotFound)
	}
	return fmt.Errorf("coordinator: %s: %w: %w", what, api.ErrUnavailable, err)
}
