package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// ReplicaOptions make a coordinator one of several replicas sharing a
// store that implements state.Leaser (PostgreSQL).
//
// Each running build is run by one replica at a time, the holder of its
// lease in the store. Work is pulled by capacity: a replica holds a build
// submitted to it when its workers have spare slots (fewer jobs queued
// than slots); otherwise the build waits in the store, every replica is
// nudged (LISTEN/NOTIFY), and the first with spare slots claims it, as do
// replicas whose workers become idle. So builds flow to the replicas
// whose workers are free, whichever replica clients submit to; but a
// replica claims the builds submitted to it before others' newer than
// state.OwnFirst, since calls about a build (a client following its
// events) reach the replica it was submitted to, which otherwise
// forwards each of them. A replica keeps what it offers in memory
// (bounded, see offeredBuild): claiming back a build that no replica
// held meanwhile (the store tells, see freshClaimer), it resumes it from
// that rather than read it back. Replicas renew their leases every LeaseTTL/3;
// when a replica dies, its leases expire and replicas with workers claim
// its builds (SELECT ... FOR UPDATE SKIP LOCKED: never two at once) and
// resume them from the store exactly as a restarted coordinator would
// (running attempts are adopted when their workers re-register, or
// abandoned after the heartbeat timeout: the worker may be connected to
// the replica that lost the build, which stopped them).
//
// When the database goes away (a restart, a failover, sessions killed),
// replicas keep running their builds while their leases last: changes
// wait in the group committer (retried with backoff; results are
// acknowledged to workers only once stored), submits fail as
// unavailable (503) and /healthz says unhealthy. A replica whose leases
// are about to expire unrenewed stops running their builds (another
// replica may claim them from then on); once the database answers, it
// stores what it recorded of them, releases their leases, and the builds
// resume from the store wherever they are claimed. Its commits are
// fenced by its leases (state stores that support it, PostgreSQL): what
// it recorded of a build another replica claimed meanwhile is never
// written over the new holder's run.
//
// A worker may connect to any replica (e.g. through a load balancer with
// session affinity) and runs the jobs of the builds that replica holds.
// When its replica dies, the worker registers with another one, listing
// the attempts it still runs: those of builds the dead replica held are
// not cancelled but wait for their build's claim (pendingAdoption). The
// replica claims such a build itself as soon as the dead holder's lease
// expires, adopts the attempts into their workers' sessions and applies
// the results they reported meanwhile (answered "later", see
// api.PollResponse.ResultsLater), so the jobs running at the death run
// once. It cancels them instead when another replica claims the build,
// when the build finishes, when the holder turns out alive (it still
// holds the lease 1.5 LeaseTTL after the attempt was listed, which a
// dead replica's lease does not outlive), or after 2 LeaseTTL plus the
// heartbeat timeout (see api/PROTOCOL.md, "Failover between replicas").
// Client calls about a build (status, events, cancel, attempt logs) may
// reach any replica: one that does not hold the build forwards the call
// to the holder's URL, so a build's event stream works from every
// replica.
type ReplicaOptions struct {
	// ID names this replica in the store (default: a random ID, new for
	// every process, so a restarted replica never mistakes a dead one's
	// leases for its own).
	ID string
	// URL is this replica's base URL as other replicas reach it
	// (required), e.g. "http://10.0.0.5:8084".
	URL string
	// LeaseTTL is how long a lease outlives its replica's last renewal
	// (default 15s): the time before a dead replica's builds resume
	// elsewhere.
	LeaseTTL time.Duration
}

func (o *ReplicaOptions) validate(store state.Store) (state.Leaser, error) {
	l, ok := store.(state.Leaser)
	if !ok {
		return nil, errors.New("coordinator: replicas need a store that supports leases (PostgreSQL)")
	}
	u, err := url.Parse(o.URL)
	if o.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("coordinator: ReplicaOptions.URL %q is not an http(s) URL", o.URL)
	}
	if o.LeaseTTL < 0 {
		return nil, errors.New("coordinator: negative ReplicaOptions.LeaseTTL")
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.ID == "" {
		o.ID = randomID()
	}
	return l, nil
}

// replicas is the state of replica mode.
type replicas struct {
	opts   ReplicaOptions
	leases state.Leaser
	self   state.Owner
	kick   chan struct{}
	proxy  *httputil.ReverseProxy
	// orphans are builds the last renewal found leased to this replica
	// but not in memory (used by leaseLoop only).
	orphans map[int64]bool
	// renewed is when the last successful renewal started: this
	// replica's leases are good until renewed+LeaseTTL, by its clock.
	// expired are the builds it dropped when that time neared without
	// a renewal, whose leases it releases once the store answers again
	// (after committing what it recorded of them). leaseLoop only.
	renewed time.Time
	expired map[int64]bool
	// renewFailures and claimFailures log runs of failed renewals and
	// claims once (leaseLoop only).
	renewFailures, claimFailures failureLog
	// fenced is the store's fenced commit, if it has one.
	fenced heldCommitter

	// waiters are the calls waiting for a holder of a build (holderOf),
	// woken by held notices and by this replica's own claims.
	waitMu  sync.Mutex
	waiters map[int64]map[chan struct{}]bool

	// adopting are the attempts that workers failing over to this
	// replica run for builds it does not hold, by attempt ID (see
	// pendingAdoption); resent are those whose kept results were
	// applied when they were adopted, by attempt ID to worker, so that
	// the worker's sending them again is acknowledged. Under c.mu.
	adopting map[string]*pendingAdoption
	resent   map[string]string

	// freshClaims is the store's claim that tells fresh builds, if it
	// has one; offered keeps the builds this replica offered, for
	// claiming them back fresh (see offeredBuild).
	freshClaims freshClaimer
	offered     offeredBuilds
	// resuming are the builds this replica claimed and is reading back
	// (loadClaimed, without c.mu), each closing its channel once
	// installed or given up (installClaimed). Under c.mu.
	resuming map[int64]chan struct{}

	claimed, claimedOffered, dropped, forwarded prometheus.Counter
}

// freshClaimer is implemented by a state.Leaser whose claims tell which
// claimed builds no replica ever held before (pgstate.Store
// .ClaimBuildsFresh): only a holder writes a build's records, so the
// store holds nothing of such a build but what CreateBuild wrote.
type freshClaimer interface {
	ClaimBuildsFresh(ctx context.Context, o state.Owner, limit int, now, until time.Time) (ids []int64, fresh []bool, err error)
}

