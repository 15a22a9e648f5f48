package pgstate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// HoldBuild implements state.Leaser. It takes the build's row FOR
// UPDATE first, as claims do: the fence of a fenced commit of the
// build's last holder (FOR KEY SHARE, see CommitHeld) holds it off until
// that commit ends, so that a build whose lease expired is never taken
// in the middle of its last holder's commit (an UPDATE alone takes a
// lock the fence does not conflict with). The notice to the other
// replicas goes in the same statement: one round trip.
func (s *Store) HoldBuild(ctx context.Context, id int64, o state.Owner, now, until time.Time) (bool, error) {
	var held int
	err := s.pool.QueryRow(ctx, `WITH h AS (UPDATE builds SET owner=$1, owner_url=$2, lease_expires=$3
			WHERE id IN (SELECT id FROM builds WHERE id=$4 AND state=$5 AND (owner='' OR lease_expires<$6) FOR UPDATE)
			RETURNING id)
		SELECT count(*) FROM h, pg_notify($7, id::text)`,
		o.ID, o.URL, until.UnixNano(), id, string(api.BuildRunning), now.UnixNano(), heldChannel).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("pgstate: hold build %d: %w", id, err)
	}
	return held == 1, nil
}

// ClaimBuilds implements state.Leaser. SKIP LOCKED lets replicas claim
// concurrently without waiting on each other's candidates, and without
// ever both taking one build. Each claimed build is announced on
// heldChannel by the same statement (pg_notify in FROM runs once per
// row; notifications are sent at commit). The candidates are the few
// running builds without a live lease: sorting them is cheap. The same
// statement tells which claimed builds have job sets, so that the
// commits of those without (most) need not read the sets first.
func (s *Store) ClaimBuilds(ctx context.Context, o state.Owner, limit int, now, until time.Time) ([]int64, error) {
	ids, _, err := s.ClaimBuildsFresh(ctx, o, limit, now, until)
	return ids, err
}

// ClaimBuildsFresh is ClaimBuilds that also tells, for each claimed
// build, whether this claim is the first time any replica took its
// lease (fresh[i] for ids[i]). Only a build's holder writes its
// records (jobs, attempts, graph, state; commits are fenced by the
// lease, see CommitHeld), so a fresh build's records are still exactly
// what CreateBuild wrote: a replica that kept what it created need not
// read them back. The count of holds is the builds.holds column, which
// a trigger increments whenever an owner is set, and which the claim's
// UPDATE returns as it left it (concurrent claims of one build are
// serialized by its row lock).
func (s *Store) ClaimBuildsFresh(ctx context.Context, o state.Owner, limit int, now, until time.Time) (ids []int64, fresh []bool, err error) {
	if limit <= 0 {
		return nil, nil, nil
	}
	rows, err := s.pool.Query(ctx, `WITH c AS (UPDATE builds SET owner=$1, owner_url=$2, lease_expires=$3
			WHERE id IN (SELECT id FROM builds WHERE state=$4 AND (owner='' OR lease_expires<$5)
				ORDER BY (offered_by=$1 OR created<=$8) DESC, id LIMIT $6 FOR UPDATE SKIP LOCKED)
			RETURNING id, holds)
		SELECT id, EXISTS (SELECT 1 FROM job_sets WHERE build_id = id), holds = 1 FROM c, pg_notify($7, id::text)`,
		o.ID, o.URL, until.UnixNano(), string(api.BuildRunning), now.UnixNano(), limit, heldChannel, now.Add(-state.OwnFirst).UnixNano())
	if err != nil {
		return nil, nil, fmt.Errorf("pgstate: claim builds: %w", err)
	}
	var without []int64
	var id int64
	var hasSets, first bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &hasSets, &first}, func() error {
		ids, fresh = append(ids, id), append(fresh, first)
		if !hasSets {
			without = append(without, id)
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("pgstate: claim builds: %w", err)
	}
	s.setsMu.Lock()
	for _, id := range without {
		if _, known := s.sets.Lookup(id); !known {
			s.sets.Put(id, nil) // it exists: its sets would have been created with it
		}
	}
	s.setsMu.Unlock()
	return ids, fresh, nil
}

// RenewBuilds implements state.Leaser.
func (s *Store) RenewBuilds(ctx context.Context, ownerID string, until time.Time) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `UPDATE builds SET lease_expires=$1 WHERE owner=$2 AND state=$3 RETURNING id`,
		until.UnixNano(), ownerID, string(api.BuildRunning))
	if err != nil {
		return nil, fmt.Errorf("pgstate: renew leases: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("pgstate: renew leases: %w", err)
	}
	return ids, nil
}

// ReleaseBuilds implements state.Leaser.
func (s *Store) ReleaseBuilds(ctx context.Context, ownerID string, ids []int64) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if ids == nil {
			_, err = tx.Exec(ctx, `UPDATE builds SET owner='', owner_url='', lease_expires=0 WHERE owner=$1`, ownerID)
		} else {
			_, err = tx.Exec(ctx, `UPDATE builds SET owner='', owner_url='', lease_expires=0 WHERE owner=$1 AND id = ANY($2)`, ownerID, ids)
		}
		if err != nil {
			return err
		}
		// Delivered at commit, so a woken replica sees the release.
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstate: release leases: %w", err)
	}
	return nil
}

