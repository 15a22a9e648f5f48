package coordinator

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// The scheduler's state lives in memory under Coordinator.mu; every change
// is also handed to the committer, which writes it to the store in
// batches. Nothing on the dispatch path waits for the store except a
// worker's results (which must be durable before they are acknowledged)
// and a submission (durable before its build ID is returned).

// build is a build in memory.
type build struct {
	id         int64
	priority   api.Priority
	rank       int
	labels     map[string]string
	created    time.Time
	finishedAt time.Time
	state      api.BuildState
	err        string
	cancelled  bool
	g          *graph.Graph
	source     *api.SourceRef
	jobs       map[string]*job
	order      []*job
	queues     map[string]*readyQueue // by required-label key
	running    int
	prefetched int // jobs of the build prefetched by workers (see prefetch.go)
	remaining  int
	events     []api.Event
	eventData  int64         // bytes of log data held in events
	changed    chan struct{} // closed on the next event; nil if nobody waits
	pinned     []string
}

// readyQueue holds a build's queued jobs that require one label set, in
// the order they became ready.
type readyQueue struct {
	labels map[string]string
	jobs   []*job
	head   int
}

// job is one job of one build.
type job struct {
	b          *build
	g          *graph.Job
	seq        int
	state      api.JobState
	waiting    int // unfinished dependencies
	deps       []*job
	dependents []*job
	attempts   []*attempt
	worker     string
	output     string
	exit       *int
	errMsg     string
	started    time.Time
	finished   time.Time
	readyAt    time.Time
	cachedFrom *api.JobResult
	// pending is an attempt handed out ahead of the job's dependencies
	// (see pipeline.go); nil if none.
	pending *pendingAttempt
	// prefetched is an attempt of the queued job that a worker holds
	// beyond its free slots (see prefetch.go); nil if none.
	prefetched *pendingAttempt
}

// attempt is an attempt in memory; running ones are in
// Coordinator.attempts.
type attempt struct {
	rec      api.Attempt
	j        *job
	sess     *session
	deadline time.Time
	missed   int // consecutive polls of its worker that did not list it
	// claimed marks an attempt adopted with a build claimed from
	// another replica, until its worker confirms it (registers here
	// listing it). The worker may never come: it is connected to the
	// other replica, which stopped the attempt when its lease expired
	// in a database outage, the commit saying so fenced off by the
	// claim. Such an attempt is abandoned, not lost (loseAttempt), so
	// that an outage does not use up the job's attempts.
	claimed bool

	logMu   sync.Mutex // serializes appends to the log file
	logSize int64      // under logMu
	// logElsewhere marks an attempt adopted with a claimed build until
	// its first log chunk here (under logMu): its log began on the disk
	// of the replica that dispatched it, so that chunk may start beyond
	// what this replica has (see AppendLog). Any other gap is an error.
	logElsewhere bool
}

// session is a registered worker.
type session struct {
	id, name string
	labels   map[string]string
	slots    int
	version  string
	lastSeen time.Time
	polling  int // polls in progress: a polling worker is alive
	// committing counts the worker's requests waiting for the commit
	// of their results: the worker is alive, however long the store
	// takes (commits are retried for as long as a database outage
	// lasts).
	committing int
	running    map[string]*attempt
	// pending holds attempts handed out ahead of their dependencies
	// (see pipeline.go); each takes a slot.
	pending map[string]*pendingAttempt
	// prefetched holds attempts handed out beyond the worker's slots
	// (see prefetch.go); they take no slot until the worker starts them.
	prefetched map[string]*pendingAttempt
	// takenBack holds prefetched attempts recently taken back from
	// this worker, so that one it reports started anyway (the take-back
	// crossed its start: the job runs twice, one result counts) is
	// recorded as an abandoned attempt of its job (abandonTakenBack).
	// Records, not pointers, so that they keep no build in memory.
	takenBack map[string]takenBack
	holds     map[string]bool
	cancels   []string
	// ended holds attempts this worker recently reported, so that a poll
	// sent before the report was processed (two polls in flight, or a
	// result posted beside a waiting poll) does not draw a cancellation.
	// Attempts ended for other reasons are cancelled for as long as the
	// worker lists them.
	ended map[string]bool
	// wakeCh is closed to wake every waiting poll (nil when none waits);
	// waitSeq numbers waiting polls, so that a newer one supersedes the
	// older ones.
	wakeCh  chan struct{}
	waitSeq int
	gone    bool
}