// offeredBuild is what a replica keeps of a build it offered
// (holdSubmitted): the normalized graph and the build's other columns,
// and the job records CreateBuild stored with it (the cached jobs, in a
// store that keeps job sets). Claiming the build back fresh, the
// replica resumes it from these rather than read the build, its jobs
// and its attempts back from the store and decode its graph again
// (about half of a claim's CPU; in bench/coordinator-replicas.sh half
// the builds are offered, most claimed back by the replica that offered
// them).
type offeredBuild struct {
	g       *graph.Graph
	prio    api.Priority
	labels  map[string]string
	created time.Time
	rows    []state.Job
}

// maxOfferedJobs bounds the jobs of the builds a replica keeps offered
// (a few KB each at most): offered builds may wait in the store by the
// thousand, and one not kept is read back from the store as any other.
const maxOfferedJobs = 20000

// offeredBuilds keeps offered builds by ID, up to maxOfferedJobs jobs,
// forgetting the oldest first. A build is taken out when this replica
// claims it (kept or not, it is never needed again: a later claim
// finds it held before).
type offeredBuilds struct {
	mu    sync.Mutex
	byID  map[int64]*offeredBuild
	order []int64 // oldest first; may name builds already taken
	jobs  int
}

// put keeps build id.
func (o *offeredBuilds) put(id int64, b *offeredBuild) {
	n := len(b.g.Jobs)
	if n > maxOfferedJobs {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byID == nil {
		o.byID = map[int64]*offeredBuild{}
	}
	for o.jobs+n > maxOfferedJobs {
		old := o.order[0]
		o.order = o.order[1:]
		if x := o.byID[old]; x != nil {
			o.jobs -= len(x.g.Jobs)
			delete(o.byID, old)
		}
	}
	if len(o.order) > 2*len(o.byID)+64 {
		// Mostly builds already taken: keep the others only.
		kept := make([]int64, 0, len(o.byID)+1)
		for _, x := range o.order {
			if o.byID[x] != nil {
				kept = append(kept, x)
			}
		}
		o.order = kept
	}
	o.byID[id] = b
	o.order = append(o.order, id)
	o.jobs += n
}

// take returns build id if it is kept, and forgets it.
func (o *offeredBuilds) take(id int64) *offeredBuild {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.byID[id]
	if b != nil {
		delete(o.byID, id)
		o.jobs -= len(b.g.Jobs)
	}
	return b
}

func newReplicas(opts ReplicaOptions, l state.Leaser, reg *prometheus.Registry, log logrus.FieldLogger) *replicas {
	r := &replicas{opts: opts, leases: l, self: state.Owner{ID: opts.ID, URL: opts.URL}, kick: make(chan struct{}, 1),
		waiters:       map[int64]map[chan struct{}]bool{},
		expired:       map[int64]bool{},
		adopting:      map[string]*pendingAdoption{},
		resent:        map[string]string{},
		resuming:      map[int64]chan struct{}{},
		renewFailures: failureLog{log: log, what: "renew build leases"},
		claimFailures: failureLog{log: log, what: "claim builds"},
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_builds_claimed_total", Help: "Builds this replica took from the store (left unheld at submit, or of a dead replica).",
		}),
		claimedOffered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_builds_claimed_offered_total", Help: "Claimed builds this replica resumed from what it kept when it offered them (no replica held them meanwhile), without reading them back from the store.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_builds_dropped_total", Help: "Running builds this replica lost to another one (it failed to renew their leases in time).",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_forwarded_total", Help: "Client calls this replica forwarded to the replica holding their build.",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.claimed, r.claimedOffered, r.dropped, r.forwarded)
	}
	r.fenced, _ = l.(heldCommitter)
	r.freshClaims, _ = l.(freshClaimer)
	r.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := pr.In.Context().Value(ownerKey{}).(*url.URL)
			pr.SetURL(target)
			pr.Out.Header.Set(forwardedHeader, opts.ID)
		},
		// Event streams and followed logs must not be buffered.
		FlushInterval: -1,
		// The holder died and its lease has not expired yet: the call
		// may be retried (soon another replica holds the build).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			api.WriteError(w, fmt.Errorf("coordinator: replica holding the build is unreachable: %v: %w", err, api.ErrUnavailable))
		},
	}
	return r
}

// forwardedHeader marks a call one replica forwarded to another, which
// answers it itself rather than forwarding again.
const forwardedHeader = "X-Tryd-Forwarded-By"

type ownerKey struct{}

// awaitHolder registers a wake-up for when build id may have a holder;
// done unregisters it.
func (r *replicas) awaitHolder(id int64) (wake <-chan struct{}, done func()) {
	ch := make(chan struct{}, 1)
	r.waitMu.Lock()
	if r.waiters[id] == nil {
		r.waiters[id] = map[chan struct{}]bool{}
	}
	r.waiters[id][ch] = true
	r.waitMu.Unlock()
	return ch, func() {
		r.waitMu.Lock()
		delete(r.waiters[id], ch)
		if len(r.waiters[id]) == 0 {
			delete(r.waiters, id)
		}
		r.waitMu.Unlock()
	}
}

// heldNow wakes the calls waiting for a holder of build id.
func (r *replicas) heldNow(id int64) {
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	for ch := range r.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// kickClaims asks the claim loop to look for builds now.
func (c *Coordinator) kickClaims() {
	if c.rep == nil {
		return
	}
	select {
	case c.rep.kick <- struct{}{}:
	default:
	}
}

// workerSlotsLocked is the slots of this replica's connected workers
// (placeholder sessions of restored attempts have none).
func (c *Coordinator) workerSlotsLocked() int {
	slots := 0
	for _, s := range c.sessions {
		if !s.gone && s.slots > 0 {
			slots += s.slots
		}
	}
	return slots
}

// spareSlotsLocked is the slots of this replica's connected workers
// minus the jobs already queued here: positive when the workers would
// soon be idle without more builds. Running jobs do not count, so that
// a replica keeps about one round of work queued and its workers never
// wait for a claim. Jobs its workers hold prefetched count for a
// quarter each (maxPrefetchPerSlot): workers whose prefetch queues are
// full hold a round of work, and the replica leaves new builds to
// others (it took every build submitted to it while another replica's
// workers idled); counted in full, they kept the queues from filling
// (no batched reports: 0.35 requests per job instead of 0.21, ~17%
// fewer jobs/s on bench/coordinator-replicas.sh).
func (c *Coordinator) spareSlotsLocked() int {
	spare := c.workerSlotsLocked()
	if spare == 0 {
		return 0
	}
	spare -= (c.prefetchedN + maxPrefetchPerSlot - 1) / maxPrefetchPerSlot
	for rank := range c.ready {
		for b := range c.ready[rank] {
			for _, q := range b.queues {
				spare -= len(q.jobs) - q.head
			}
		}
	}
	return spare
}

// holdSubmitted decides, right after a build is stored, whether this
// replica runs it. When it does not, the build waits for a claim and the
// other replicas are nudged. A claim may also have taken the build
// already (it is stored unheld for a moment), even this replica's own
// claim loop: then HoldBuild fails and the claimed copy is the only one
// that runs.
//
// A build left to a claim is kept in memory first (offered, when the
// store tells fresh claims): this replica's own claim may follow the
// offer at once.
//
// The build is stored: placing it is not cancelled with the submitter's
// request (a client that hung up would leave it neither held nor
// offered, or held in the database by a hold it was told had failed;
// see claimContext).
func (c *Coordinator) holdSubmitted(ctx context.Context, id int64, offered *offeredBuild) bool {
	if c.rep == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.rep.opts.LeaseTTL/2)
	defer cancel()
	c.mu.Lock()
	spare := c.spareSlotsLocked()
	c.mu.Unlock()
	if spare > 0 {
		now := c.clock.Now()
		ok, err := c.rep.leases.HoldBuild(ctx, id, c.rep.self, now, now.Add(c.rep.opts.LeaseTTL))
		if err == nil && ok {
			return true
		}
		if err != nil {
			c.log.WithError(err).WithField("build", id).Warn("hold submitted build; leaving it to a claim")
		}
	}
	if c.rep.freshClaims != nil {
		c.rep.offered.put(id, offered)
	}
	if err := c.rep.leases.OfferBuild(ctx, id, c.rep.opts.ID); err != nil {
		c.log.WithError(err).Warn("offer build to the replicas")
	}
	return false
}

