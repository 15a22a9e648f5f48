package state

import (
	"context"
	"time"
)

// Owner is a coordinator replica that may hold builds: its ID (unique per
// process run) and the base URL other replicas reach it at.
type Owner struct {
	ID  string
	URL string
}

// Lease is a build's lease as Leaser.BuildLease reads it.
type Lease struct {
	// Running is whether the build is still running; only running
	// builds are held.
	Running bool
	// Held is whether a replica holds the lease; Owner is that replica.
	Held  bool
	Owner Owner
}

// OwnFirst is how long ClaimBuilds prefers the builds a replica offered
// over older ones offered by other replicas. Within it, a build follows
// its submitter, which saves forwarding its calls; past it, builds are
// claimed oldest first whoever offered them, so that a replica without
// spare workers does not delay its builds much.
const OwnFirst = 5 * time.Second

// Leaser is implemented by stores that several coordinator replicas share
// (PostgreSQL). Each running build is run by one replica at a time, the
// one holding its lease; a replica renews its leases while it lives, and
// a build whose lease expired (its replica died) or that nobody holds is
// claimed by another replica, which resumes it from the store. Claims are
// atomic: two replicas never hold one build.
type Leaser interface {
	// HoldBuild takes the lease of one running build for o until the
	// given time if nobody holds it now (never leased, released, or
	// expired at now), and reports whether it took it. A lease o already
	// holds is not taken again: a replica that submits a build and holds
	// it must not also run it because its own claim loop claimed the
	// build first (that ran every job of the build twice).
	HoldBuild(ctx context.Context, id int64, o Owner, now, until time.Time) (bool, error)
	// ClaimBuilds takes up to limit running builds that nobody holds
	// (never leased, released, or expired at now) and returns their
	// IDs. Builds o offered (OfferBuild) come first, then the others,
	// oldest first within each; but a build created OwnFirst or longer
	// before now counts as o's own, so that no build waits long for its
	// submitter.
	ClaimBuilds(ctx context.Context, o Owner, limit int, now, until time.Time) ([]int64, error)
	// RenewBuilds extends every lease ownerID holds on a running build
	// and returns those builds' IDs; a build missing from the answer was
	// lost to another replica.
	RenewBuilds(ctx context.Context, ownerID string, until time.Time) ([]int64, error)
	// ReleaseBuilds gives up ownerID's leases (all of them when ids is
	// nil) and nudges the other replicas to claim them.
	ReleaseBuilds(ctx context.Context, ownerID string, ids []int64) error
	// BuildLease reads a build's lease at now (a zero now ignores
	// expiry); ErrNotFound if there is no such build.
	BuildLease(ctx context.Context, id int64, now time.Time) (Lease, error)
	// OfferBuild records that running build id, submitted to the
	// replica with ID by, waits for a claim (by did not hold it), and
	// nudges every replica. by's own claims prefer it: a client follows
	// a build through the replica it submitted it to, which forwards
	// every call (and each event of a stream) to another holder.
	OfferBuild(ctx context.Context, id int64, by string) error
	// ClaimNudges returns a channel that receives (coalesced) when some
	// replica called OfferBuild or ReleaseBuilds, until ctx ends.
	ClaimNudges(ctx context.Context) <-chan struct{}
	// HeldNotices returns a channel that receives the ID of every build
	// some replica took (HoldBuild, ClaimBuilds), until ctx ends, so
	// that calls waiting for a build's holder need not poll
	// BuildLease. Notices are a hint: one may be dropped (the channel
	// is full, the connection was lost), so waiters also poll, slowly.
	HeldNotices(ctx context.Context) <-chan int64
}
