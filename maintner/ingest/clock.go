package ingest

import "time"

// Clock is the time source of the syncers: reconciliation periods,
// retry backoff and waiting out a GitHub rate limit all go through it,
// so that tests control time without sleeping.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
