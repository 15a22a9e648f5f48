package maintner

import (
	"context"
	"errors"
	"fmt"

	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// ErrNotEmpty is returned by Follow on a corpus that already holds
// records or reads text from a log: following replays the log from its
// start.
var ErrNotEmpty = errors.New("maintner: follow needs an empty corpus")

// Follow keeps a read-only corpus in step with a maintnerd: it applies
// every record the follower delivers, from the start of the log, and
// then each new record as the server commits it, until ctx ends (it
// returns ctx.Err()), a record does not decode (unless
// Options.FollowSkipsBad), or the server's history diverges from what
// was applied (logsync.ErrDiverged). Use Watch to
// learn about changes. The corpus must be new (ErrNotEmpty otherwise).
//
// Long text stays in the follower's cache, as LoadDir leaves it in the
// segment files: the corpus keeps references (segment number, offset,
// length) and reads them back through a logsync.CacheReader, so a
// follower's heap is that of a loaded corpus, not the size of the
// project's text. The cache must therefore stay in place while the
// corpus is used; Close releases the corpus's reader (the follower
// keeps its own until it is closed).
//
// After logsync.ErrDiverged the corpus must be discarded and a new one
// built by following again (the follower may be reused): the follower
// has dropped the diverging part of its cache, and text the old corpus
// referenced there fails to read (ErrText wrapping logsync.ErrStale)
// instead of returning the new history's bytes. Text before the point
// of divergence stays readable while the new corpus is built.
func (c *Corpus) Follow(ctx context.Context, f *logsync.Follower) error {
	r := f.Reader()
	c.mu.Lock()
	if c.src != nil || c.records > 0 || c.bad > 0 {
		c.mu.Unlock()
		r.Close()
		return ErrNotEmpty
	}
	src := cacheSource{r}
	c.src = src
	c.mu.Unlock()
	return f.Run(ctx, mutlog.Position{}, func(pos mutlog.Position, payload []byte) error {
		// The payload follows its record header; references are to
		// the bytes as delivered, in the generation they were
		// delivered in (read here, on Run's goroutine).
		loc := recordLoc{
			payload: payload,
			seg:     int32(pos.Segment),
			off:     pos.Offset + int64(reclog.HeaderLen(pos.Offset, len(payload))),
			gen:     r.Generation(),
		}
		if err := c.applyAt(payload, &loc, src); err != nil {
			if c.opts.FollowSkipsBad {
				c.log.WithError(err).WithField("pos", pos).Warn("maintner: follow: record skipped")
				return nil
			}
			return fmt.Errorf("maintner: follow: record at %s: %w", pos, err)
		}
		return nil
	})
}

// cacheSource reads text from a logsync follower's cache.
type cacheSource struct{ r *logsync.CacheReader }

func (s cacheSource) readAt(t Text, p []byte) error {
	return s.r.ReadAt(p, t.gen, int(t.seg), int64(t.off))
}

func (s cacheSource) close() error { return s.r.Close() }
