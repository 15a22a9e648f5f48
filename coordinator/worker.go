package coordinator

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

var workerLabelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)

// Limits of the worker protocol.
const (
	maxSlots       = 1024
	maxWorkerLabel = 64
	maxFragment    = 64 << 20
	// maxBuildEventData bounds the log bytes a running build's events
	// hold in memory.
	maxBuildEventData = 32 << 20
)

// Register starts a session for the worker named by its token.
func (c *Coordinator) Register(ctx context.Context, name string, req api.RegisterRequest) (*api.RegisterResponse, error) {
	if c.ctx.Err() != nil {
		return nil, errNotRunning
	}
	if req.Name != "" && req.Name != name {
		return nil, badRequest(fmt.Errorf("register: name %q does not match the token's worker %q", truncate(req.Name), name))
	}
	if req.Slots < 1 || req.Slots > maxSlots {
		return nil, badRequest(fmt.Errorf("register: slots %d out of range (1 to %d)", req.Slots, maxSlots))
	}
	if len(req.Labels) > maxWorkerLabel {
		return nil, badRequest(fmt.Errorf("register: %d labels, more than %d", len(req.Labels), maxWorkerLabel))
	}
	for k, v := range req.Labels {
		if !workerLabelRE.MatchString(k) || len(v) > 1024 || strings.ContainsAny(v, "\x00\n,=") {
			return nil, badRequest(fmt.Errorf("register: bad label %q", truncate(k)))
		}
	}
	if len(req.Version) > 200 {
		return nil, badRequest(fmt.Errorf("register: version too long"))
	}
	// In replica mode, attempts of builds another replica held may be
	// kept for adoption (see pendingAdoption): looked up first, without
	// the lock.
	cands := c.adoptionCandidates(ctx, name, req.Running, req.Slots)
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := newSession(name, now)
	s.labels, s.slots, s.version = req.Labels, req.Slots, req.Version
	keep := map[string]bool{}
	for _, id := range req.Running {
		keep[id] = true
	}
	if old := c.byName[name]; old != nil {
		// Attempts the worker still runs move to the new session; the
		// others were lost with the old one.
		for id, a := range old.running {
			if keep[id] {
				delete(old.running, id)
				a.sess, a.missed, a.claimed = s, 0, false
				s.running[id] = a
			}
		}
		c.expireSession(old, "worker re-registered without it", nil, now)
	}
	for id := range keep {
		if _, ok := s.running[id]; !ok && !c.holdForAdoption(name, id, cands[id]) {
			s.cancel(id)
		}
	}
	c.forgetAdoptions(name, keep)
	c.sessions[s.id] = s
	c.byName[name] = s
	c.m.workers.Set(float64(len(c.sessions)))
	c.commit.worker(state.Worker{Name: name, TokenHash: c.auth.workerHashes()[name], Labels: req.Labels, Slots: req.Slots, Version: req.Version, LastSeen: now})
	c.log.WithFields(map[string]any{"worker": name, "slots": req.Slots, "labels": req.Labels}).Info("worker registered")
	c.wakeAll()
	c.kickClaims() // a replica with a worker may now run builds
	return &api.RegisterResponse{
		WorkerID:            s.id,
		HeartbeatIntervalMS: (c.opts.HeartbeatTimeout / 3).Milliseconds(),
		PollTimeoutMS:       c.opts.PollTimeout.Milliseconds(),
		EarlyAssignments:    true,
		PrefetchAssignments: true,
		ForgottenStarts:     true,
		ReleaseRequests:     true,
	}, nil
}

// preparedResult is a worker's result with the I/O it needs done outside
// the scheduler lock.
type preparedResult struct {
	res      api.AttemptResult
	fragment *graph.Graph
	fragErr  error
}