func newSession(name string, now time.Time) *session {
	return &session{
		id: randomID(), name: name, lastSeen: now,
		running: map[string]*attempt{}, pending: map[string]*pendingAttempt{}, prefetched: map[string]*pendingAttempt{}, takenBack: map[string]takenBack{}, holds: map[string]bool{}, ended: map[string]bool{},
	}
}

// cancel tells the worker to stop an attempt, once.
func (s *session) cancel(id string) {
	for _, c := range s.cancels {
		if c == id {
			return
		}
	}
	s.cancels = append(s.cancels, id)
	s.wakeUp()
}

// wakeUp wakes every poll of the session that waits (under c.mu).
func (s *session) wakeUp() {
	if s.wakeCh != nil {
		close(s.wakeCh)
		s.wakeCh = nil
	}
}

// waitChan returns the channel the next wakeUp closes (under c.mu).
func (s *session) waitChan() <-chan struct{} {
	if s.wakeCh == nil {
		s.wakeCh = make(chan struct{})
	}
	return s.wakeCh
}

// labelKey is the canonical form of a label set.
func labelKey(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
		b.WriteByte(',')
	}
	return b.String()
}

// matches reports whether a worker with labels have can run a job that
// requires want.
func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// newBuild builds the in-memory form of a normalized graph. It does not
// register the build or set job states.
func newBuild(g *graph.Graph, prio api.Priority, labels map[string]string, created time.Time) *build {
	b := &build{
		priority: prio, rank: prio.Rank(), labels: labels, created: created,
		state: api.BuildRunning, g: g, jobs: make(map[string]*job, len(g.Jobs)),
		queues: map[string]*readyQueue{},
	}
	if b.rank < 0 {
		b.rank = 0
	}
	switch {
	case g.Source.IsGit():
		b.source = &api.SourceRef{Repo: g.Source.Repo, Revision: g.Source.Revision}
	case len(g.Source.Files) > 0:
		b.source = &api.SourceRef{Manifest: g.Source.ManifestDigest()}
	}
	b.addJobs(g.Jobs)
	return b
}

// addJobs links jobs (already in b.g) into the build; their states start
// as waiting.
func (b *build) addJobs(jobs []*graph.Job) []*job {
	added := make([]*job, 0, len(jobs))
	for _, gj := range jobs {
		j := &job{b: b, g: gj, seq: len(b.order), state: api.JobWaiting}
		b.jobs[gj.ID] = j
		b.order = append(b.order, j)
		added = append(added, j)
	}
	for _, j := range added {
		for _, d := range j.g.Deps {
			dj := b.jobs[d]
			j.deps = append(j.deps, dj)
			dj.dependents = append(dj.dependents, j)
		}
	}
	b.remaining += len(added)
	return added
}

func (b *build) record(j *job) state.Job {
	return state.Job{
		BuildID: b.id, JobID: j.g.ID, Name: j.g.Name, Seq: j.seq, State: j.state, Worker: j.worker,
		OutputDigest: j.output, ExitCode: j.exit, Error: j.errMsg, Started: j.started, Finished: j.finished,
	}
}

// event appends an event and wakes the build's watchers.
func (b *build) event(ev api.Event) {
	ev.Index = len(b.events)
	b.events = append(b.events, ev)
	b.notify()
}

