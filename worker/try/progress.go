package try

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// progress folds a build's events into per-job states and draws them:
// on a terminal as one line redrawn in place, otherwise as plain lines
// (every job's end for small builds, failures and periodic totals for
// large ones).
type progress struct {
	out      io.Writer
	terminal bool

	mu       sync.Mutex
	total    int
	names    map[string]string // job ID → name
	state    map[string]api.JobState
	epoch    string
	lastLine string
	drawn    bool
}

// verboseJobs is the build size up to which plain output has a line per
// finished job.
const verboseJobs = 100

func newProgress(out io.Writer, terminal bool, total int) *progress {
	return &progress{out: out, terminal: terminal, total: total, names: map[string]string{}, state: map[string]api.JobState{}}
}

// event records one event; it is the callback of api.Client.Wait.
func (p *progress) event(ev api.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.JobName != "" {
		p.names[ev.JobID] = ev.JobName
	}
	var st api.JobState
	switch ev.Type {
	case api.EventHello:
		if ev.Epoch != p.epoch {
			// A new epoch replays the build from the start (as
			// api.Client.Wait resumes).
			clear(p.state)
			p.epoch = ev.Epoch
		}
		return
	case api.EventJobQueued, api.EventJobRequeued:
		st = api.JobQueued
	case api.EventJobStarted:
		st = api.JobRunning
	case api.EventJobCached:
		st = api.JobCached
	case api.EventJobSkipped:
		st = api.JobSkipped
	case api.EventJobFinished:
		st = ev.State
	case api.EventJobsAdded:
		p.total += ev.Count
		return
	default:
		return
	}
	prev := p.state[ev.JobID]
	p.state[ev.JobID] = st
	if !p.terminal && st.Finished() && !prev.Finished() {
		name := p.names[ev.JobID]
		if name == "" {
			name = ev.JobID
		}
		switch {
		case st == api.JobFailed:
			why := ev.Error
			if why == "" && ev.ExitCode != nil {
				why = fmt.Sprintf("exit status %d", *ev.ExitCode)
			}
			fmt.Fprintf(p.out, "FAIL  %s: %s\n", name, why)
		case p.total <= verboseJobs:
			fmt.Fprintf(p.out, "%-5s %s\n", label(st), name)
		}
	}
}

func label(s api.JobState) string {
	switch s {
	case api.JobSucceeded:
		return "ok"
	case api.JobCached:
		return "cache"
	case api.JobSkipped:
		return "skip"
	case api.JobCancelled:
		return "cancel"
	}
	return string(s)
}

// line formats the totals.
func (p *progress) line() string {
	var queued, running, cached, done, failed, skipped, cancelled int
	for _, s := range p.state {
		switch s {
		case api.JobQueued, api.JobWaiting:
			queued++
		case api.JobRunning:
			running++
		case api.JobCached:
			cached++
		case api.JobSucceeded:
			done++
		case api.JobFailed:
			failed++
		case api.JobSkipped:
			skipped++
		case api.JobCancelled:
			cancelled++
		}
	}
	total := max(p.total, len(p.state))
	queued += total - len(p.state) // not yet announced
	finished := cached + done + failed + skipped + cancelled
	s := fmt.Sprintf("%d/%d  queued %d  running %d  cached %d  done %d  failed %d", finished, total, queued, running, cached, done, failed)
	if skipped > 0 {
		s += fmt.Sprintf("  skipped %d", skipped)
	}
	if cancelled > 0 {
		s += fmt.Sprintf("  cancelled %d", cancelled)
	}
	if p.terminal {
		const width = 24
		fill := 0
		if total > 0 {
			fill = finished * width / total
		}
		s = "[" + strings.Repeat("=", fill) + strings.Repeat(" ", width-fill) + "] " + s
	}
	return s
}

// show draws the progress if it changed (or always, with force).
func (p *progress) show(force bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.line()
	if l == p.lastLine && !force {
		return
	}
	p.lastLine = l
	if p.terminal {
		fmt.Fprintf(p.out, "\r\x1b[K%s", l)
		p.drawn = true
		return
	}
	if p.total > verboseJobs || force {
		fmt.Fprintln(p.out, l)
	}
}

// final draws the last line from the build's own counts and ends it.
func (p *progress) final(b *api.Build) {
	p.mu.Lock()
	for _, j := range b.Jobs {
		p.state[j.ID] = j.State
		p.names[j.ID] = j.Name
	}
	p.total = len(b.Jobs)
	p.mu.Unlock()
	p.show(true)
	if p.terminal {
		fmt.Fprintln(p.out)
	}
}
