package maintner

import (
	"context"
	"fmt"

	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// Follow keeps a read-only corpus in step with a maintnerd: it applies
// every record the follower delivers, from the start of the log, and
// then each new record as the server commits it, until ctx ends (it
// returns ctx.Err()), a record does not decode, or the server's history
// diverges from what was applied (logsync.ErrDiverged: the corpus must
// then be rebuilt). Use Watch to learn about changes.
//
// Text of followed records is kept in memory, unlike LoadFiles and
// LoadLog, which leave long text in the log. The follower does hold
// every record in its cache directory, but it offers no way to read the
// cache back (that would be a logsync API: a SegmentStore over the
// cache), its growing segment is renamed when sealed, and a diverged
// server makes it rewrite the cache under any references. Until the
// follower exposes a stable reader, references into its cache could
// read wrong bytes, so a follower pays memory for the text instead. A
// program that wants a small heap can sync first (Follower.Sync), then
// LoadDir the cache directory and Follow only from there on.
func (c *Corpus) Follow(ctx context.Context, f *logsync.Follower) error {
	return f.Run(ctx, mutlog.Position{}, func(pos mutlog.Position, payload []byte) error {
		if err := c.Apply(payload); err != nil {
			return fmt.Errorf("maintner: follow: record at %s: %w", pos, err)
		}
		return nil
	})
}
