package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// restore loads every unfinished build from the store and resumes it:
// queued jobs are queued again, running attempts wait for their worker to
// re-register (listing them) or are lost after the heartbeat timeout, and
// jobs whose dependencies already failed are skipped. Jobs keep their
// attempts as stored, so abandoned ones still do not count against
// MaxAttempts (job.charged). Each build is read without c.mu and
// installed under it (loadBuild, installBuild), as claimed builds are.
func (c *Coordinator) restore(ctx context.Context) error {
	ids, err := c.store.UnfinishedBuilds(ctx)
	if err != nil {
		return fmt.Errorf("coordinator: restore: %w", err)
	}
	now := c.clock.Now()
	for _, id := range ids {
		l, err := c.loadBuild(ctx, id, now, false, nil)
		if err != nil {
			return fmt.Errorf("coordinator: restore build %d: %w", id, err)
		}
		c.mu.Lock()
		c.installBuild(l, now, false)
		c.mu.Unlock()
	}
	if len(ids) > 0 {
		c.log.WithField("builds", len(ids)).Info("resumed unfinished builds")
	}
	return nil
}

// loadedBuild is a build read back for resuming, not yet installed:
// loadBuild makes it without c.mu, since it reads the store (up to four
// round trips, each of which the replica's worker polls, submits and
// event streams would otherwise wait for), and installBuild resumes it
// under c.mu without reading anything. Until installed, its build and
// jobs are reachable from nowhere else.
type loadedBuild struct {
	b    *build
	atts []state.Attempt
	// cached are the jobs without a stored record that the result
	// cache holds (with their outputs in the artifact store): set
	// cached by loadBuild, recorded by installBuild.
	cached []*job
}

// loadBuild reads build id back for resuming at t (c.mu not held). With
// fresh (no replica held the build before this claim, see
// freshClaimer) it has no attempts to read, and offered, what this
// replica kept when it offered the build (offeredBuild), is what the
// store holds of it: then only the result cache is read, which may have
// gained results of its jobs meanwhile.
func (c *Coordinator) loadBuild(ctx context.Context, id int64, t time.Time, fresh bool, offered *offeredBuild) (*loadedBuild, error) {
	var b *build
	var rows []state.Job
	l := &loadedBuild{}
	if fresh && offered != nil {
		b = newBuild(offered.g, offered.prio, offered.labels, offered.created)
		rows = offered.rows
	} else {
		sb, err := c.store.Build(ctx, id)
		if err != nil {
			return nil, err
		}
		if rows, err = c.store.Jobs(ctx, id); err != nil {
			return nil, err
		}
		if !fresh {
			if l.atts, err = c.store.Attempts(ctx, id); err != nil {
				return nil, err
			}
		}
		var g graph.Graph
		if err := json.Unmarshal(sb.Graph, &g); err != nil {
			return nil, fmt.Errorf("stored graph: %w", err)
		}
		b = newBuild(&g, sb.Priority, sb.Labels, sb.Created)
		b.err = sb.Error
	}
	b.id = id
	l.b = b
	hasRow := map[*job]bool{}
	for _, r := range rows {
		j := b.jobs[r.JobID]
		if j == nil {
			continue
		}
		hasRow[j] = true
		j.state, j.worker, j.output, j.exit, j.errMsg, j.started, j.finished = r.State, r.Worker, r.OutputDigest, r.ExitCode, r.Error, r.Started, r.Finished
	}
	// Jobs without a row were never written after the build was created
	// (their rows are group-committed): the result cache says which were
	// cached; the others start over as waiting.
	var ask []string
	for _, j := range b.order {
		if !hasRow[j] && j.g.Cacheable && !j.g.Planner {
			ask = append(ask, j.g.ID)
		}
	}
	if len(ask) > 0 {
		rs, err := c.store.Results(ctx, ask)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if _, err := c.arts.Stat(ctx, r.OutputDigest); err != nil {
				continue
			}
			j := b.jobs[r.JobID]
			j.state, j.output, j.finished = api.JobCached, r.OutputDigest, t
			j.cachedFrom = &api.JobResult{JobID: r.JobID, OutputDigest: r.OutputDigest, AttemptID: r.AttemptID, BuildID: r.BuildID, Finished: r.Finished}
			l.cached = append(l.cached, j)
		}
	}
	return l, nil
}

