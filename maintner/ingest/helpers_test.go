package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// newCorpus returns a leader corpus over a disk log in a temporary
// directory, and the log's directory.
func newCorpus(t *testing.T) (*maintner.Corpus, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := mutlog.NewDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := mutlog.Open(context.Background(), mutlog.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c, err := maintner.New(maintner.Options{Appender: l})
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// reload builds a second corpus from the log in dir, as a follower
// would, to check that what was logged (not only what was applied)
// carries the state.
func reload(t *testing.T, dir string) *maintner.Corpus {
	t.Helper()
	c, err := maintner.New(maintner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = mutlog.ForEachDir(dir, mutlog.DirOptions{}, func(_ mutlog.Position, payload []byte) error {
		return c.Apply(payload)
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func records(c *maintner.Corpus) int64 { return c.Stats().Records }

// fakeClock is a Clock whose time moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	changed chan struct{}
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t, changed: make(chan struct{})} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Set moves the clock to t and fires the timers due.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// waitFor waits (in real time, bounded) until some timer whose delay
// from now passes pred is set, and returns its deadline.
func (c *fakeClock) waitFor(t *testing.T, pred func(time.Duration) bool) time.Time {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		for _, w := range c.waiters {
			if pred(w.at.Sub(c.now)) {
				c.mu.Unlock()
				return w.at
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("no timer as expected was set")
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
