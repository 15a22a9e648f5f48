package coordinator

import (
	"fmt"
	"slices"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// Prefetched assignments (api.Assignment.Prefetched). A worker that polls
// with Prefetch may be handed ready jobs beyond its free slots, which it
// queues and starts by itself the moment a slot frees; it reports the
// starts (PollRequest.Started) with its results. So it can report
// results in batches, a few jobs at a time, without leaving a slot idle
// for the round trip: on a wide graph of short jobs, one request per job
// each way was most of the coordinator's and the workers' own CPU.
//
// Until the worker says it started one, a prefetched attempt is like a
// pending one (see pipeline.go): its job stays queued (out of its ready
// queue), nothing is committed, no event is sent and no attempt is
// charged; it takes no slot. It is taken back (its job queued again at
// the front, the worker told in Cancel) when the worker's session ends,
// when the worker stops listing it, when another worker has a free slot
// and nothing else to run (once held for stealAge) or only jobs of a
// lower priority, when a job of a higher priority becomes ready, and
// when the replica loses the build's lease. A job that finishes
// meanwhile (cancelled build) drops it.
//
// Releases. A worker that cannot run anything else takes the
// prefetched attempt of another worker that has held it for stealAge,
// and a worker with only jobs of a lower priority to run takes one of
// a higher priority at once; but the holder may have started it
// already, its report not processed yet (a coordinator slow to process
// reports: CPU-starved); taken back then, the job ran twice. So when
// the holder answers release requests (api.PollRequest.AnswersRelease),
// a steal is in two phases: the coordinator asks the holder to release
// the attempt (in api.PollResponse.Release, waking its waiting poll)
// and marks it (pendingAttempt.thief), which keeps it from being taken
// back or stolen again; the holder answers that it released it
// (api.PollRequest.Released: dropped unstarted, never to start), and
// only then is its job queued again, at the front, waking the waiting
// polls (the thief's takes it, unless another poll comes first); or it
// reports its start as usual and the attempt simply runs, the thief's
// poll woken to look again. A job of a higher priority that becomes
// ready has the holder's prefetched attempts of lower priorities
// released the same way. Holders of the previous protocol version have
// them taken back at once, as before, and so does every holder for the
// other take-backs (session ended, attempt no longer listed, lease
// lost).
//
// A worker with only jobs of a lower priority to run keeps the free
// slots it has asked releases for (one per attempt being released for
// it) empty until the answers come, rather than fill them with those
// jobs, or with pipelined or prefetched ones (which would start there):
// slots go to ready jobs by priority first (pick), and a prefetched
// attempt not started is a ready job. Filled at once, the slot would
// leave the job of the higher priority, once released, waiting for the
// next slot to free anywhere (a whole job's run) behind one of a lower
// priority, which is what the steal is for; kept empty, it idles for
// the holder's round trip (its waiting poll is woken at once), or until
// the holder's start report if the request crossed the start. Its
// other free slots are filled as usual. A holder that leaves the
// request unanswered for releaseRetry (stuck, or cut off until its
// heartbeat timeout ends its session) is waited for no longer: the
// slot takes the job of the lower priority.

// maxPrefetchPerSlot bounds a worker's prefetched attempts: at most that
// many per registered slot.
const maxPrefetchPerSlot = 4

// prefetch hands s up to n prefetched attempts (in resp) of ready jobs,
// as long as more jobs are ready than the other workers have free slots
// for, so that no idle worker waits for what s holds.
// releasable says that s answers release requests for them.
func (c *Coordinator) prefetch(s *session, n int, releasable bool, resp *api.PollResponse, now time.Time) {
	n = min(n, maxPrefetchPerSlot*s.slots-len(s.prefetched))
	if n <= 0 {
		return
	}
	spare := c.readyJobs() - c.freeSlotsElsewhere(s)
	for ; n > 0 && spare > 0; n, spare = n-1, spare-1 {
		j, _ := c.pick(s, now)
		if j == nil {
			return
		}
		a := c.newAttempt(s, j)
		c.prefetchSeq++
		p := &pendingAttempt{a: a, handed: now, seq: c.prefetchSeq, releasable: releasable}
		j.prefetched = p
		j.b.prefetched++
		s.prefetched[a.rec.ID] = p
		c.prefetchedN++
		c.prefetchedRank[j.b.rank]++
		c.m.prefetched.WithLabelValues("handed_out").Inc()
		as := c.assignment(s, j)
		as.AttemptID, as.Prefetched = a.rec.ID, true
		resp.Assignments = append(resp.Assignments, as)
	}
}

// readyJobs counts the jobs in ready queues (an upper bound: finished
// jobs leave their queues lazily).
func (c *Coordinator) readyJobs() int {
	n := 0
	for rank := range c.ready {
		for b := range c.ready[rank] {
			for _, q := range b.queues {
				n += len(q.jobs) - q.head
			}
		}
	}
	return n
}

// freeSlotsElsewhere counts the free slots of the workers other than s.
func (c *Coordinator) freeSlotsElsewhere(s *session) int {
	n := 0
	for _, o := range c.sessions {
		if o != s && !o.gone {
			n += max(o.slots-len(o.running)-len(o.pending), 0)
		}
	}
	return n
}

// startPrefetched makes the prefetched attempt id of s a running
// attempt, started at at (as the worker said; within the time since it
// was handed out). It reports false if s holds no such attempt.
func (c *Coordinator) startPrefetched(s *session, id string, at, now time.Time) bool {
	p := s.prefetched[id]
	if p == nil {
		return false
	}
	j := p.a.j
	c.forgetPrefetched(p)
	if j.state != api.JobQueued || c.builds[j.b.id] != j.b {
		s.cancel(id) // cannot happen: such jobs drop their prefetched attempt
		return false
	}
	at = startedAt(at, p.handed, now)
	c.m.queued.Dec()
	c.m.prefetched.WithLabelValues("started").Inc()
	if p.thief != nil {
		// The release request crossed the start: the attempt runs
		// here, once.
		c.m.prefetched.WithLabelValues("started_while_releasing").Inc()
	}
	c.startAttempt(p.a, at)
	return true
}

// takenBack is a prefetched attempt taken back from its worker, while
// the worker may still start it (see session.takenBack).
type takenBack struct {
	rec    api.Attempt
	handed time.Time
}

// abandonTakenBack records a prefetched attempt of s that the worker
// started although it had been taken back (the take-back crossed the
// start: the job runs twice, and the other run is the one that counts)
// as an abandoned attempt of its job, started at at, so that the run
// shows in the job's history without using one of its attempts. Its
// log and result stay refused (it is not a running attempt). It
// reports false if s holds no such attempt; nothing is recorded if s
// has reported it already.
func (c *Coordinator) abandonTakenBack(s *session, id string, at, now time.Time) bool {
	tb, ok := s.takenBack[id]
	if !ok {
		return false
	}
	delete(s.takenBack, id)
	c.m.prefetched.WithLabelValues("started_after_take_back").Inc()
	log := c.log.WithFields(map[string]any{"worker": s.name, "attempt": id, "build": tb.rec.BuildID})
	var j *job
	if b := c.builds[tb.rec.BuildID]; b != nil {
		j = b.jobs[tb.rec.JobID]
	}
	if j == nil {
		// The build left this coordinator (dropped with its lease,
		// or evicted once finished): its history is not ours to add to.
		log.Info("worker started a prefetched attempt after it was taken back; it is cancelled and its result refused")
		return true
	}
	c.recordAbandoned(s, j, tb.rec, startedAt(at, tb.handed, now), now,
		fmt.Sprintf("worker %s started it after the coordinator had taken it back to run elsewhere; the run is not counted and its result is refused", s.name))
	log.WithField("job", j.g.Name).Info("worker started a prefetched attempt after it was taken back; recorded as abandoned, its result refused")
	return true
}

// maxForgottenID bounds the attempt IDs of forgotten starts (the
// coordinator's own are 16 hex digits).
const maxForgottenID = 64

// abandonForgotten records the run of an attempt that this coordinator
// knows nothing of (api.StartedAttempt with BuildID and JobID, sent by
// a worker with its new session for every run of the old one): the
// coordinator that handed it out forgot it before it recorded it (a
// prefetched attempt whose start it never heard of before a restart,
// the death of its replica or the end of the worker's session; or any
// attempt dispatched within a commit's time before a crash). The run
// shows in the job's history as an abandoned attempt (the job was
// queued again and runs elsewhere; this run never counts). It reports
// false when the start should be sent again later: in replica mode, of
// a build this replica does not hold (it may claim it once its holder's
// lease expires). A start of an attempt the job already lists, or of a
// build or job this coordinator does not know, is ignored.
func (c *Coordinator) abandonForgotten(s *session, st api.StartedAttempt, at, now time.Time) bool {
	if len(st.AttemptID) > maxForgottenID || !isLowerHex(st.AttemptID) || c.attempts[st.AttemptID] != nil {
		return true
	}
	b := c.builds[st.BuildID]
	if b == nil {
		return c.rep == nil
	}
	j := b.jobs[st.JobID]
	if j == nil {
		return true
	}
	for _, a := range j.attempts {
		if a.rec.ID == st.AttemptID {
			return true
		}
	}
	c.m.prefetched.WithLabelValues("started_forgotten").Inc()
	rec := api.Attempt{ID: st.AttemptID, BuildID: b.id, JobID: j.g.ID, Worker: s.name}
	c.recordAbandoned(s, j, rec, startedAt(at, b.created, now), now,
		fmt.Sprintf("worker %s ran this attempt, but the coordinator that handed it out forgot it before recording it (it restarted or died, or the worker's session ended before the start was reported); the job was queued again, and this run is not counted", s.name))
	c.log.WithFields(map[string]any{"worker": s.name, "attempt": st.AttemptID, "build": b.id, "job": j.g.Name}).Info("worker ran an attempt its coordinator forgot; recorded as abandoned")
	return true
}

// isLowerHex reports whether s is a non-empty string of lower-case hex
// digits.
func isLowerHex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// recordAbandoned adds to j's history an abandoned attempt rec of s's
// worker (a run the coordinator does not count), started at at and ended now, and
// commits it. Its log and result stay refused: it is not a running
// attempt.
func (c *Coordinator) recordAbandoned(s *session, j *job, rec api.Attempt, at, now time.Time, why string) {
	a := &attempt{rec: rec, j: j, sess: s}
	fin := now
	a.rec.State, a.rec.Started, a.rec.Finished, a.rec.Error = api.AttemptAbandoned, at, &fin, why
	// Oldest first, as the store lists them.
	i, _ := slices.BinarySearchFunc(j.attempts, at, func(x *attempt, t time.Time) int {
		if x.rec.Started.After(t) {
			return 1
		}
		return -1
	})
	j.attempts = slices.Insert(j.attempts, i, a)
	c.commit.attempt(a.rec)
}

// startedAt is when a prefetched attempt handed out at handed started,
// by its worker's report at (the worker's clock and the network may put
// at outside the time since then, where the start must be).
func startedAt(at, handed, now time.Time) time.Time {
	if at.Before(handed) {
		at = handed
	}
	if at.After(now) {
		at = now
	}
	return at
}

// forgetPrefetched removes a prefetched attempt from its job and session.
func (c *Coordinator) forgetPrefetched(p *pendingAttempt) {
	p.a.j.prefetched = nil
	p.a.j.b.prefetched--
	delete(p.a.sess.prefetched, p.a.rec.ID)
	c.prefetchedN--
	c.prefetchedRank[p.a.j.b.rank]--
	if p.thief != nil {
		// Its idle worker may look for another one to take.
		p.thief.wakeUp()
	}
}

// dropPrefetched takes back j's prefetched attempt, if any: its worker
// is told to forget it and, with requeue, the job (still queued) goes
// back to the front of its ready queue.
func (c *Coordinator) dropPrefetched(j *job, requeue bool) {
	p := j.prefetched
	if p == nil {
		return
	}
	c.forgetPrefetched(p)
	c.m.prefetched.WithLabelValues("taken_back").Inc()
	if s := p.a.sess; !s.gone {
		s.cancel(p.a.rec.ID)
		if len(s.takenBack) >= 4096 {
			clear(s.takenBack)
		}
		s.takenBack[p.a.rec.ID] = takenBack{rec: p.a.rec, handed: p.handed}
	}
	if requeue {
		c.requeueFront(j)
	}
}

// requeueFront puts queued job j, out of its ready queue, back at the
// front of it (unless it is no longer queued or its build is gone), and
// wakes the waiting polls.
func (c *Coordinator) requeueFront(j *job) {
	if c.putFront(j) {
		c.wakeAll()
	}
}

// putFront puts queued job j, out of its ready queue, back at the front
// of it, and reports whether it did (not if it is no longer queued or
// its build is gone). It wakes nobody: a poll that picked j and puts it
// back without releasing c.mu changed nothing another poll could have
// seen.
func (c *Coordinator) putFront(j *job) bool {
	b := j.b
	if j.state != api.JobQueued || c.builds[b.id] != b {
		return false
	}
	key := labelKey(j.g.Labels)
	q := b.queues[key]
	if q == nil {
		q = &readyQueue{labels: j.g.Labels}
		b.queues[key] = q
	}
	if q.head > 0 {
		q.head--
		q.jobs[q.head] = j
	} else {
		q.jobs = append(q.jobs, nil)
		copy(q.jobs[1:], q.jobs)
		q.jobs[0] = j
	}
	c.ready[b.rank][b] = true
	return true
}

// stealPrefetched takes back one prefetched attempt of another worker
// that s could run, of a build whose priority rank is below below (s
// has a free slot and, to fill it, a job of rank below, or nothing with
// below = len(c.ready)), the highest priority first, and reports whether
// it did (stole). Of those, it takes the one handed out last: a worker
// starts its prefetched attempts in the order it got them and reports
// starts in batches, so the older ones may well be running already,
// and taking one back would run its job twice.
//
// With nothing else to run (idle), s takes only an attempt its worker
// has held for stealAge, and otherwise returns how long until one will
// have been (retry): prefetched work that short is being started.
// Taken at once, a steal crossed a start almost every time on
// bench/coordinator-replicas.sh (1-4% of the jobs ran twice). What idle
// workers need to take is work held behind long jobs, which waits far
// longer. And s asks a holder that answers release requests to release
// the attempt instead (see "Releases" above), for up to free attempts
// at a time, idle or not: it takes nothing now (stole is false). With
// wait, s has asked for as many attempts of rank below below as it has
// free slots: its poll leaves them empty and waits for the answers
// (the job of rank below it was about to take goes back to its queue),
// or, not idle, until retry, when the oldest request will have gone
// unanswered for releaseRetry. Such a holder (stuck, or cut off until
// its heartbeat timeout) is not waited for any longer: s fills its
// slots with the jobs of rank below, and asks nothing more meanwhile.
func (c *Coordinator) stealPrefetched(s *session, below int, idle bool, free int, now time.Time) (stole, wait bool, retry time.Duration) {
	for {
		best, asked, stale, retry := c.stealCandidate(s, below, idle, now)
		switch {
		case best != nil && !best.releasable:
			c.dropPrefetched(best.a.j, true)
			return true, false, 0
		case asked >= free:
			return false, true, retry
		case best == nil || stale:
			return false, false, retry
		}
		c.askRelease(best, s)
		best.asked = now
	}
}

// askRelease asks p's worker to release it, for thief (see "Releases"
// above): the request goes out with the worker's next answer, and its
// waiting poll is woken for it.
func (c *Coordinator) askRelease(p *pendingAttempt, thief *session) {
	p.thief, p.releaseSent = thief, time.Time{}
	c.m.prefetched.WithLabelValues("release_requested").Inc()
	p.a.sess.wakeUp()
}

// stealCandidate returns the prefetched attempt stealPrefetched takes
// (nil if none), how many attempts of rank below below are being
// released for s, and how long until a younger one may be taken (idle)
// or until a release for s will have gone unanswered for releaseRetry
// (not idle: from then on it is stale, and no longer counted).
func (c *Coordinator) stealCandidate(s *session, below int, idle bool, now time.Time) (best *pendingAttempt, asked int, stale bool, retry time.Duration) {
	some := false
	for rank := range below {
		some = some || c.prefetchedRank[rank] > 0
	}
	if !some {
		return nil, 0, false, 0
	}
	soonest := func(wait time.Duration) {
		if retry == 0 || wait < retry {
			retry = wait
		}
	}
	for _, o := range c.sessions {
		if o == s {
			continue
		}
		for _, p := range o.prefetched {
			r := p.a.j.b.rank
			if p.thief != nil {
				if p.thief != s || r >= below {
					continue // being released for another
				}
				if idle {
					asked++
				} else if left := releaseRetry - now.Sub(p.asked); left > 0 {
					asked++
					soonest(left)
				} else {
					stale = true
				}
				continue
			}
			if r >= below || !matches(s.labels, p.a.j.g.Labels) {
				continue
			}
			if idle {
				if wait := stealAge - now.Sub(p.handed); wait > 0 {
					soonest(wait)
					continue
				}
			}
			if best == nil || r < best.a.j.b.rank || (r == best.a.j.b.rank && p.seq > best.seq) {
				best = p
			}
		}
	}
	return best, asked, stale, retry
}

// releaseRetry is how long the coordinator waits for the answer to a
// release request before it asks again (the answer carrying it may have
// been lost with its poll), and how long a worker with jobs of a lower
// priority to run keeps a slot empty for it (a holder answers within a
// round trip).
const releaseRetry = time.Second

// releaseRequests returns the prefetched attempts of s whose release
// the coordinator asks for in the answer being built (api.PollResponse.Release):
// those not asked for yet, or not answered for releaseRetry.
func (c *Coordinator) releaseRequests(s *session, now time.Time) []string {
	var ids []string
	for id, p := range s.prefetched {
		if p.thief != nil && (p.releaseSent.IsZero() || now.Sub(p.releaseSent) >= releaseRetry) {
			p.releaseSent = now
			ids = append(ids, id)
		}
	}
	return ids
}

// released handles a prefetched attempt of s that its worker released
// (api.PollRequest.Released: dropped unstarted): its job is queued again
// at the front, for the waiting polls to take. An attempt s no longer
// holds is ignored.
func (c *Coordinator) released(s *session, id string) {
	p := s.prefetched[id]
	if p == nil {
		return
	}
	c.forgetPrefetched(p)
	c.m.prefetched.WithLabelValues("released").Inc()
	c.requeueFront(p.a.j)
}

// stealAge is how long a worker must have held a prefetched attempt
// before a worker with nothing else to run takes it (see
// stealPrefetched).
const stealAge = 100 * time.Millisecond

// yieldPrefetched takes back the prefetched attempts of builds of a
// lower priority than rank (a job of rank just became ready), or asks
// their workers to release them (see "Releases" above; the worker
// itself stands for the thief: whoever polls first takes the job of
// the higher priority, and a released job goes back to its queue).
func (c *Coordinator) yieldPrefetched(rank int) {
	if c.prefetchedN == 0 {
		return
	}
	for _, s := range c.sessions {
		for _, p := range s.prefetched {
			// One being released comes back, or runs where it is.
			if p.a.j.b.rank <= rank || p.thief != nil {
				continue
			}
			if p.releasable {
				c.askRelease(p, s)
			} else {
				c.dropPrefetched(p.a.j, true)
			}
		}
	}
}
