package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// work is what a target's worker has to do: nudged items (issue or
// change numbers), a target-wide pass, or a reconciliation pass.
// Pending work coalesces: ten nudges for one issue are one sync.
type work struct {
	// all asks for a target-wide incremental pass (what changed since
	// the last pass).
	all bool
	// full asks for the reconciliation pass: everything is listed and
	// compared with the corpus.
	full bool
	// items are issue or change numbers to sync in full.
	items map[int]bool
}

func (w *work) merge(o work) {
	w.all = w.all || o.all
	w.full = w.full || o.full
	if len(o.items) > 0 {
		if w.items == nil {
			w.items = make(map[int]bool, len(o.items))
		}
		maps.Copy(w.items, o.items)
	}
}

func (w *work) empty() bool { return !w.all && !w.full && len(w.items) == 0 }

// maxNumber is the largest issue or change number (maintpb's int32).
const maxNumber = 1<<31 - 1

// checkNumber refuses an issue or change number (item) that op (nudge,
// sync) was given for target and that cannot exist; 0 stands for the
// whole target.
func checkNumber(op, target, item string, n int) error {
	if n < 0 || n > maxNumber {
		return fmt.Errorf("ingest: %s %s: bad %s number %d", op, target, item, n)
	}
	return nil
}

// nudgeWork is the work a nudge for number n asks for: n in full, or with
// n 0 a target-wide pass.
func nudgeWork(n int) work {
	if n == 0 {
		return work{all: true}
	}
	return work{items: map[int]bool{n: true}}
}

// runWorkers runs run for each target in its own goroutine and returns
// when all have returned, with ctx's error.
func runWorkers[T any](ctx context.Context, targets []T, run func(context.Context, T)) error {
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() { run(ctx, t) })
	}
	wg.Wait()
	return ctx.Err()
}

// reconcileAll runs the full pass (do with work{full: true}) over each
// target in turn; one target's failure does not stop the others.
func reconcileAll[T any](ctx context.Context, targets []T, do func(context.Context, T, work) error) error {
	var errs []error
	for _, t := range targets {
		if err := do(ctx, t, work{full: true}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// queue holds a target's pending work and wakes its worker.
type queue struct {
	mu      sync.Mutex
	pending work
	wake    chan struct{}
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

func (q *queue) add(w work) {
	q.mu.Lock()
	q.pending.merge(w)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) take() work {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.pending
	q.pending = work{}
	return w
}

// errRetryAfter is returned by a sync that should not be retried before
// a given time (a GitHub rate limit); the worker waits for it rather
// than backing off.
type errRetryAfter struct {
	until time.Time
	err   error
}

func (e *errRetryAfter) Error() string { return e.err.Error() }
func (e *errRetryAfter) Unwrap() error { return e.err }

// Backoff bounds of a worker after a failed sync.
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
)

// runWorker serves one target until ctx ends: it starts with a
// reconciliation pass, then runs whatever is nudged, and queues a new
// reconciliation every period. Failed work is put back and retried after
// a backoff (doubling from 1s to 5min), or at the time an errRetryAfter
// names; the worker never spins.
//
// A worker woken by a nudge while idle first waits coalesce, so that the
// burst of events one action causes (Gerrit sends ref-updated, then
// comment-added, for one vote) is one sync rather than two.
func runWorker(ctx context.Context, clock Clock, period, coalesce time.Duration, q *queue, do func(context.Context, work) error, log logrus.FieldLogger) {
	q.add(work{full: true})
	next := clock.Now().Add(period)
	backoff := minBackoff
	for {
		q.mu.Lock()
		idle := q.pending.empty()
		q.mu.Unlock()
		if idle {
			wait := next.Sub(clock.Now())
			if wait <= 0 {
				q.add(work{full: true})
				next = clock.Now().Add(period)
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
				if coalesce > 0 {
					select {
					case <-ctx.Done():
						return
					case <-clock.After(coalesce):
					}
				}
			case <-clock.After(wait):
			}
			continue
		}
		w := q.take()
		err := do(ctx, w)
		if err == nil {
			backoff = minBackoff
			if w.full {
				next = clock.Now().Add(period)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		q.add(w)
		var ra *errRetryAfter
		var d time.Duration
		if errors.As(err, &ra) {
			d = ra.until.Sub(clock.Now())
			log.WithError(err).WithField("until", ra.until.UTC().Format(time.RFC3339)).Warn("ingest: rate limited; waiting for the reset")
		} else {
			d = backoff
			backoff = min(2*backoff, maxBackoff)
			log.WithError(err).WithField("retry_in", d.String()).Warn("ingest: sync failed")
		}
		if d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-clock.After(d):
			}
		}
	}
}