// spareCheck is how often a replica checks (in memory) whether its
// workers have spare slots while builds may be waiting for a holder:
// workers that finish jobs make slots spare without any nudge. A replica
// claims its next build when fewer jobs than slots are queued, so the
// check plus the claim must take less than a round of short jobs: at
// 20ms, a replica with 4 slots of trivial jobs often ran its queue dry
// before it claimed (seen in bench/coordinator-replicas.sh's logs). The
// check is a few microseconds, and runs only while builds wait.
const spareCheck = 4 * time.Millisecond

// leaseLoop renews this replica's leases every LeaseTTL/3 and claims
// builds nobody holds, until Close. Builds may be waiting after a nudge
// (a build left unheld, leases released) or a renewal period (leases
// expire silently); they are claimed as soon as there are spare slots,
// until the store has none left. While the store fails, renewals are
// retried every renewRetry and claims with backoff (claimRetryMin to
// renewEvery), each run of failures logged once.
func (c *Coordinator) leaseLoop() {
	nudges := c.rep.leases.ClaimNudges(c.ctx)
	// Held notices wake the calls waiting for a build's holder.
	held := c.rep.leases.HeldNotices(c.ctx)
	notices := make(chan struct{})
	go func() {
		defer close(notices)
		for {
			select {
			case <-c.ctx.Done():
				return
			case id := <-held:
				c.rep.heldNow(id)
			}
		}
	}()
	defer func() { <-notices }()
	renewEvery := c.rep.opts.LeaseTTL / 3
	renewRetry := c.rep.opts.LeaseTTL / 12
	var renewed, claimAt time.Time
	c.rep.renewed = c.clock.Now()
	pending, renewOK := true, true
	claimBackoff := time.Duration(0)
	// Attempts waiting for their build's claim are looked at every
	// adoptEvery: soon after the dead holder's lease expires, this
	// replica claims the build.
	adoptEvery := c.rep.opts.LeaseTTL / 12
	var adoptAt time.Time
	adopting := false
	for {
		now := c.clock.Now()
		if since := now.Sub(renewed); since >= renewEvery || (!renewOK && since >= renewRetry) {
			renewed = now
			renewOK = c.renewLeases()
			pending = true
		}
		if pending && !now.Before(claimAt) {
			var err error
			pending, err = c.claimBuilds()
			if err != nil {
				c.rep.claimFailures.fail(err)
				claimBackoff = min(max(2*claimBackoff, claimRetryMin), renewEvery)
				claimAt = c.clock.Now().Add(claimBackoff)
				pending = true
			} else {
				c.rep.claimFailures.ok()
				claimBackoff = 0
			}
		}
		if now := c.clock.Now(); !now.Before(adoptAt) {
			// Without attempts waiting this is a look at a map, on
			// every round (a registration kicks the loop).
			if adopting = c.checkAdoptions(); adopting {
				adoptAt = now.Add(adoptEvery)
			}
		}
		wait := renewEvery
		if !renewOK {
			wait = renewRetry
		}
		if adopting {
			wait = min(wait, max(adoptAt.Sub(c.clock.Now()), spareCheck))
		}
		if pending {
			wait = min(wait, max(spareCheck, claimAt.Sub(c.clock.Now())))
		}
		select {
		case <-c.ctx.Done():
			return
		case <-nudges:
			pending = true
		case <-c.rep.kick:
			pending = true
		case <-c.clock.After(wait):
		}
	}
}

// claimRetryMin is the first wait after a failed claim; it doubles up to
// a renewal period while claims fail (the store is unreachable).
const claimRetryMin = 50 * time.Millisecond

// releaseLeases gives up every lease of this replica (at Close, after the
// last commit).
func (c *Coordinator) releaseLeases() {
	if c.rep == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.rep.leases.ReleaseBuilds(ctx, c.rep.opts.ID, nil); err != nil {
		c.log.WithError(err).Warn("release build leases")
	}
}

