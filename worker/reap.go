package worker

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// runVar is set in every command's environment to the worker directory's
// current run ID, so that a restarted worker can find and kill the
// processes a crashed predecessor left behind (Pdeathsig kills a job's
// first process with the worker, but not the processes it started).
const runVar = "TRYD_WORKER_RUN"

// newRun reaps the processes of the previous run of this worker directory
// and starts a new run ID, recorded in <Dir>/run.
func (w *Worker) newRun() error {
	file := filepath.Join(w.opts.Dir, "run")
	if old, err := os.ReadFile(file); err == nil {
		if id := strings.TrimSpace(string(old)); id != "" {
			if n := reapRun(id); n > 0 {
				w.log.WithField("processes", n).Warn("killed processes left by the previous run of this worker")
			}
		}
	}
	b := make([]byte, 16)
	rand.Read(b)
	w.runID = hex.EncodeToString(b)
	if err := os.WriteFile(file, []byte(w.runID+"\n"), 0o644); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
