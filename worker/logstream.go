package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// logStream is the io.Writer a job's commands write to. It keeps at most
// max bytes (then appends a truncation marker once and drops the rest)
// and sends what it holds to the coordinator in chunks: when a chunk is
// full, or interval after the first unsent byte, so that logs appear live
// without one request per write.
type logStream struct {
	send     func(ctx context.Context, offset int64, chunk []byte) (int64, error)
	max      int64
	chunk    int
	interval time.Duration
	// gone is called once when the coordinator answers that the attempt
	// is no longer current (409): the job should stop.
	gone func()
	// retryWait is the first wait between Close's sends of what is
	// left (then twice it, ... up to closeMaxWait).
	retryWait time.Duration

	mu        sync.Mutex
	buf       []byte
	kept      int64 // bytes accepted into the log, marker included
	sent      int64 // offset of the first byte of buf in the log
	truncated bool
	closed    bool

	wake    chan struct{}
	done    chan struct{}
	started bool // the sending goroutine runs (from the first write on)
}

// truncationMarker ends a log that reached its limit.
func truncationMarker(limit int64) string {
	return fmt.Sprintf("\n[tryd: log truncated: it reached the limit of %d bytes; later output was dropped]\n", limit)
}

func newLogStream(send func(context.Context, int64, []byte) (int64, error), max int64, chunk int, interval time.Duration, gone func()) *logStream {
	if max <= 0 {
		max = 8 << 20
	}
	// The sending goroutine starts with the first write: most trivial
	// jobs write nothing, and a goroutine per job is not free.
	return &logStream{send: send, max: max, chunk: chunk, interval: interval, gone: gone, retryWait: 200 * time.Millisecond, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Write accepts p (reporting it all written even when dropped, so that a
// command is never failed by its own log volume).
func (l *logStream) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.truncated || l.closed {
		return len(p), nil
	}
	marker := truncationMarker(l.max)
	room := l.max - l.kept - int64(len(marker))
	if room < 0 {
		room = 0
	}
	wasEmpty := len(l.buf) == 0
	if !l.started {
		l.started = true
		go l.loop()
	}
	if int64(len(p)) > room {
		l.buf = append(l.buf, p[:room]...)
		l.buf = append(l.buf, marker...)
		l.kept += room + int64(len(marker))
		l.truncated = true
	} else {
		l.buf = append(l.buf, p...)
		l.kept += int64(len(p))
	}
	if wasEmpty || len(l.buf) >= l.chunk || l.truncated {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Note appends a line from the worker itself (not from the job).
func (l *logStream) Note(format string, args ...any) {
	fmt.Fprintf(l, "[tryd: "+format+"]\n", args...)
}

// Truncated reports whether the log hit its limit.
func (l *logStream) Truncated() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.truncated
}

func (l *logStream) loop() {
	defer close(l.done)
	for range l.wake {
		l.mu.Lock()
		full, closed := len(l.buf) >= l.chunk || l.truncated, l.closed
		l.mu.Unlock()
		if !full && !closed {
			// Gather more output for a moment unless a chunk fills.
			t := time.NewTimer(l.interval)
			select {
			case <-t.C:
			case <-l.wake:
				t.Stop()
			}
		}
		if empty, _ := l.flush(context.Background()); empty && l.isClosed() {
			return
		}
	}
}

func (l *logStream) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// flush sends what is buffered, in chunks; it reports whether the buffer
// is empty afterwards, and if not, why the send failed. Failed sends
// keep the data for the next flush.
func (l *logStream) flush(ctx context.Context) (bool, error) {
	for {
		l.mu.Lock()
		if len(l.buf) == 0 {
			l.mu.Unlock()
			return true, nil
		}
		n := min(len(l.buf), l.chunk)
		chunk := append([]byte(nil), l.buf[:n]...)
		off := l.sent
		l.mu.Unlock()

		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		size, err := l.send(ctx, off, chunk)
		cancel()
		l.mu.Lock()
		switch {
		case err == nil && size >= off+int64(n):
			l.buf = l.buf[n:]
			l.sent = off + int64(n)
			l.mu.Unlock()
		case errors.Is(err, api.ErrConflict):
			// The attempt is gone; drop the log and stop the job.
			l.buf = nil
			l.truncated = true
			l.mu.Unlock()
			if l.gone != nil {
				l.gone()
			}
			return true, nil
		default:
			l.mu.Unlock()
			if err == nil {
				err = fmt.Errorf("log: the coordinator holds %d bytes, %d sent", size, off+int64(n))
			}
			return false, err
		}
	}
}

// Close stops the stream after sending what is left, for at most timeout
// within ctx: retrying a few times (closeTries) while the coordinator is
// unreachable, and until timeout while it answers "again later" (503).
// That is the answer of a coordinator replica this worker failed over
// to, before the worker's registration there (see coordinator/api
// PROTOCOL.md, "Failover between replicas"), which takes a poll's
// backoff: the end of a job's log, sent before its result, must wait
// for it rather than be dropped. A stream that holds nothing to send
// (most trivial jobs write nothing) closes without setting up a
// deadline.
func (l *logStream) Close(ctx context.Context, timeout time.Duration) {
	l.mu.Lock()
	already, started := l.closed, l.started
	l.closed = true
	l.mu.Unlock()
	if already {
		return
	}
	close(l.wake)
	if started {
		<-l.done
	}
	l.mu.Lock()
	empty := len(l.buf) == 0
	l.mu.Unlock()
	if empty {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := l.retryWait
	for i := 1; ; i++ {
		empty, err := l.flush(ctx)
		if empty || i >= closeTries && !errors.Is(err, api.ErrUnavailable) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, closeMaxWait)
	}
}

// closeTries is how many times Close sends what is left while the
// coordinator is unreachable; closeMaxWait bounds its waits between
// sends.
const (
	closeTries   = 6
	closeMaxWait = time.Second
)