// renewLeases extends this replica's leases, drops builds another
// replica took, and releases leases of builds this replica does not run.
// Submit holds a build in the store before adding it to memory, so a
// renewal racing with it sees a lease without a build, or a build
// missing from an answer computed just before: each case is confirmed
// before anything is dropped or released. It reports whether the
// renewal succeeded; while renewals fail, it drops the running builds
// before their leases may expire (expireLeases), and once the store
// answers again it releases them before renewing anything.
func (c *Coordinator) renewLeases() bool {
	ctx, cancel := context.WithTimeout(c.ctx, c.rep.opts.LeaseTTL/2)
	defer cancel()
	start := c.clock.Now()
	err := c.releaseExpired(ctx)
	var held []int64
	if err == nil {
		held, err = c.rep.leases.RenewBuilds(ctx, c.rep.opts.ID, start.Add(c.rep.opts.LeaseTTL))
	}
	if err != nil {
		if c.ctx.Err() == nil {
			c.rep.renewFailures.fail(err)
			c.expireLeases(start)
		}
		return false
	}
	c.rep.renewFailures.ok()
	c.rep.renewed = start
	keep := make(map[int64]bool, len(held))
	for _, id := range held {
		keep[id] = true
	}
	var missing []int64
	orphans := map[int64]bool{}
	c.mu.Lock()
	for id, b := range c.builds {
		if b.state == api.BuildRunning && !keep[id] {
			missing = append(missing, id)
		}
	}
	for _, id := range held {
		if _, ok := c.builds[id]; !ok && c.rep.resuming[id] == nil {
			orphans[id] = true
		}
	}
	c.mu.Unlock()

	// A lease without a build here for two renewals in a row is not a
	// Submit in progress (e.g. resuming a claimed build failed): give it
	// back so that the build does not wait forever.
	var release []int64
	for id := range orphans {
		if c.rep.orphans[id] {
			release = append(release, id)
			delete(orphans, id)
		}
	}
	c.rep.orphans = orphans
	if len(release) > 0 {
		c.log.WithField("builds", release).Warn("releasing leases of builds not running here")
		if err := c.rep.leases.ReleaseBuilds(ctx, c.rep.opts.ID, release); err != nil {
			c.log.WithError(err).Warn("release build leases")
		}
	}

	for _, id := range missing {
		// Zero time: whoever holds the lease, expired or not.
		l, err := c.rep.leases.BuildLease(ctx, id, time.Time{})
		if err != nil || (l.Held && l.Owner.ID == c.rep.opts.ID) {
			continue // ours after all (held after the renewal read)
		}
		c.mu.Lock()
		if b, here := c.builds[id]; here && b.state == api.BuildRunning {
			c.log.WithField("build", id).Warn("lost the lease of a running build to another replica; dropping it")
			c.dropBuildLocked(b)
			c.commit.forget(id)
		}
		c.mu.Unlock()
	}
	return true
}

// leaseMargin is how long before its leases expire a replica that
// cannot renew them stops running their builds (a fraction of
// LeaseTTL): it must stop before another replica may claim them, and
// renewals are retried every LeaseTTL/12.
func leaseMargin(ttl time.Duration) time.Duration { return ttl / 4 }

// expireLeases drops every running build once this replica's leases are
// about to expire unrenewed (the store has been unreachable for most of
// LeaseTTL): from their expiry on, another replica may claim and run
// them, and this one must not keep running them. Their attempts are
// stopped on the workers and recorded abandoned (not counted against
// MaxAttempts: an outage is no fault of the jobs); what was recorded of them
// stays pending in the committer, and releaseExpired gives their leases
// back once it is stored. They resume from the store on whichever replica claims them,
// this one included, as after a crash.
func (c *Coordinator) expireLeases(now time.Time) {
	if now.Sub(c.rep.renewed) < c.rep.opts.LeaseTTL-leaseMargin(c.rep.opts.LeaseTTL) {
		return
	}
	c.mu.Lock()
	var ids []int64
	fin := now
	for id, b := range c.builds {
		if b.state != api.BuildRunning {
			continue
		}
		// Their attempts are recorded ended, so that the next holder
		// runs their jobs again at once rather than wait the
		// heartbeat timeout for workers that were told to stop them;
		// abandoned, so that repeated outages do not use up the
		// jobs' attempts.
		for _, j := range b.order {
			for _, a := range j.attempts {
				if _, ok := c.attempts[a.rec.ID]; ok && a.rec.State == api.AttemptRunning {
					rec := a.rec
					rec.State, rec.Error, rec.Finished = api.AttemptAbandoned, "stopped: the replica's lease expired while the database was unreachable", &fin
					c.commit.attempt(rec)
				}
			}
		}
		ids = append(ids, id)
		c.rep.expired[id] = true
		c.dropBuildLocked(b)
	}
	c.mu.Unlock()
	if len(ids) > 0 {
		c.log.WithFields(logrus.Fields{"builds": len(ids), "since": now.Sub(c.rep.renewed).Round(time.Millisecond).String()}).
			Error("build leases not renewed before they expire: stopped running their builds, which resume from the store once it answers")
	}
}

// releaseExpired gives back the leases of the builds expireLeases
// dropped, once everything recorded of them is committed (otherwise a
// claimer would resume them without it; the fenced commit keeps a late
// write of it from mixing with the claimer's run).
func (c *Coordinator) releaseExpired(ctx context.Context) error {
	if len(c.rep.expired) == 0 {
		return nil
	}
	if err := wait(ctx, c.commit.current()); err != nil {
		return fmt.Errorf("coordinator: commit before releasing expired leases: %w", err)
	}
	ids := make([]int64, 0, len(c.rep.expired))
	for id := range c.rep.expired {
		ids = append(ids, id)
	}
	if err := c.rep.leases.ReleaseBuilds(ctx, c.rep.opts.ID, ids); err != nil {
		return err
	}
	c.log.WithField("builds", len(ids)).Info("released the leases of the builds dropped while the store was unreachable")
	clear(c.rep.expired)
	return nil
}

// heldCommitter is implemented by a state.Leaser whose commits can be
// fenced by a replica's leases (pgstate.Store.CommitHeld): the records
// of builds another replica took are skipped, and those builds named.
// A replica commits through it, so that what it recorded while its
// leases expired unseen (the store was unreachable) never mixes with the
// run of a replica that claimed the build meanwhile.
type heldCommitter interface {
	CommitHeld(ctx context.Context, ownerID string, b *state.Batch) (foreign []int64, err error)
}

// commitHeld is the committer's write in replica mode: a fenced commit
// if the store has one, after which the builds another replica took are
// dropped here.
func (c *Coordinator) commitHeld(ctx context.Context, b *state.Batch) error {
	if c.rep.fenced == nil {
		return c.store.Commit(ctx, b)
	}
	foreign, err := c.rep.fenced.CommitHeld(ctx, c.rep.opts.ID, b)
	if err != nil || len(foreign) == 0 {
		return err
	}
	c.log.WithField("builds", foreign).Warn("not stored: changes of builds another replica took; dropping them")
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range foreign {
		if b, ok := c.builds[id]; ok {
			if b.state == api.BuildRunning {
				c.dropBuildLocked(b)
			} else {
				delete(c.builds, id)
			}
		}
		c.commit.forget(id)
	}
	return nil
}