// prepareResults checks outputs in the artifact store and reads planner
// fragments, without holding c.mu.
func (c *Coordinator) prepareResults(ctx context.Context, results []api.AttemptResult) []preparedResult {
	out := make([]preparedResult, len(results))
	for i, r := range results {
		out[i].res = r
		if r.State != api.AttemptSucceeded {
			continue
		}
		if !graph.IsDigest(r.OutputDigest) {
			out[i].res.State, out[i].res.Error = api.AttemptError, "succeeded without a valid output digest"
			continue
		}
		if !c.outputExists(ctx, r.OutputDigest) {
			out[i].res.State, out[i].res.Error = api.AttemptError, fmt.Sprintf("output %s is not in the artifact store", r.OutputDigest)
			continue
		}
		c.mu.Lock()
		a := c.attempts[r.AttemptID]
		planner := a != nil && a.j.g.Planner
		c.mu.Unlock()
		if planner {
			out[i].fragment, out[i].fragErr = c.readFragment(ctx, r.OutputDigest)
		}
	}
	return out
}

// outputExists reports whether a result's output is in the artifact
// store. Stores answer cheaply for outputs they hold: the disk store from
// its index, the GCS store from the blobs it found recently
// (gcsartifacts.Options.StatTTL), since results mostly name outputs seen
// moments before (identical outputs).
func (c *Coordinator) outputExists(ctx context.Context, digest string) bool {
	_, err := c.arts.Stat(ctx, digest)
	return err == nil
}