// BuildLease implements state.Leaser.
func (s *Store) BuildLease(ctx context.Context, id int64, now time.Time) (state.Lease, error) {
	var o state.Owner
	var expires int64
	var st string
	err := s.pool.QueryRow(ctx, `SELECT owner, owner_url, lease_expires, state FROM builds WHERE id=$1`, id).Scan(&o.ID, &o.URL, &expires, &st)
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Lease{}, fmt.Errorf("pgstate: build %d: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return state.Lease{}, fmt.Errorf("pgstate: lease of build %d: %w", id, err)
	}
	l := state.Lease{Running: st == string(api.BuildRunning)}
	if l.Running && o.ID != "" && (now.IsZero() || expires >= now.UnixNano()) {
		l.Held, l.Owner = true, o
	}
	return l, nil
}

// OfferBuild implements state.Leaser: one statement records the offer
// and sends the nudge (delivered at its commit, so a woken replica sees
// the offer).
func (s *Store) OfferBuild(ctx context.Context, id int64, by string) error {
	if _, err := s.pool.Exec(ctx, `WITH o AS (UPDATE builds SET offered_by=$1 WHERE id=$2)
		SELECT pg_notify($3, '')`, by, id, notifyChannel); err != nil {
		return fmt.Errorf("pgstate: offer build %d: %w", id, err)
	}
	return nil
}

// ClaimNudges implements state.Leaser with a LISTEN connection of its
// own, reconnected after errors (each reconnection nudges once, since
// notifications may have been missed meanwhile).
func (s *Store) ClaimNudges(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	nudge := func(string) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go s.listenLoop(ctx, notifyChannel, nudge, func() { nudge("") })
	return ch
}

// heldNoticeBuffer is how many held notices wait for a slow reader
// before more are dropped (waiters poll as well).
const heldNoticeBuffer = 256

// HeldNotices implements state.Leaser with a LISTEN connection of its
// own on the channel "tryd_held", whose payloads are build IDs.
func (s *Store) HeldNotices(ctx context.Context) <-chan int64 {
	ch := make(chan int64, heldNoticeBuffer)
	notice := func(payload string) {
		id, err := strconv.ParseInt(payload, 10, 64)
		if err != nil || id <= 0 {
			return // not ours
		}
		select {
		case ch <- id:
		default:
		}
	}
	go s.listenLoop(ctx, heldChannel, notice, func() {})
	return ch
}

// listenLoop delivers the payloads of the notifications on channel until
// ctx ends, reconnecting after errors with backoff (100ms doubling up to
// 5s); reconnected is called each time LISTEN is in effect again
// (notifications may have been missed meanwhile). A run of failures (the database is down)
// is logged when it starts and when it ends, not at every attempt.
func (s *Store) listenLoop(ctx context.Context, channel string, notify func(payload string), reconnected func()) {
	backoff := 100 * time.Millisecond
	log := s.log.WithField("channel", channel)
	var failures int
	var since time.Time
	for ctx.Err() == nil {
		err := s.listen(ctx, channel, notify, func() {
			backoff = 100 * time.Millisecond
			if failures > 0 {
				log.WithField("failures", failures).WithField("for", time.Since(since).Round(time.Millisecond).String()).Warn("pgstate: LISTEN connection restored")
				failures = 0
			}
			reconnected()
		})
		if ctx.Err() != nil {
			return
		}
		if failures == 0 {
			since = time.Now()
			log.WithError(err).Warn("pgstate: LISTEN connection lost; reconnecting (logged again once restored)")
		} else {
			log.WithError(err).Debug("pgstate: LISTEN reconnection failed")
		}
		failures++
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listen(ctx context.Context, channel string, notify func(payload string), connected func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection stays in LISTEN mode: take it out of the pool.
	c := conn.Hijack()
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	connected()
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		notify(n.Payload)
	}
}

// CommitHeld is Commit fenced by ownerID's leases, for a replica whose
// leases may have expired unseen (its renewals failed while the database
// was unreachable): the records of a build (its update, jobs, attempts
// and results) are written only if ownerID is the build's owner, its
// last holder, and the IDs of the builds another replica took are
// returned, their records skipped. Another replica claims (or holds) a
// build only after taking its row FOR UPDATE, which the fence's FOR KEY
// SHARE holds off until the commit ends: so a claimer resuming a build
// from the store never misses a commit of the replica that held it, nor
// sees one after it. (KEY SHARE, not SHARE: renewals and the commit's own build
// updates, FOR NO KEY UPDATE, pass it without waiting, and a renewal
// locking many rows could otherwise deadlock with a fence.) Records of
// other kinds (workers, deleted results) are written in any case.
func (s *Store) CommitHeld(ctx context.Context, ownerID string, b *state.Batch) (foreign []int64, err error) {
	if ownerID == "" {
		return nil, errors.New("pgstate: CommitHeld: empty owner")
	}
	return s.commit(ctx, b, ownerID)
}

// batchBuilds sets ids to the IDs of the builds a batch has records of,
// sorted.
func batchBuilds(b *state.Batch, ids *column[pgInt8]) {
	ids.reset(len(b.Builds) + len(b.Jobs) + len(b.Attempts) + len(b.Results))
	v := ids.v[:0]
	for i := range b.Builds {
		v = append(v, pgInt8(b.Builds[i].ID))
	}
	for i := range b.Jobs {
		v = append(v, pgInt8(b.Jobs[i].BuildID))
	}
	for i := range b.Attempts {
		v = append(v, pgInt8(b.Attempts[i].BuildID))
	}
	for i := range b.Results {
		v = append(v, pgInt8(b.Results[i].BuildID))
	}
	slices.Sort(v)
	ids.v = slices.Compact(v)
}