// dropBuildLocked forgets a running build whose lease another replica
// took (this one was too slow to renew), or may take (expireLeases): it
// records nothing more about it, since the new holder owns its state,
// and tells workers to stop its attempts.
func (c *Coordinator) dropBuildLocked(b *build) {
	c.rep.dropped.Inc()
	for _, j := range b.order {
		// Attempts handed out ahead of their dependencies or beyond
		// the worker's slots are dropped too: a worker starting one
		// would run a job the new holder runs.
		c.dropPending(j)
		c.dropPrefetched(j, false)
		for _, a := range j.attempts {
			if _, ok := c.attempts[a.rec.ID]; ok && a.rec.State == api.AttemptRunning {
				delete(c.attempts, a.rec.ID)
				c.m.running.Dec()
				if a.sess != nil {
					delete(a.sess.running, a.rec.ID)
					a.sess.cancel(a.rec.ID)
				}
			}
		}
		if j.state == api.JobQueued {
			c.m.queued.Dec()
		}
	}
	delete(c.ready[b.rank], b)
	delete(c.builds, b.id)
	c.pin(b.pinned, -1)
	b.pinned = nil
	b.notify()
}

// claimBuilds takes builds nobody holds, one at a time, while this
// replica has spare slots, and resumes them. It reports whether it
// should look again soon: builds may still be waiting, and it stopped
// for lack of spare slots that its workers will free. A replica without
// workers need not look until one registers (which kicks the claim
// loop): it would wake every spareCheck for nothing while builds wait
// for other replicas. Nor does one that has leases to release after an
// outage (expireLeases): it would resume them from the store before
// what it recorded of them is stored.
func (c *Coordinator) claimBuilds() (bool, error) {
	if len(c.rep.expired) > 0 {
		return false, nil
	}
	for range 16 {
		if c.ctx.Err() != nil {
			return false, nil
		}
		c.mu.Lock()
		spare, slots := c.spareSlotsLocked(), c.workerSlotsLocked()
		c.mu.Unlock()
		if spare <= 0 {
			return slots > 0, nil
		}
		n, err := c.claimOne()
		if err != nil {
			if c.ctx.Err() != nil {
				return false, nil
			}
			return true, err
		}
		if n == 0 {
			return false, nil
		}
	}
	return true, nil
}

// claimOne claims one build nobody holds, if any, and resumes it; it
// returns how many it claimed. The build is read back before c.mu is
// taken (loadClaimed): on a CPU-starved replica each store round trip
// may take a scheduling period, and the worker polls, submits and
// event streams of the replica would wait for all of them.
func (c *Coordinator) claimOne() (int, error) {
	ctx, cancel := c.claimContext()
	defer cancel()
	now := c.clock.Now()
	var ids []int64
	var fresh []bool
	var err error
	if c.rep.freshClaims != nil {
		ids, fresh, err = c.rep.freshClaims.ClaimBuildsFresh(ctx, c.rep.self, 1, now, now.Add(c.rep.opts.LeaseTTL))
	} else {
		ids, err = c.rep.leases.ClaimBuilds(ctx, c.rep.self, 1, now, now.Add(c.rep.opts.LeaseTTL))
	}
	if err != nil {
		return 0, err
	}
	if c.ctx.Err() != nil {
		return 0, nil // stopping: Close releases what was just claimed
	}
	loaded := make([]*claimedBuild, 0, len(ids))
	for i, id := range ids {
		loaded = append(loaded, c.loadClaimed(ctx, id, now, i < len(fresh) && fresh[i]))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cb := range loaded {
		c.installClaimed(cb, "claimed build")
	}
	c.wakeAll()
	return len(ids), nil
}

// claimContext returns the context of a claim: bounded by half a lease,
// but not cancelled by Close. A claim cancelled by the client may still
// run in the database afterwards (the statement was on its way, the
// cancel request arrives late) and take a build whose lease the closing
// replica released a moment before: the build would then wait for that
// lease to expire (seen in TestClaimBackAfterAnotherReplicaRan under
// load). Close waits for the claim instead, and releases it with the
// other leases.
func (c *Coordinator) claimContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.ctx), c.rep.opts.LeaseTTL/2)
}

// buildPathRE matches the client calls about one build that the holder
// answers.
var buildPathRE = regexp.MustCompile(`^/api/builds/([0-9]+)(/events|/cancel)?$`)

// routeToHolder forwards client calls about builds held by another
// replica to that replica; everything else goes to next.
func (c *Coordinator) routeToHolder(next http.Handler) http.Handler {
	if c.rep == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Worker calls (most of the traffic) pass straight through.
		path := r.URL.Path
		if !strings.HasPrefix(path, "/api/builds/") && !strings.HasPrefix(path, "/api/attempts/") {
			next.ServeHTTP(w, r)
			return
		}
		if p, err := c.auth.check(r); err != nil || !p.client {
			next.ServeHTTP(w, r) // which refuses it: never forward unauthenticated calls
			return
		}
		if r.Header.Get(forwardedHeader) != "" {
			// Another replica found this one holding the build: answer
			// here, never forward again. A claim is announced when it
			// commits, so the build may still be resuming here: an
			// event stream or a cancel waits for it (the claim loop
			// wakes it) rather than fail as unavailable.
			if m := buildPathRE.FindStringSubmatch(path); m != nil && m[2] != "" {
				id, _ := strconv.ParseInt(m[1], 10, 64)
				ctx, cancel := context.WithTimeout(r.Context(), resumeWait)
				c.holderOf(ctx, id, true)
				cancel()
			}
			next.ServeHTTP(w, r)
			return
		}
		var id int64
		wait := true
		if m := buildPathRE.FindStringSubmatch(path); m != nil {
			id, _ = strconv.ParseInt(m[1], 10, 64)
			// A status answers at once, from the store if need be, and
			// so does a cancel (Cancel takes an unheld build to cancel
			// it): only an event stream waits for the build to run.
			wait = m[2] == "/events"
		} else if m := attemptLogRE.FindStringSubmatch(path); m != nil {
			if a, err := c.store.Attempt(r.Context(), m[1]); err == nil && a.State == api.AttemptRunning {
				id = a.BuildID
			}
		}
		if id <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		o, ok := c.holderOf(r.Context(), id, wait)
		if !ok {
			// Here, unknown, finished, or still without a holder
			// after a while: this replica answers (from the store).
			next.ServeHTTP(w, r)
			return
		}
		u, err := url.Parse(o.URL)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		c.rep.forwarded.Inc()
		c.rep.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ownerKey{}, u)))
	})
}

// unheldWait bounds how long a call about a running build that no
// replica holds yet (submitted while every replica was busy) waits for a
// holder.
const unheldWait = 30 * time.Second

// resumeWait bounds how long a forwarded call waits for a build this
// replica claimed to be resumed.
const resumeWait = 10 * time.Second

// While a call waits for a build's holder, held notices (and this
// replica's own claims) wake it; it also reads the lease every
// unheldPollMin, doubling up to unheldPollMax, in case a notice was
// lost. Polling alone, every 50ms, was a fifth of a busy replica's CPU.
const (
	unheldPollMin = 100 * time.Millisecond
	unheldPollMax = 2 * time.Second
)