// readFragment reads a planner's graph.json from its output archive.
func (c *Coordinator) readFragment(ctx context.Context, digest string) (*graph.Graph, error) {
	rc, _, err := c.arts.Open(ctx, digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := graph.ReadOutputFile(rc, graph.PlannerOutput, maxFragment)
	if err != nil {
		return nil, err
	}
	return graph.Decode(strings.NewReader(string(data)))
}

// applyResult records a worker's result for one of its attempts; it
// returns false if the attempt is not a current one of that worker.
func (c *Coordinator) applyResult(worker string, p preparedResult, now time.Time) bool {
	r := p.res
	a := c.attempts[r.AttemptID]
	if s := c.byName[worker]; a == nil && s != nil && s.pending[r.AttemptID] != nil && r.State != api.AttemptSucceeded {
		// A pipelined attempt the worker gives back before it could
		// start (e.g. shutting down): its job waits as before.
		c.dropPending(s.pending[r.AttemptID].a.j)
		return true
	}
	if s := c.byName[worker]; a == nil && s != nil && s.prefetched[r.AttemptID] != nil {
		if r.State == api.AttemptError {
			// Given back unstarted (a worker reports a start before
			// the result): the job is queued again, no attempt used.
			c.dropPrefetched(s.prefetched[r.AttemptID].a.j, true)
			return true
		}
		// A result without its start: the attempt ran.
		c.startPrefetched(s, r.AttemptID, now.Add(-time.Duration(r.DurationMS)*time.Millisecond), now)
		a = c.attempts[r.AttemptID]
	}
	if s := c.byName[worker]; a == nil && s != nil && r.State != api.AttemptError {
		// A result implies the start: a taken-back prefetched attempt
		// reported without its start ran all the same (an error may be
		// one given back unstarted).
		c.abandonTakenBack(s, r.AttemptID, now.Add(-time.Duration(r.DurationMS)*time.Millisecond), now)
	}
	if a == nil || a.sess.name != worker {
		return false
	}
	j := a.j
	if len(a.sess.ended) >= 4096 {
		clear(a.sess.ended)
	}
	a.sess.ended[a.rec.ID] = true
	a.rec.ExitCode, a.rec.OutputDigest, a.rec.LogTruncated = r.ExitCode, r.OutputDigest, r.LogTruncated || a.rec.LogTruncated
	switch r.State {
	case api.AttemptSucceeded:
		c.endAttempt(a, api.AttemptSucceeded, "", now)
		a.sess.holds[r.OutputDigest] = true
		// Dependents need it: keep it from eviction while the build runs.
		c.pin([]string{r.OutputDigest}, 1)
		j.b.pinned = append(j.b.pinned, r.OutputDigest)
		j.output, j.exit, j.errMsg = r.OutputDigest, r.ExitCode, ""
		if j.g.Planner {
			if err := c.splice(j, p.fragment, p.fragErr, now); err != nil {
				j.errMsg = err.Error()
				c.finishJob(j, api.JobFailed, now)
				return true
			}
		}
		if j.g.Cacheable {
			res := state.Result{JobID: j.g.ID, OutputDigest: r.OutputDigest, AttemptID: a.rec.ID, BuildID: j.b.id, Finished: now}
			c.remember(res)
			c.commit.result(res)
		}
		c.finishJob(j, api.JobSucceeded, now)
	case api.AttemptFailed, api.AttemptTimedOut:
		c.endAttempt(a, r.State, r.Error, now)
		j.exit, j.errMsg = r.ExitCode, r.Error
		if j.errMsg == "" && r.State == api.AttemptTimedOut {
			j.errMsg = "timed out"
		}
		if j.errMsg == "" && r.ExitCode != nil {
			j.errMsg = fmt.Sprintf("exit status %d", *r.ExitCode)
		}
		c.finishJob(j, api.JobFailed, now)
	default: // error: the worker could not run it; retry elsewhere
		msg := r.Error
		if msg == "" {
			msg = "worker error"
		}
		c.endAttempt(a, api.AttemptError, msg, now)
		c.retryOrFail(a, fmt.Sprintf("worker %s: %s", worker, msg), now)
	}
	return true
}

// splice adds a planner's fragment to its build.
func (c *Coordinator) splice(planner *job, frag *graph.Graph, fragErr error, now time.Time) error {
	if fragErr != nil {
		return fmt.Errorf("planner output: %w", fragErr)
	}
	b := planner.b
	newJobs, err := b.g.Splice(planner.g, frag)
	if err != nil {
		return err
	}
	if len(newJobs) == 0 {
		return nil
	}
	added := b.addJobs(newJobs)
	gjson, err := marshalGraph(b.g)
	if err != nil {
		return err
	}
	c.commit.build(state.BuildUpdate{ID: b.id, State: b.state, Error: b.err, Graph: gjson})
	b.event(api.Event{Type: api.EventJobsAdded, Time: now, JobID: planner.g.ID, JobName: planner.g.Name, Count: len(added)})
	for _, j := range added {
		c.setJob(j)
	}
	// The planner itself is still running here: new jobs depending on it
	// are released when the caller finishes it.
	for _, j := range added {
		for _, d := range j.deps {
			if !d.state.OK() {
				j.waiting++
			}
		}
	}
	// Reuse cached results of fragment jobs. This runs under c.mu, but
	// planners finish rarely and the lookup is one query.
	var ask []string
	for _, j := range added {
		if _, ok := c.results[j.g.ID]; !ok && j.g.Cacheable && !j.g.Planner {
			ask = append(ask, j.g.ID)
		}
	}
	if len(ask) > 0 {
		if rs, err := c.store.Results(c.ctx, ask); err == nil {
			for _, r := range rs {
				c.remember(r)
			}
		}
	}
	for _, j := range added {
		r, ok := c.results[j.g.ID]
		if ok && j.g.Cacheable && !j.g.Planner {
			if _, err := c.arts.Stat(c.ctx, r.OutputDigest); err != nil {
				continue
			}
			c.pin([]string{r.OutputDigest}, 1)
			b.pinned = append(b.pinned, r.OutputDigest)
			j.output = r.OutputDigest
			j.cachedFrom = &api.JobResult{JobID: r.JobID, OutputDigest: r.OutputDigest, AttemptID: r.AttemptID, BuildID: r.BuildID, Finished: r.Finished}
			c.finishJob(j, api.JobCached, now)
		}
	}
	for _, j := range added {
		if j.state == api.JobWaiting && j.waiting == 0 {
			c.enqueue(j, now)
		}
	}
	return nil
}

// listGrace is how long after an assignment a poll that does not list
// the attempt is not taken as a sign that the worker forgot it. A worker
// may build several polls before it takes the answer that carried the
// assignment: a waiting poll's answer overtaken (in the coordinator's
// writes, the network, the worker's goroutines) by a reporting poll's
// early answer, after which the worker sends the next report. Two such
// polls lost attempts the worker was about to run, which then ran twice
// (bench/coordinator-replicas.sh's logs under load: "worker no longer
// runs it" 8ms after the dispatch, about one run in fifteen). An attempt
// whose answer never reached the worker is lost listGrace later than it
// would be otherwise.
const listGrace = 5 * time.Second

// Poll is a worker's heartbeat, result report and request for work; see
// api.PollRequest. It blocks until there is work or a cancellation for the
// worker, or the wait ends. It answers in one part (req.Early is not
// honoured; see PollEarly).
func (c *Coordinator) Poll(ctx context.Context, worker string, req api.PollRequest) (*api.PollResponse, error) {
	return c.PollEarly(ctx, worker, req, nil)
}

// PollEarly is Poll, except that when req.Early is set, early is not
// nil, and the answer carries both results to acknowledge and
// assignments or cancellations, early receives the answer before the
// results are durable (with More set), and PollEarly returns once they
// are: nil and the error if recording them failed. The assignments
// themselves are never waited for (see below), so on a chain of jobs
// the dependent starts while its dependency's result is committed.
func (c *Coordinator) PollEarly(ctx context.Context, worker string, req api.PollRequest, early func(*api.PollResponse)) (*api.PollResponse, error) {
	if c.ctx.Err() != nil {
		return nil, errNotRunning
	}
	if req.FreeSlots < 0 || req.FreeSlots > maxSlots {
		return nil, badRequest(fmt.Errorf("poll: free_slots %d out of range", req.FreeSlots))
	}
	if req.Prefetch < 0 || req.Prefetch > maxPrefetchPerSlot*maxSlots {
		return nil, badRequest(fmt.Errorf("poll: prefetch %d out of range", req.Prefetch))
	}
	for _, r := range req.Results {
		switch r.State {
		case api.AttemptSucceeded, api.AttemptFailed, api.AttemptTimedOut, api.AttemptError:
		default:
			return nil, badRequest(fmt.Errorf("poll: result of %s: bad state %q", truncate(r.AttemptID), truncate(string(r.State))))
		}
	}
	prepared := c.prepareResults(ctx, req.Results)
	maxWait := c.opts.PollTimeout
	if req.WaitMS > 0 && time.Duration(req.WaitMS)*time.Millisecond < maxWait {
		maxWait = time.Duration(req.WaitMS) * time.Millisecond
	}
	now := c.clock.Now()
	deadline := now.Add(maxWait)
	resp := &api.PollResponse{Assignments: []api.Assignment{}}

	c.mu.Lock()
	s := c.sessions[req.WorkerID]
	if s == nil || s.name != worker {
		c.mu.Unlock()
		return nil, fmt.Errorf("poll: worker ID %q: %w", truncate(req.WorkerID), api.ErrUnknownWorker)
	}
	s.lastSeen = now
	for _, d := range req.Holds {
		if graph.IsDigest(d) {
			s.holds[d] = true
		}
	}
	for _, d := range req.Evicted {
		delete(s.holds, d)
	}
	// Starts before results: a result may be of an attempt started
	// since the last poll.
	forgotten := 0
	for _, st := range req.Started {
		at := now.Add(-time.Duration(max(st.AgoMS, 0)) * time.Millisecond)
		switch {
		case c.startPrefetched(s, st.AttemptID, at, now), c.abandonTakenBack(s, st.AttemptID, at, now):
		case st.BuildID == 0 || st.JobID == "":
		case c.adoptionPending(worker, st.AttemptID):
			// Its build's claim here adopts it, or it is
			// cancelled and the holder records it.
		case forgotten >= 2*maxPrefetchPerSlot*s.slots:
			// Far more than the worker could have run (its slots,
			// its prefetched attempts, unreported results): ignored.
		default:
			forgotten++
			if !c.abandonForgotten(s, st, at, now) {
				resp.StartsLater = append(resp.StartsLater, st.AttemptID)
			}
		}
	}
	for _, id := range req.Released {
		c.released(s, id)
	}
	// Jobs that the results (or lost attempts) make ready and that
	// this poll does not take are offered to the waiting polls below.
	enqueued := c.enqueued
	reported := map[string]bool{}
	for _, p := range prepared {
		reported[p.res.AttemptID] = true
		switch {
		case c.keepForAdoption(worker, p):
			resp.ResultsLater = append(resp.ResultsLater, p.res.AttemptID)
		case c.applyResult(worker, p, now), c.resentAdopted(worker, p.res.AttemptID):
		default:
			resp.Rejected = append(resp.Rejected, p.res.AttemptID)
		}
	}
	// Reconcile what the worker says it runs with what we think.
	listed := map[string]bool{}
	for _, id := range req.Running {
		listed[id] = true
		if a := c.attempts[id]; (a == nil || a.sess != s) && !s.ended[id] && s.pending[id] == nil && s.prefetched[id] == nil && !c.adoptionPending(worker, id) {
			s.cancel(id)
		}
	}
	for id, p := range s.pending {
		if listed[id] {
			p.missed = 0
			continue
		}
		if now.Sub(p.handed) < listGrace {
			continue
		}
		// Not listed twice: the worker dropped it (it keeps its job
		// waiting, so nothing is lost but the slot, given back here).
		if p.missed++; p.missed >= 2 {
			p.a.j.pending = nil
			delete(s.pending, id)
		}
	}
	for id, p := range s.prefetched {
		if listed[id] {
			p.missed = 0
		} else if now.Sub(p.handed) >= listGrace {
			if p.missed++; p.missed >= 2 {
				c.dropPrefetched(p.a.j, true)
			}
		}
	}
	for id, a := range s.running {
		if listed[id] || reported[id] {
			a.missed = 0
			continue
		}
		// One miss may be a race with a result posted on the side; two
		// mean the worker forgot the attempt. Not so soon after the
		// assignment (see listGrace).
		if now.Sub(a.rec.Started) < listGrace {
			continue
		}
		if a.missed++; a.missed >= 2 {
			c.loseAttempt(a, "worker no longer runs it", now)
		}
	}
	free := req.FreeSlots
	if room := s.slots - len(s.running) - len(s.pending); free > room {
		// Never more running attempts than the worker registered slots,
		// even if several of its polls offer the same free slot.
		free = max(room, 0)
	}
	prefetch, steals := req.Prefetch, free
	for {
		var hint time.Duration
		picked := 0
		reserved := false // free slots kept for releases (below)
		for free > 0 {
			j, h := c.pick(s, now)
			if steals > 0 && c.prefetchedN > 0 {
				below := len(c.ready) // nothing else to run: any
				if j != nil {
					below = j.b.rank
				}
				stole, wait, retry := c.stealPrefetched(s, below, j == nil, free, now)
				if stole {
					// Rather a job of a higher priority (or any,
					// with nothing else to run) that another worker
					// holds beyond its slots.
					if j != nil {
						c.requeueFront(j)
					}
					steals--
					continue
				}
				if wait && j != nil {
					// The free slots wait for jobs of a higher
					// priority being released for s (see "Releases"
					// in prefetch.go): j goes back, unseen, and
					// nothing fills them (a prefetched attempt
					// would start there at once).
					c.putFront(j)
					j, reserved = nil, true
				}
				if j == nil && retry > 0 && (h == 0 || retry < h) {
					h = retry // look again once one may be taken
				}
			}
			if j == nil {
				hint = h
				break
			}
			resp.Assignments = append(resp.Assignments, c.assign(s, j, now))
			free--
			picked++
		}
		if req.Early && free > 0 && !reserved {
			// Early polls come from workers that understand After.
			n := len(resp.Assignments)
			c.pipeline(s, free, resp)
			free -= len(resp.Assignments) - n
		}
		if prefetch > 0 && !reserved {
			n := len(resp.Assignments)
			c.prefetch(s, prefetch, req.AnswersRelease, resp, now)
			prefetch -= len(resp.Assignments) - n
		}
		if len(s.cancels) > 0 {
			resp.Cancel, s.cancels = s.cancels, nil
		}
		resp.Release = append(resp.Release, c.releaseRequests(s, now)...)
		if enqueued >= 0 && c.enqueued-enqueued > picked {
			c.wakeAll()
		} else if picked > 0 && s.polling > 0 && s.slots > len(s.running)+len(s.pending) {
			// Another poll of this worker waits with room: the jobs
			// just assigned may have dependents to pipeline there.
			s.wakeUp()
		}
		enqueued = -1 // later rounds take what others made ready
		if len(resp.Assignments) > 0 || len(resp.Cancel) > 0 || len(resp.Release) > 0 || len(prepared) > 0 || len(req.Started) > 0 || len(req.Released) > 0 || !now.Before(deadline) || s.gone {
			break
		}
		// Nothing to do: wait for work, a cancellation, the end of a
		// locality window, or the deadline.
		wakeAt := deadline
		if hint > 0 && now.Add(hint).Before(wakeAt) {
			wakeAt = now.Add(hint)
		}
		// A newer waiting poll of the worker supersedes older ones: they
		// answer at once (with nothing), so that the worker never needs
		// to cancel a request that might carry assignments.
		s.waitSeq++
		seq := s.waitSeq
		s.wakeUp()
		wake := s.waitChan()
		s.polling++
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		case <-c.ctx.Done():
		case <-c.clock.After(wakeAt.Sub(now)):
		}
		c.mu.Lock()
		s.polling--
		now = c.clock.Now()
		s.lastSeen = now
		if ctx.Err() != nil || c.ctx.Err() != nil || s.waitSeq != seq {
			break
		}
	}
	gone := s.gone
	if len(prepared) > 0 {
		s.committing++ // until the results are durable (below)
		defer c.committed(s)
	}
	c.mu.Unlock()
	if gone && len(resp.Assignments) == 0 {
		return nil, fmt.Errorf("poll: session of worker %s ended: %w", worker, api.ErrUnknownWorker)
	}
	if len(prepared) > 0 {
		// Results are acknowledged only once durable. Assignments are
		// not waited for: on a chain of jobs that would put a second
		// commit on the critical path. An assignment lost in a crash
		// (within a commit's time of its dispatch) is cancelled when
		// the worker re-registers with it, and its job runs again.
		// The commit holding the results holds everything the
		// scheduler did before them, and a dependent's attempt is
		// never in an earlier commit than the result that released
		// it, so a crash never keeps a dependent and loses its
		// dependency's result.
		t := c.commit.current()
		if !req.Early {
			t = c.commit.currentUrgent()
		}
		if req.Early && early != nil && (len(resp.Assignments) > 0 || len(resp.Cancel) > 0) {
			first := *resp
			first.More = true
			early(&first)
		}
		if err := wait(ctx, t); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// Result records one attempt's result (the non-batched form).
func (c *Coordinator) Result(ctx context.Context, worker string, r api.AttemptResult) error {
	if c.ctx.Err() != nil {
		return errNotRunning
	}
	prepared := c.prepareResults(ctx, []api.AttemptResult{r})
	c.mu.Lock()
	if c.adoptionPending(worker, r.AttemptID) {
		c.mu.Unlock()
		return fmt.Errorf("attempt %s: %w", truncate(r.AttemptID), errAdoptionPending)
	}
	ok := c.applyResult(worker, prepared[0], c.clock.Now())
	if s := c.byName[worker]; ok && s != nil {
		s.committing++
		defer c.committed(s)
	}
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("attempt %s is not a current attempt of worker %s: %w", truncate(r.AttemptID), worker, api.ErrConflict)
	}
	return wait(ctx, c.commit.currentUrgent())
}

// committed ends a wait of s for the commit of its results (see
// session.committing): the worker was alive until now.
func (c *Coordinator) committed(s *session) {
	c.mu.Lock()
	s.committing--
	s.lastSeen = c.clock.Now()
	c.mu.Unlock()
}

// AppendLog appends a chunk to a running attempt's log at offset and
// returns the log's size. A chunk overlapping what was received (a retry)
// is trimmed; one starting beyond the end is a conflict (see
// logStore.appendChunk). In replica mode, chunks of an attempt waiting
// for its build's claim are stored too (see pendingLog).
func (c *Coordinator) AppendLog(ctx context.Context, worker, attemptID string, offset int64, data []byte) (int64, error) {
	c.mu.Lock()
	a := c.attempts[attemptID]
	if a == nil {
		if p, kept := c.pendingLog(worker, attemptID); kept {
			c.mu.Unlock()
			return c.appendPendingLog(p, attemptID, offset, data)
		}
	}
	if s := c.byName[worker]; a == nil && s != nil && s.prefetched[attemptID] != nil {
		// A log implies the start, which the worker reports later.
		now := c.clock.Now()
		c.startPrefetched(s, attemptID, now, now)
		a = c.attempts[attemptID]
	}
	c.mu.Unlock()
	if a == nil || a.sess.name != worker {
		return 0, fmt.Errorf("attempt %s is not a current attempt of worker %s: %w", truncate(attemptID), worker, api.ErrConflict)
	}
	a.logMu.Lock()
	defer a.logMu.Unlock()
	r, err := c.logs.appendChunk(attemptID, a.logSize, a.logElsewhere, c.opts.MaxLogBytes, offset, data)
	a.logSize, a.logElsewhere = r.size, r.elsewhere
	if err != nil {
		return a.logSize, err
	}
	now := c.clock.Now()
	c.mu.Lock()
	a.rec.LogBytes = a.logSize
	a.rec.LogTruncated = a.rec.LogTruncated || r.truncated
	if len(r.data) > 0 {
		const maxEventData = 64 << 10
		ev := jobEvent(api.EventLog, a.j, now)
		ev.AttemptID, ev.Offset, ev.Worker = attemptID, r.at, worker
		// Live log data rides in events up to a budget per build; past
		// it (and once the build finished) events carry only offsets
		// and clients read the log itself.
		if b := a.j.b; b.eventData < maxBuildEventData {
			ev.Data = string(r.data[:min(len(r.data), maxEventData)])
			b.eventData += int64(len(ev.Data))
		}
		a.j.b.event(ev)
	}
	c.mu.Unlock()
	return a.logSize, nil
}

// errAdoptionPending answers a result or log of an attempt that waits
// for its build's claim (see pendingAdoption): retry later.
var errAdoptionPending = fmt.Errorf("its build is not held by this replica yet (the worker failed over from the replica that held it); send it again later: %w", api.ErrUnavailable)

// logGap is what stands in an attempt's log for n bytes that another
// replica received (see AppendLog): a notice, cut or padded with
// spaces to n bytes, ending in a newline.
func logGap(n int64) []byte {
	gap := []byte(strings.Repeat(" ", int(n)))
	notice := fmt.Sprintf("[tryd: %d bytes of this log went to a coordinator replica that is gone]", n)
	copy(gap, notice[:min(len(notice), max(len(gap)-1, 0))])
	gap[len(gap)-1] = '\n'
	return gap
}

// monitor expires silent workers and overdue attempts until Close.
func (c *Coordinator) monitor() {
	tick := min(c.opts.HeartbeatTimeout/5, time.Second)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.clock.After(tick):
		}
		c.checkTimeouts()
	}
}

// checkTimeouts expires workers silent for the heartbeat timeout and
// attempts past their deadline.
func (c *Coordinator) checkTimeouts() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	for _, s := range c.sessions {
		if s.polling == 0 && s.committing == 0 && now.Sub(s.lastSeen) > c.opts.HeartbeatTimeout {
			c.log.WithField("worker", s.name).Warn("worker stopped heartbeating")
			c.expireSession(s, fmt.Sprintf("worker %s stopped heartbeating", s.name), nil, now)
		}
	}
	for _, a := range c.attempts {
		if now.After(a.deadline) {
			c.cancelAttempt(a, api.AttemptTimedOut, "no result within the job's timeout", now)
			a.j.errMsg = "timed out (no result from the worker)"
			c.finishJob(a.j, api.JobFailed, now)
		}
	}
	c.wakeAll()
}