// installBuild resumes build l.b, loaded by loadBuild, at t (under
// c.mu). claimed says that this replica claimed it from another (see
// adoptRunning).
func (c *Coordinator) installBuild(l *loadedBuild, t time.Time, claimed bool) {
	b, id := l.b, l.b.id
	for _, j := range l.cached {
		c.setJob(j)
	}
	for i := range l.atts {
		a := &attempt{rec: l.atts[i]}
		j := b.jobs[a.rec.JobID]
		if j == nil {
			continue
		}
		a.j = j
		j.attempts = append(j.attempts, a)
	}
	c.builds[id] = b
	// Pins: outputs of finished jobs and the uploaded source.
	for _, j := range b.order {
		if j.output != "" {
			b.pinned = append(b.pinned, j.output)
		}
	}
	if b.source != nil && b.source.Manifest != "" {
		b.pinned = append(b.pinned, b.source.Manifest)
		for _, f := range b.g.Source.Files {
			b.pinned = append(b.pinned, f.Digest)
		}
	}
	c.pin(b.pinned, 1)
	for _, j := range b.order {
		if j.state.Finished() {
			b.remaining--
			typ := api.EventJobFinished
			switch j.state {
			case api.JobCached:
				typ = api.EventJobCached
			case api.JobSkipped:
				typ = api.EventJobSkipped
			}
			ev := jobEvent(typ, j, j.finished)
			ev.ExitCode, ev.Error, ev.Worker = j.exit, j.errMsg, j.worker
			b.event(ev)
		}
	}
	for _, j := range b.order {
		if j.state.Finished() {
			continue
		}
		if j.state == api.JobRunning {
			if a := c.adoptRunning(j, t, claimed); a != nil {
				continue
			}
		}
		// Attempts still marked running of a job not recorded
		// running are abandoned: the coordinator runs the job again
		// (and cancels the attempt if its worker comes back with it)
		// through no fault of the job or the worker.
		for _, a := range j.attempts {
			if a.rec.State == api.AttemptRunning {
				fin := t
				a.rec.State, a.rec.Error, a.rec.Finished = api.AttemptAbandoned, "coordinator restarted without a record of the job running", &fin
				c.commit.attempt(a.rec)
			}
		}
		j.state, j.worker = api.JobWaiting, ""
		failed := false
		for _, d := range j.deps {
			switch {
			case d.state.OK():
			case d.state.Finished():
				failed = true
			default:
				j.waiting++
			}
		}
		if failed {
			// The skip was not yet recorded before the crash.
			j.errMsg = "a dependency did not succeed"
			c.finishJob(j, api.JobSkipped, t)
			continue
		}
		if j.waiting == 0 {
			c.enqueue(j, t)
		} else {
			c.setJob(j)
		}
	}
	if b.remaining == 0 && b.state == api.BuildRunning {
		c.finishBuild(b, t)
	}
	if claimed {
		// Attempts of the build that workers failing over to this
		// replica kept running (see pendingAdoption).
		c.settleAdoptions(b, t)
	}
}

// adoptRunning keeps a job's running attempt alive for its worker, which
// is expected to re-register listing it; without that, the heartbeat
// timeout loses it like any silent worker's attempt. With claimed (the
// build was claimed from another replica), an attempt its worker never
// confirms is abandoned rather than lost (see attempt.claimed); one
// its worker listed when it registered here, before the claim, is
// confirmed by settleAdoptions.
func (c *Coordinator) adoptRunning(j *job, t time.Time, claimed bool) *attempt {
	var a *attempt
	for _, x := range j.attempts {
		if x.rec.State == api.AttemptRunning {
			a = x
		}
	}
	if a == nil {
		return nil
	}
	s := c.byName[a.rec.Worker]
	if s == nil {
		// A placeholder session: no worker knows its ID, but the
		// worker's re-registration finds it by name, and the heartbeat
		// check expires it if the worker never comes back.
		s = newSession(a.rec.Worker, t)
		c.byName[a.rec.Worker] = s
		c.sessions[s.id] = s
	}
	timeout := j.g.EffectiveTimeout(c.opts.DefaultTimeout)
	a.sess, a.deadline, a.claimed, a.logElsewhere = s, t.Add(timeout+max(30*time.Second, timeout/10)), claimed, claimed
	a.logSize = c.logs.size(a.rec.ID)
	a.rec.LogBytes = a.logSize
	c.attempts[a.rec.ID] = a
	s.running[a.rec.ID] = a
	j.b.running++
	c.m.running.Inc()
	ev := jobEvent(api.EventJobStarted, j, a.rec.Started)
	ev.AttemptID, ev.Worker = a.rec.ID, a.rec.Worker
	j.b.event(ev)
	return a
}