// holderOf returns the other replica to forward a call about build id
// to; ok is false when this replica should answer itself. With wait, a
// running build without a holder is waited for, so that clients
// following it do not see it "unavailable" while it waits for spare
// workers.
func (c *Coordinator) holderOf(ctx context.Context, id int64, wait bool) (state.Owner, bool) {
	deadline := c.clock.Now().Add(unheldWait)
	var wake <-chan struct{}
	if wait {
		// Registered before the first read, so that no notice is missed.
		var done func()
		wake, done = c.rep.awaitHolder(id)
		defer done()
	}
	poll := unheldPollMin
	for {
		c.mu.Lock()
		_, here := c.builds[id]
		c.mu.Unlock()
		if here {
			return state.Owner{}, false
		}
		now := c.clock.Now()
		l, err := c.rep.leases.BuildLease(ctx, id, now)
		switch {
		case err != nil || !l.Running:
			return state.Owner{}, false
		case l.Held && l.Owner.ID != c.rep.opts.ID:
			return l.Owner, true
		case !wait || !now.Before(deadline):
			return state.Owner{}, false
		}
		// Unheld, or claimed here and being resumed: wait.
		select {
		case <-ctx.Done():
			return state.Owner{}, false
		case <-c.ctx.Done():
			return state.Owner{}, false
		case <-wake:
		case <-c.clock.After(min(poll, deadline.Sub(now))):
			poll = min(2*poll, unheldPollMax)
		}
	}
}

var attemptLogRE = regexp.MustCompile(`^/api/attempts/([0-9a-f]{1,64})/log$`)

// pendingAdoption is a running attempt that a worker listed when it
// registered here, of a build this replica does not hold: the worker
// failed over from the replica that held the build (which died, or
// which the worker can no longer reach). Cancelling it at once ran the
// job twice: the replica that claims the build once the dead holder's
// lease expires adopts its running attempts, and found this one's
// worker no longer running it. So the attempt is held here until the
// build's fate is known (checkAdoptions):
//
//   - this replica claims the build (it claims such a build itself the
//     moment its lease expires, spare slots or not: its workers run the
//     build's attempts): installBuild adopts the attempt into the
//     worker's session, as after a coordinator restart
//     (settleAdoptions), and applies the result the worker reported
//     meanwhile, if any;
//   - the build finishes, another replica claims it, or the replica
//     holding it is alive (its lease is still held by it adoptLive
//     after it was first seen: a dead replica's lease expires within
//     LeaseTTL, a live one renews it), or adoptionBound passes: the
//     attempt is cancelled (its worker is not connected to the holder,
//     which cannot hear of the run; the holder runs the job again
//     after the heartbeat timeout).
//
// Meanwhile the worker's polls do not draw a cancellation for it, its
// log chunks are stored here as an adopted attempt's would be
// (appendPendingLog: a job that ends while it waits keeps the end of
// its log, which the worker sends before its result and retries only
// briefly), and its result is kept and answered in
// PollResponse.ResultsLater (not acknowledged).
type pendingAdoption struct {
	worker string
	build  int64
	// since is when the worker registered with it here; owner is the
	// build's lease holder then ("" if nobody held it).
	since time.Time
	owner string
	// result is the worker's result, reported before the claim.
	result *preparedResult

	// logMu serializes the appends to the attempt's log while it waits
	// and the end of the wait (endWait, under c.mu: lock order c.mu,
	// then logMu). logSize and logElsewhere are the log's stored end
	// and whether its next chunk may start beyond it (attempt's fields
	// of the same names), logTruncated whether bytes beyond the limit
	// were dropped; ended is set when the wait is over (adopted or
	// cancelled): a chunk that found it waiting is answered "again
	// later", and sent again finds the adopted attempt, or none.
	logMu        sync.Mutex
	logSize      int64
	logElsewhere bool
	logTruncated bool
	ended        bool
}

// adoptLive is how long after an attempt was first held for adoption
// its build's lease may still be held by the replica that held it then
// before that replica counts as alive (it renewed the lease, which
// would have expired within LeaseTTL had it died); the margin is for
// the replicas' clocks.
func (r *replicas) adoptLive() time.Duration { return r.opts.LeaseTTL + r.opts.LeaseTTL/2 }

// adoptionBound is how long an attempt may wait for its build's claim
// at the most: two lease periods (the dead holder's lease expires, and
// a claim follows) plus the heartbeat timeout.
func (c *Coordinator) adoptionBound() time.Duration {
	return 2*c.rep.opts.LeaseTTL + c.opts.HeartbeatTimeout
}

// maxAdoptionLookups bounds the attempts of one registration looked up
// in the store, per registered slot (a worker lists its running
// attempts and its unreported results, at most about two a slot).
const maxAdoptionLookups = 4

// adoptionCandidates looks up, in the store, the attempts that worker
// lists in running at registration and that this replica does not run:
// those recorded as running by that worker, of a build still running,
// may be held for adoption (see pendingAdoption). c.mu is not held.
func (c *Coordinator) adoptionCandidates(ctx context.Context, worker string, running []string, slots int) map[string]*pendingAdoption {
	if c.rep == nil || len(running) == 0 {
		return nil
	}
	var unknown []string
	c.mu.Lock()
	for _, id := range running {
		if c.attempts[id] == nil && attemptIDRE.MatchString(id) && len(unknown) < maxAdoptionLookups*slots {
			unknown = append(unknown, id)
		}
	}
	c.mu.Unlock()
	if len(unknown) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.rep.opts.LeaseTTL/2)
	defer cancel()
	now := c.clock.Now()
	leases := map[int64]*state.Lease{}
	out := map[string]*pendingAdoption{}
	for _, id := range unknown {
		a, err := c.store.Attempt(ctx, id)
		if err != nil || a.State != api.AttemptRunning || a.Worker != worker {
			continue
		}
		l, ok := leases[a.BuildID]
		if !ok {
			got, err := c.rep.leases.BuildLease(ctx, a.BuildID, now)
			if err == nil {
				l = &got
			}
			leases[a.BuildID] = l
		}
		if l == nil || !l.Running {
			continue
		}
		// The log began on the disk of the replica that dispatched
		// the attempt; this one may hold a part from before (it
		// waited here already, or this replica held the build once).
		p := &pendingAdoption{worker: worker, build: a.BuildID, since: now, logSize: c.logs.size(id), logElsewhere: true}
		if l.Held {
			p.owner = l.Owner.ID
		}
		out[id] = p
	}
	return out
}

