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
// then be rebuilt). Use Watch to learn about changes. Text of followed
// records is kept in memory.
func (c *Corpus) Follow(ctx context.Context, f *logsync.Follower) error {
	return f.Run(ctx, mutlog.Position{}, func(pos mutlog.Position, payload []byte) error {
		if err := c.Apply(payload); err != nil {
			return fmt.Errorf("maintner: follow: record at %s: %w", pos, err)
		}
		return nil
	})
}
