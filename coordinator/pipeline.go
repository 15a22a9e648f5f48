package coordinator

import (
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Pipelined assignments (api.Assignment.After). A job whose unfinished
// dependencies all run on one worker may be handed to that worker before
// they finish, to start there the moment they succeed, with their
// outputs as the worker left them: on a chain of jobs the next job then
// starts without waiting for a round trip to the coordinator. Until its
// dependencies' results arrive such an attempt is pending: it holds a
// slot of its worker (session.pending) and nothing else; its job stays
// waiting, nothing is committed and no event is sent. When the last
// dependency succeeds through an attempt it was pending on, the attempt
// becomes an ordinary running attempt (activate); when a dependency
// fails, is skipped or cancelled, or its attempt ends in any other way,
// the pending attempt is dropped and the worker told to forget it.
// Only polls that say Early (workers that understand After) get them.

// pendingAttempt is an attempt handed out ahead of its dependencies.
type pendingAttempt struct {
	a     *attempt
	after []string // attempt IDs of the dependencies it waits for
	// missed counts consecutive polls of its worker that did not list
	// it: a worker that dropped it no longer holds its slot.
	missed int
	// handed is when it was handed out (see listGrace).
	handed time.Time
	// seq orders prefetched attempts as they were handed out (several
	// are at once), which is the order their worker starts them in.
	seq uint64
	// releasable marks a prefetched attempt whose worker answers
	// release requests (api.PollRequest.AnswersRelease).
	releasable bool
	// thief, when set, is the worker for which the coordinator
	// asked the holder to release this prefetched attempt (see
	// stealPrefetched): until the holder answers, it is neither taken
	// back nor stolen again. releaseSent is when the request went out
	// last (zero: not yet).
	thief       *session
	releaseSent time.Time
	// asked is when a worker's steal asked for the release (see
	// stealCandidate: a worker with jobs of a lower priority waits for
	// the answer only so long).
	asked time.Time
}

// pipelineScan bounds the dependents one poll looks at for pipelined
// assignments, so that a job with thousands of dependents costs little.
const pipelineScan = 256

// pipeline hands out, in resp, up to free pending attempts to s for
// waiting jobs whose unfinished dependencies all run on s.
func (c *Coordinator) pipeline(s *session, free int, resp *api.PollResponse) {
	scanned := 0
	for _, a := range s.running {
		if free <= 0 {
			return
		}
		if a.j.g.Planner {
			continue // its fragment may change what its dependents need
		}
		for _, d := range a.j.dependents {
			if free <= 0 || scanned >= pipelineScan {
				return
			}
			scanned++
			after, ok := c.pipelinable(s, d)
			if !ok {
				continue
			}
			resp.Assignments = append(resp.Assignments, c.assignPending(s, d, after))
			free--
		}
	}
}

// pipelinable reports whether d may be pending on s, and on which
// attempts.
func (c *Coordinator) pipelinable(s *session, d *job) ([]string, bool) {
	if d.state != api.JobWaiting || d.pending != nil || d.g.Planner || d.b.cancelled || !matches(s.labels, d.g.Labels) {
		return nil, false
	}
	var after []string
	for _, dep := range d.deps {
		if dep.state.OK() {
			continue
		}
		if dep.state != api.JobRunning || dep.g.Planner || len(dep.attempts) == 0 {
			return nil, false
		}
		cur := dep.attempts[len(dep.attempts)-1]
		if cur.sess != s || cur.rec.State != api.AttemptRunning {
			return nil, false
		}
		after = append(after, cur.rec.ID)
	}
	return after, len(after) > 0
}

// assignPending creates a pending attempt of d on s and its assignment.
func (c *Coordinator) assignPending(s *session, d *job, after []string) api.Assignment {
	a := c.newAttempt(s, d)
	p := &pendingAttempt{a: a, after: after, handed: c.clock.Now()}
	d.pending = p
	s.pending[a.rec.ID] = p
	as := c.assignment(s, d)
	as.AttemptID, as.After = a.rec.ID, after
	return as
}

// assignment is the api.Assignment of j on s, without its attempt ID.
// Dependencies not finished yet have no digest (the worker has their
// outputs: see After).
func (c *Coordinator) assignment(s *session, j *job) api.Assignment {
	timeout := j.g.EffectiveTimeout(c.opts.DefaultTimeout)
	as := api.Assignment{BuildID: j.b.id, Job: *j.g, TimeoutMS: timeout.Milliseconds(), MaxLogBytes: c.opts.MaxLogBytes}
	if j.g.Mode() != graph.SourceNone {
		as.Source = j.b.source
	}
	for _, d := range j.deps {
		digest := ""
		if d.state.OK() {
			digest = d.output
			s.holds[d.output] = true
		}
		as.Deps = append(as.Deps, api.DepOutput{JobID: d.g.ID, Digest: digest})
	}
	return as
}

// release makes a job whose dependencies all succeeded run: its pending
// attempt starts if it waited on the attempts that produced them (the
// worker has those outputs), else the job is queued.
func (c *Coordinator) release(j *job, now time.Time) {
	p := j.pending
	if p == nil {
		c.enqueue(j, now)
		return
	}
	ok := !p.a.sess.gone
	for _, id := range p.after {
		found := false
		for _, d := range j.deps {
			if len(d.attempts) > 0 && d.attempts[len(d.attempts)-1].rec.ID == id && d.state == api.JobSucceeded {
				found = true
				break
			}
		}
		ok = ok && found
	}
	if !ok {
		c.dropPending(j)
		c.enqueue(j, now)
		return
	}
	c.activate(p, now)
}

// activate turns a pending attempt into a running one.
func (c *Coordinator) activate(p *pendingAttempt, now time.Time) {
	a, j, s := p.a, p.a.j, p.a.sess
	delete(s.pending, a.rec.ID)
	j.pending = nil
	j.readyAt = now
	c.startAttempt(a, now)
	for _, d := range j.deps {
		s.holds[d.output] = true
	}
}

// dropPending forgets j's pending attempt and tells its worker.
func (c *Coordinator) dropPending(j *job) {
	p := j.pending
	if p == nil {
		return
	}
	j.pending = nil
	s := p.a.sess
	delete(s.pending, p.a.rec.ID)
	if !s.gone {
		s.cancel(p.a.rec.ID)
	}
}

// dropPendingAfter drops the pending attempts of a's job's dependents
// that wait for a, which ended without success.
func (c *Coordinator) dropPendingAfter(a *attempt) {
	for _, d := range a.j.dependents {
		if d.pending == nil {
			continue
		}
		for _, id := range d.pending.after {
			if id == a.rec.ID {
				c.dropPending(d)
				break
			}
		}
	}
}