// holdForAdoption decides, at worker's registration (under c.mu),
// whether its attempt id, unknown here, waits for its build's claim
// rather than being cancelled: it does if it already waited (an
// earlier registration) or cand says so and the build is not held here
// (then the attempt would be running here).
func (c *Coordinator) holdForAdoption(worker, id string, cand *pendingAdoption) bool {
	if c.rep == nil {
		return false
	}
	if p := c.rep.adopting[id]; p != nil && p.worker == worker {
		return true
	}
	if cand == nil || c.builds[cand.build] != nil {
		return false
	}
	c.rep.adopting[id] = cand
	c.log.WithFields(logrus.Fields{"worker": worker, "attempt": id, "build": cand.build, "holder": cand.owner}).
		Info("worker runs an attempt of a build this replica does not hold: keeping it for adoption when the build is claimed")
	return true
}

// forgetAdoptions drops the attempts held for adoption of worker that
// it no longer lists (it registered again without them); under c.mu.
func (c *Coordinator) forgetAdoptions(worker string, listed map[string]bool) {
	if c.rep == nil {
		return
	}
	for id, p := range c.rep.adopting {
		if p.worker == worker && !listed[id] {
			c.endWait(id, p)
		}
	}
}

// endWait ends the wait of attempt id for its build's claim (under
// c.mu): log chunks no longer land in p (see pendingAdoption.ended).
func (c *Coordinator) endWait(id string, p *pendingAdoption) {
	delete(c.rep.adopting, id)
	p.logMu.Lock()
	p.ended = true
	p.logMu.Unlock()
}

// waitingFor returns attempt id of worker if it waits for its build's
// claim, else nil (under c.mu).
func (c *Coordinator) waitingFor(worker, id string) *pendingAdoption {
	if c.rep == nil {
		return nil
	}
	if p := c.rep.adopting[id]; p != nil && p.worker == worker {
		return p
	}
	return nil
}

// adoptionPending reports whether attempt id of worker waits for its
// build's claim (under c.mu).
func (c *Coordinator) adoptionPending(worker, id string) bool {
	return c.waitingFor(worker, id) != nil
}

// pendingLog decides, in replica mode, what becomes of a log chunk of
// attempt id, which this replica does not run, from worker (under
// c.mu): with keep, appendPendingLog takes it. It does when the
// attempt waits for its build's claim (p), and also, answering "again
// later", when the worker has not registered here (no session, or only
// the placeholder of attempts adopted with a claimed build): a worker
// failing over from a dead replica may send chunks here before its
// registration, which may hold the attempt for adoption. A conflict
// would have stopped the job.
func (c *Coordinator) pendingLog(worker, id string) (p *pendingAdoption, keep bool) {
	if c.rep == nil {
		return nil, false
	}
	if p := c.waitingFor(worker, id); p != nil {
		return p, true
	}
	s := c.byName[worker]
	return nil, s == nil || s.slots == 0
}

// appendPendingLog stores a chunk of the log of attempt id, which waits
// for its build's claim (p; nil: its worker has not registered yet, see
// pendingLog), in this replica's log store: the attempt, once adopted,
// continues it (settleAdoptions). So a job that ends before the claim
// keeps the end of its log. Offsets follow the rules of an adopted
// attempt's log (logStore.appendChunk).
func (c *Coordinator) appendPendingLog(p *pendingAdoption, id string, offset int64, data []byte) (int64, error) {
	if p == nil {
		return 0, fmt.Errorf("log of attempt %s: the worker has not registered with this replica: %w", truncate(id), api.ErrUnavailable)
	}
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if p.ended {
		return p.logSize, fmt.Errorf("log of attempt %s: the wait for its build's claim just ended: %w", truncate(id), api.ErrUnavailable)
	}
	r, err := c.logs.appendChunk(id, p.logSize, p.logElsewhere, c.opts.MaxLogBytes, offset, data)
	p.logSize, p.logElsewhere = r.size, r.elsewhere
	p.logTruncated = p.logTruncated || r.truncated
	return p.logSize, err
}

// keepForAdoption keeps the result of an attempt that waits for its
// build's claim, to be applied once the build is claimed here (under
// c.mu); it reports whether it did. The worker is told to send it again
// later (PollResponse.ResultsLater): it is not stored yet.
func (c *Coordinator) keepForAdoption(worker string, r preparedResult) bool {
	p := c.waitingFor(worker, r.res.AttemptID)
	if p == nil {
		return false
	}
	p.result = &r
	return true
}

// resentAdopted reports whether a result that applyResult refused is
// the worker sending again one that was applied when the attempt was
// adopted (settleAdoptions): it is acknowledged (once stored) rather
// than rejected. Under c.mu.
func (c *Coordinator) resentAdopted(worker, id string) bool {
	if c.rep == nil || c.rep.resent[id] != worker {
		return false
	}
	delete(c.rep.resent, id)
	return true
}

// dropAdoption cancels an attempt that waited for its build's claim
// (under c.mu).
func (c *Coordinator) dropAdoption(id string, p *pendingAdoption, why string) {
	c.endWait(id, p)
	if s := c.byName[p.worker]; s != nil && !s.gone {
		s.cancel(id)
	}
	c.log.WithFields(logrus.Fields{"worker": p.worker, "attempt": id, "build": p.build}).
		Info("cancelling an attempt a worker ran for another replica: " + why)
}

// settleAdoptions ends the wait of the attempts held for adoption of
// build b, which this replica just resumed (claimed, under c.mu): those
// installBuild adopted into their worker's session are confirmed (the
// worker listed them when it registered), and the results reported
// meanwhile applied; the others (not running in the store any more)
// are cancelled.
func (c *Coordinator) settleAdoptions(b *build, now time.Time) {
	if c.rep == nil {
		return
	}
	for id, p := range c.rep.adopting {
		if p.build != b.id {
			continue
		}
		a := c.attempts[id]
		if a == nil || a.sess.name != p.worker || a.sess.slots == 0 {
			c.dropAdoption(id, p, "the build was resumed here without it running")
			continue
		}
		c.endWait(id, p)
		a.claimed, a.missed = false, 0
		// Its log goes on from what arrived while it waited. a is
		// out of AppendLog's reach until c.mu is released.
		a.logSize, a.logElsewhere = p.logSize, p.logElsewhere
		a.rec.LogBytes, a.rec.LogTruncated = a.logSize, a.rec.LogTruncated || p.logTruncated
		c.log.WithFields(logrus.Fields{"worker": p.worker, "attempt": id, "build": b.id}).
			Info("adopted an attempt its worker ran through the failover")
		// A planner's fragment was not read with its result (the
		// attempt was unknown then): the worker sends it again.
		if p.result != nil && !a.j.g.Planner && c.applyResult(p.worker, *p.result, now) {
			if len(c.rep.resent) >= 4096 {
				clear(c.rep.resent)
			}
			c.rep.resent[id] = p.worker
		}
	}
}