func (b *build) notify() {
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

func (b *build) watch() <-chan struct{} {
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.changed
}

func jobEvent(typ api.EventType, j *job, now time.Time) api.Event {
	return api.Event{Type: typ, Time: now, JobID: j.g.ID, JobName: j.g.Name, State: j.state}
}

// ---- state transitions (all under c.mu) ----

// setJob records a job's new state durably (eventually).
func (c *Coordinator) setJob(j *job) {
	c.commit.job(j.b.record(j))
}

// enqueue makes a job ready to run.
func (c *Coordinator) enqueue(j *job, now time.Time) {
	b := j.b
	j.state, j.readyAt = api.JobQueued, now
	key := labelKey(j.g.Labels)
	q := b.queues[key]
	if q == nil {
		q = &readyQueue{labels: j.g.Labels}
		b.queues[key] = q
	}
	q.jobs = append(q.jobs, j)
	c.ready[b.rank][b] = true
	c.enqueued++
	c.m.queued.Inc()
	c.setJob(j)
	b.event(jobEvent(api.EventJobQueued, j, now))
	c.yieldPrefetched(b.rank)
}

// wakeAll wakes every polling worker (they re-check for work).
func (c *Coordinator) wakeAll() {
	for _, s := range c.sessions {
		if s.polling > 0 {
			s.wakeUp()
		}
	}
}

// finishJob moves a job to a final state and propagates: dependents of a
// successful job may become ready; dependents of any other outcome are
// skipped (transitively). It finishes the build when nothing remains.
func (c *Coordinator) finishJob(j *job, st api.JobState, now time.Time) {
	work := []*job{j}
	states := []api.JobState{st}
	for len(work) > 0 {
		j, st := work[len(work)-1], states[len(states)-1]
		work, states = work[:len(work)-1], states[:len(states)-1]
		if j.state.Finished() {
			continue
		}
		if j.state == api.JobQueued {
			c.m.queued.Dec() // left in its queue; pick skips it
		}
		b := j.b
		c.dropPending(j)
		c.dropPrefetched(j, false)
		j.state, j.finished = st, now
		b.remaining--
		c.setJob(j)
		ev := jobEvent(api.EventJobFinished, j, now)
		switch st {
		case api.JobCached:
			ev.Type = api.EventJobCached
		case api.JobSkipped:
			ev.Type = api.EventJobSkipped
		}
		ev.ExitCode, ev.Error, ev.Worker = j.exit, j.errMsg, j.worker
		b.event(ev)
		c.m.jobsFinished.WithLabelValues(string(st)).Inc()
		for _, d := range j.dependents {
			if d.state.Finished() {
				continue
			}
			if st.OK() {
				d.waiting--
				if d.waiting == 0 && d.state == api.JobWaiting {
					c.release(d, now)
				}
				continue
			}
			d.errMsg = fmt.Sprintf("dependency %q %s", j.g.Name, st)
			work = append(work, d)
			if j.b.cancelled {
				d.errMsg = "build cancelled"
				states = append(states, api.JobCancelled)
			} else {
				states = append(states, api.JobSkipped)
			}
		}
	}
	if b := j.b; b.remaining == 0 && b.state == api.BuildRunning {
		c.finishBuild(b, now)
	}
}

// finishBuild records a build's outcome.
func (c *Coordinator) finishBuild(b *build, now time.Time) {
	st := api.BuildSucceeded
	for _, j := range b.order {
		if !j.state.OK() {
			st = api.BuildFailed
			break
		}
	}
	if b.cancelled {
		st = api.BuildCancelled
	}
	b.state, b.finishedAt = st, now
	c.commit.build(state.BuildUpdate{ID: b.id, State: st, Error: b.err, Finished: now})
	b.event(api.Event{Type: api.EventBuildFinished, Time: now, BuildState: st, Error: b.err})
	delete(c.ready[b.rank], b)
	// Logs are on disk; a finished build's events keep only offsets.
	for i := range b.events {
		b.events[i].Data = ""
	}
	b.eventData = 0
	c.pin(b.pinned, -1)
	b.pinned = nil
	c.finished = append(c.finished, b.id)
	for len(c.finished) > c.opts.KeepFinished {
		delete(c.builds, c.finished[0])
		c.finished = c.finished[1:]
	}
	c.log.WithFields(map[string]any{"build": b.id, "state": st, "jobs": len(b.order)}).Info("build finished")
}

// ---- dispatch ----

// pick chooses the next job for session s, or nil. hint is how long until
// a job held back for locality becomes available to s (0 if none).
func (c *Coordinator) pick(s *session, now time.Time) (j *job, hint time.Duration) {
	for rank := range c.ready {
		if len(c.ready[rank]) == 0 {
			continue
		}
		// Fairness: the build with the fewest running (or prefetched)
		// jobs first, then the oldest.
		bs := make([]*build, 0, len(c.ready[rank]))
		for b := range c.ready[rank] {
			bs = append(bs, b)
		}
		sort.Slice(bs, func(i, k int) bool {
			if ni, nk := bs[i].running+bs[i].prefetched, bs[k].running+bs[k].prefetched; ni != nk {
				return ni < nk
			}
			return bs[i].id < bs[k].id
		})
		for _, b := range bs {
			empty := true
			for _, q := range b.queues {
				c.compact(q)
				if q.head == len(q.jobs) {
					continue
				}
				empty = false
				if !matches(s.labels, q.labels) {
					continue
				}
				j, h := c.takeFrom(q, s, now)
				if h > 0 && (hint == 0 || h < hint) {
					hint = h
				}
				if j != nil {
					return j, hint
				}
			}
			if empty {
				delete(c.ready[rank], b)
			}
		}
	}
	return nil, hint
}

// compact drops finished jobs from the head of q and reclaims space.
func (c *Coordinator) compact(q *readyQueue) {
	for q.head < len(q.jobs) && q.jobs[q.head].state != api.JobQueued {
		q.jobs[q.head] = nil
		q.head++
	}
	if q.head == len(q.jobs) {
		q.jobs, q.head = q.jobs[:0], 0
	} else if q.head > 1024 && q.head > len(q.jobs)/2 {
		q.jobs = append(q.jobs[:0], q.jobs[q.head:]...)
		q.head = 0
	}
}

// scanLimit bounds how far into a queue pick looks past jobs held back
// for locality.
const scanLimit = 64

// takeFrom removes and returns the first job of q that s may run now.
func (c *Coordinator) takeFrom(q *readyQueue, s *session, now time.Time) (*job, time.Duration) {
	var hint time.Duration
	for i, n := q.head, 0; i < len(q.jobs) && n < scanLimit; i++ {
		j := q.jobs[i]
		if j.state != api.JobQueued {
			continue
		}
		n++
		if wait := c.localityWait(j, s, now); wait > 0 {
			if hint == 0 || wait < hint {
				hint = wait
			}
			continue
		}
		if i == q.head {
			q.jobs[i] = nil
			q.head++
		} else {
			copy(q.jobs[i:], q.jobs[i+1:])
			q.jobs[len(q.jobs)-1] = nil
			q.jobs = q.jobs[:len(q.jobs)-1]
		}
		return j, hint
	}
	return nil, hint
}

// localityWait returns how long j should still wait for a worker other
// than s that holds more of its dependencies' outputs (0: s may take it).
func (c *Coordinator) localityWait(j *job, s *session, now time.Time) time.Duration {
	if len(j.deps) == 0 {
		return 0
	}
	left := j.readyAt.Add(c.opts.LocalityWait).Sub(now)
	if left <= 0 {
		return 0
	}
	held := func(w *session) int {
		n := 0
		for _, d := range j.deps {
			if w.holds[d.output] {
				n++
			}
		}
		return n
	}
	mine := held(s)
	if mine == len(j.deps) {
		return 0
	}
	for _, o := range c.sessions {
		if o != s && !o.gone && o.slots > 0 && matches(o.labels, j.g.Labels) && held(o) > mine {
			return left
		}
	}
	return 0
}

// assign starts an attempt of j on s and returns the assignment.
func (c *Coordinator) assign(s *session, j *job, now time.Time) api.Assignment {
	a := c.newAttempt(s, j)
	c.m.queued.Dec()
	c.startAttempt(a, now)
	as := c.assignment(s, j)
	as.AttemptID = a.rec.ID
	return as
}

// newAttempt is a new attempt of j on s, not started yet.
func (c *Coordinator) newAttempt(s *session, j *job) *attempt {
	return &attempt{
		rec: api.Attempt{ID: randomID(), BuildID: j.b.id, JobID: j.g.ID, Worker: s.name, State: api.AttemptRunning},
		j:   j, sess: s,
	}
}

// startAttempt makes a running attempt of a (its job runs from now on:
// the attempt counts, its timeout runs, job_started is sent).
func (c *Coordinator) startAttempt(a *attempt, now time.Time) {
	j, s, b := a.j, a.sess, a.j.b
	timeout := j.g.EffectiveTimeout(c.opts.DefaultTimeout)
	a.rec.Started = now
	a.deadline = now.Add(timeout + max(30*time.Second, timeout/10))
	c.attempts[a.rec.ID] = a
	s.running[a.rec.ID] = a
	j.attempts = append(j.attempts, a)
	j.state, j.worker = api.JobRunning, s.name
	if j.started.IsZero() {
		j.started = now
	}
	b.running++
	c.m.running.Inc()
	c.m.dispatched.Inc()
	c.m.dispatchLatency.Observe(max(now.Sub(j.readyAt), 0).Seconds())
	c.commit.attempt(a.rec)
	c.setJob(j)
	ev := jobEvent(api.EventJobStarted, j, now)
	ev.AttemptID, ev.Worker = a.rec.ID, s.name
	b.event(ev)
}

// endAttempt takes a running attempt out of the running set and records
// its final state.
func (c *Coordinator) endAttempt(a *attempt, st api.AttemptState, errMsg string, now time.Time) {
	delete(c.attempts, a.rec.ID)
	delete(a.sess.running, a.rec.ID)
	a.j.b.running--
	c.m.running.Dec()
	if st != api.AttemptSucceeded {
		c.dropPendingAfter(a)
	}
	a.rec.State, a.rec.Error = st, errMsg
	fin := now
	a.rec.Finished = &fin
	c.commit.attempt(a.rec)
}

// charged counts the attempts of j that count against MaxAttempts (all
// but abandoned ones; see api.AttemptState.Charged). Restored builds
// hold their attempts as stored, states included, so the count is the
// same after a restart.
func (j *job) charged() int {
	n := 0
	for _, a := range j.attempts {
		if a.rec.State.Charged() {
			n++
		}
	}
	return n
}

// retryOrFail requeues a job whose attempt was lost or could not run, up
// to MaxAttempts (abandoned attempts not counted), and fails it after
// that.
func (c *Coordinator) retryOrFail(a *attempt, reason string, now time.Time) {
	j := a.j
	if j.state.Finished() {
		return
	}
	n := j.charged()
	if n < c.opts.MaxAttempts && !j.b.cancelled {
		j.worker = ""
		c.enqueue(j, now)
		ev := jobEvent(api.EventJobRequeued, j, now)
		ev.AttemptID, ev.Worker, ev.Error = a.rec.ID, a.rec.Worker, reason
		j.b.event(ev)
		return
	}
	j.errMsg = fmt.Sprintf("gave up after %d attempts: %s", n, reason)
	c.finishJob(j, api.JobFailed, now)
}

// loseAttempt handles an attempt whose worker vanished or forgot it.
func (c *Coordinator) loseAttempt(a *attempt, reason string, now time.Time) {
	st := api.AttemptLost
	if a.claimed {
		st, reason = api.AttemptAbandoned, reason+" (adopted with the build from another replica, never confirmed by the worker)"
	} else {
		c.m.attemptsLost.Inc()
	}
	c.endAttempt(a, st, reason, now)
	c.log.WithFields(map[string]any{"attempt": a.rec.ID, "worker": a.rec.Worker, "job": a.j.g.Name, "build": a.j.b.id}).Warn("attempt " + string(st) + ": " + reason)
	c.retryOrFail(a, reason, now)
}

// expireSession ends a session whose worker stopped heartbeating (or was
// replaced); its running attempts are lost except those in keep.
func (c *Coordinator) expireSession(s *session, reason string, keep map[string]bool, now time.Time) {
	s.gone = true
	for id, p := range s.pending {
		p.a.j.pending = nil
		delete(s.pending, id)
	}
	for _, p := range s.prefetched {
		c.dropPrefetched(p.a.j, true)
	}
	delete(c.sessions, s.id)
	if c.byName[s.name] == s {
		delete(c.byName, s.name)
	}
	s.wakeUp()
	if s.slots > 0 {
		// Record when the worker was last seen, for GET /api/workers.
		c.commit.worker(state.Worker{Name: s.name, TokenHash: c.auth.workerHashes()[s.name], Labels: s.labels, Slots: s.slots, Version: s.version, LastSeen: s.lastSeen})
	}
	for id, a := range s.running {
		if keep[id] {
			continue
		}
		c.loseAttempt(a, reason, now)
	}
	c.m.workers.Set(float64(len(c.sessions)))
}

// cancelAttempt stops a running attempt for a reason other than its
// worker's result; the worker is told in its next poll (at once).
func (c *Coordinator) cancelAttempt(a *attempt, st api.AttemptState, reason string, now time.Time) {
	c.endAttempt(a, st, reason, now)
	a.sess.cancel(a.rec.ID)
}

// cancelBuild cancels every unfinished job of a build.
func (c *Coordinator) cancelBuild(b *build, now time.Time) {
	if b.state != api.BuildRunning {
		return
	}
	b.cancelled = true
	for _, j := range b.order {
		if j.state.Finished() {
			continue
		}
		for _, a := range j.attempts {
			if a.rec.State == api.AttemptRunning {
				c.cancelAttempt(a, api.AttemptCancelled, "build cancelled", now)
			}
		}
		j.errMsg = "build cancelled"
		c.finishJob(j, api.JobCancelled, now)
	}
}
