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

	"github.com/tryd-ci/tryd/coordinator/api"
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
// forwards each of them. Replicas renew their leases every LeaseTTL/3;
// when a replica dies, its leases expire and replicas with workers claim
// its builds (SELECT ... FOR UPDATE SKIP LOCKED: never two at once) and
// resume them from the store exactly as a restarted coordinator would
// (running attempts are adopted when their workers re-register, or lost
// after the heartbeat timeout).
//
// A worker may connect to any replica (e.g. through a load balancer with
// session affinity) and runs the jobs of the builds that replica holds.
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

	// waiters are the calls waiting for a holder of a build (holderOf),
	// woken by held notices and by this replica's own claims.
	waitMu  sync.Mutex
	waiters map[int64]map[chan struct{}]bool

	claimed, dropped, forwarded prometheus.Counter
}

func newReplicas(opts ReplicaOptions, l state.Leaser, reg *prometheus.Registry) *replicas {
	r := &replicas{opts: opts, leases: l, self: state.Owner{ID: opts.ID, URL: opts.URL}, kick: make(chan struct{}, 1),
		waiters: map[int64]map[chan struct{}]bool{},
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_builds_claimed_total", Help: "Builds this replica took from the store (left unheld at submit, or of a dead replica).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_builds_dropped_total", Help: "Running builds this replica lost to another one (it failed to renew their leases in time).",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_forwarded_total", Help: "Client calls this replica forwarded to the replica holding their build.",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.claimed, r.dropped, r.forwarded)
	}
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
func (c *Coordinator) holdSubmitted(ctx context.Context, id int64) bool {
	if c.rep == nil {
		return true
	}
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
// until the store has none left.
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
	var renewed time.Time
	pending := true
	for {
		if now := c.clock.Now(); now.Sub(renewed) >= renewEvery {
			renewed = now
			c.renewLeases()
			pending = true
		}
		if pending {
			pending = c.claimBuilds()
		}
		wait := renewEvery
		if pending {
			wait = min(wait, spareCheck)
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
// before anything is dropped or released.
func (c *Coordinator) renewLeases() {
	ctx, cancel := context.WithTimeout(c.ctx, c.rep.opts.LeaseTTL/2)
	defer cancel()
	held, err := c.rep.leases.RenewBuilds(ctx, c.rep.opts.ID, c.clock.Now().Add(c.rep.opts.LeaseTTL))
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.WithError(err).Warn("renew build leases")
		}
		return
	}
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
		if _, ok := c.builds[id]; !ok {
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
			c.dropBuildLocked(b)
		}
		c.mu.Unlock()
	}
}

// dropBuildLocked forgets a running build whose lease another replica
// took (this one was too slow to renew): it records nothing more about
// it, since the new holder owns its state, and tells workers to stop its
// attempts.
func (c *Coordinator) dropBuildLocked(b *build) {
	c.log.WithField("build", b.id).Warn("lost the lease of a running build to another replica; dropping it")
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
// for lack of spare slots that its workers will free, or after an
// error. A replica without workers need not look until one registers
// (which kicks the claim loop): it would wake every spareCheck for
// nothing while builds wait for other replicas.
func (c *Coordinator) claimBuilds() bool {
	for range 16 {
		if c.ctx.Err() != nil {
			return false
		}
		c.mu.Lock()
		spare, slots := c.spareSlotsLocked(), c.workerSlotsLocked()
		c.mu.Unlock()
		if spare <= 0 {
			return slots > 0
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.rep.opts.LeaseTTL/2)
		now := c.clock.Now()
		ids, err := c.rep.leases.ClaimBuilds(ctx, c.rep.self, 1, now, now.Add(c.rep.opts.LeaseTTL))
		if err != nil {
			cancel()
			if c.ctx.Err() == nil {
				c.log.WithError(err).Warn("claim builds")
			}
			return true
		}
		c.mu.Lock()
		for _, id := range ids {
			if _, ok := c.builds[id]; ok {
				continue
			}
			if err := c.restoreBuild(ctx, id, now); err != nil {
				// Leave it to the lease's expiry and another try.
				c.log.WithError(err).WithField("build", id).Error("resume claimed build")
				continue
			}
			c.log.WithField("build", id).Info("claimed build")
			c.rep.claimed.Inc()
			c.rep.heldNow(id)
		}
		c.wakeAll()
		c.mu.Unlock()
		cancel()
		if len(ids) == 0 {
			return false
		}
	}
	return true
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
			// A status answers at once, from the store if need be.
			wait = m[2] != ""
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