// checkAdoptions decides the fate of the attempts waiting for their
// build's claim (see pendingAdoption), from the builds' leases; it
// claims such a build itself once nobody holds it. It reports whether
// attempts still wait. leaseLoop only.
func (c *Coordinator) checkAdoptions() bool {
	c.mu.Lock()
	if len(c.rep.adopting) == 0 {
		c.mu.Unlock()
		return false
	}
	now := c.clock.Now()
	builds := map[int64]bool{}
	for id, p := range c.rep.adopting {
		s := c.byName[p.worker]
		switch {
		case s == nil || s.gone:
			c.endWait(id, p) // the worker left: nothing to tell it
		case now.Sub(p.since) >= c.adoptionBound():
			c.dropAdoption(id, p, "its build was not claimed here in time")
		case c.builds[p.build] != nil:
			c.dropAdoption(id, p, "the build was resumed here without it running")
		default:
			builds[p.build] = true
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.rep.opts.LeaseTTL/2)
	defer cancel()
	for id := range builds {
		l, err := c.rep.leases.BuildLease(ctx, id, now)
		switch {
		case errors.Is(err, state.ErrNotFound):
			c.dropAdoptions(id, "the build is not in the store", nil)
		case err != nil:
			// The store fails: wait (adoptionBound still applies).
		case !l.Running:
			c.dropAdoptions(id, "the build finished", nil)
		case l.Held && l.Owner.ID == c.rep.opts.ID:
			// Claimed here, being resumed: settleAdoptions decides.
		case l.Held:
			c.dropAdoptions(id, "replica "+l.Owner.ID+" holds the build", func(p *pendingAdoption) bool {
				return p.owner != l.Owner.ID || now.Sub(p.since) >= c.rep.adoptLive()
			})
		case len(c.rep.expired) == 0:
			c.claimForAdoption(now, id)
		}
	}
	return true
}

// dropAdoptions cancels the attempts of build id waiting for its claim
// that match (all if match is nil).
func (c *Coordinator) dropAdoptions(id int64, why string, match func(*pendingAdoption) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for aid, p := range c.rep.adopting {
		if p.build == id && (match == nil || match(p)) {
			c.dropAdoption(aid, p, why)
		}
	}
}

// claimForAdoption claims build id, whose lease expired, and resumes it
// here, adopting the attempts its workers ran through the failover.
// Unlike claimBuilds it does not wait for spare slots: the build's
// attempts run on this replica's workers already.
func (c *Coordinator) claimForAdoption(now time.Time, id int64) {
	ctx, cancel := c.claimContext()
	defer cancel()
	ok, err := c.rep.leases.HoldBuild(ctx, id, c.rep.self, now, now.Add(c.rep.opts.LeaseTTL))
	if err != nil || !ok || c.ctx.Err() != nil {
		return // someone else's (seen next time), the store fails, or stopping (Close releases it)
	}
	cb := c.loadClaimed(ctx, id, now, false)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.installClaimed(cb, "claimed build, whose attempts this replica's workers run")
	c.wakeAll()
}

// claimedBuild is a build this replica claimed, read back for resuming
// (loadClaimed) and not installed yet (installClaimed).
type claimedBuild struct {
	id int64
	// at is when it was claimed: its lease runs from then.
	at time.Time
	// kept says that it is resumed from what this replica kept when it
	// offered it (see offeredBuild).
	kept bool
	l    *loadedBuild
	err  error
	// done is closed once it is installed or given up.
	done chan struct{}
}

// loadClaimed reads build id, which this replica claimed at at, back
// for resuming, without c.mu (see loadBuild; fresh: no replica held it
// before this claim, and a build this replica offered is resumed from
// what it kept). It returns nil when there is nothing to install: the
// build runs here already, or another call is resuming it (a Cancel
// and a claim after the lease expired); installClaimed takes nil.
func (c *Coordinator) loadClaimed(ctx context.Context, id int64, at time.Time, fresh bool) *claimedBuild {
	var offered *offeredBuild
	if c.rep.freshClaims != nil {
		// Taken whatever comes next: a later claim finds the build
		// held before.
		offered = c.rep.offered.take(id)
	}
	c.mu.Lock()
	_, here := c.builds[id]
	busy := c.rep.resuming[id] != nil
	cb := &claimedBuild{id: id, at: at, kept: fresh && offered != nil, done: make(chan struct{})}
	if !here && !busy {
		c.rep.resuming[id] = cb.done
	}
	c.mu.Unlock()
	if here || busy {
		return nil
	}
	cb.l, cb.err = c.loadBuild(ctx, id, at, fresh, offered)
	return cb
}

// installClaimed resumes cb, loaded by loadClaimed (nil: nothing to do),
// unless what happened while it was read forbids it (under c.mu): the
// replica stops, or the read outlasted what is left of the lease
// without renewals (leaseMargin before its expiry; the lease may be
// another replica's by now). Other calls could not touch the build
// meanwhile: it was in none of c's maps (a Cancel of it waits for the
// resume, see awaitResumed), attempts held for adoption are settled
// here (settleAdoptions, from the maps as they are now), and renewals
// do not count its lease as an orphan's. A build not installed is left
// to its lease's expiry (or release as an orphan) and another claim.
func (c *Coordinator) installClaimed(cb *claimedBuild, msg string) {
	if cb == nil {
		return
	}
	delete(c.rep.resuming, cb.id)
	close(cb.done)
	log := c.log.WithField("build", cb.id)
	ttl := c.rep.opts.LeaseTTL
	switch _, here := c.builds[cb.id]; {
	case cb.err != nil:
		log.WithError(cb.err).Error("resume claimed build")
		return
	case c.ctx.Err() != nil || here:
		return
	case c.clock.Now().Sub(cb.at) >= ttl-leaseMargin(ttl):
		log.Warn("resume claimed build: reading it back took most of its lease; leaving it to another claim")
		return
	}
	c.installBuild(cb.l, cb.at, true)
	log.Info(msg)
	c.rep.claimed.Inc()
	if cb.kept {
		c.rep.claimedOffered.Inc()
	}
	c.rep.heldNow(cb.id)
}

// awaitResumed waits until build id, if this replica is reading it back
// after a claim, is installed or given up (or ctx ends).
func (c *Coordinator) awaitResumed(ctx context.Context, id int64) {
	c.mu.Lock()
	done := c.rep.resuming[id]
	c.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}
