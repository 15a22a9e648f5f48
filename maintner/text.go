package maintner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"
)

// Text is a long piece of text of the corpus: an issue or comment body, a
// review, a commit message. The log already holds every byte of it, so
// when the corpus was loaded from (or logs to) a log it can read again,
// Text is only a reference into that log (segment, offset, length) and
// the bytes are read back on demand with Corpus.Text; the operating
// system's page cache, not the process heap, keeps the hot ones. This is
// what makes the corpus several times smaller than the log: without it
// the heap would hold the whole text of the project's history. Text from
// records applied without a position (Apply) is kept in memory.
//
// A follower (Follow) keeps references into its logsync cache the same
// way; a reference also remembers the cache's generation, so that one
// made before the server's history diverged fails to read (ErrText
// wrapping logsync.ErrStale) rather than return other bytes.
//
// The zero Text is the empty string.
type Text struct {
	s   string
	seg int32
	off uint32 // offset in the segment; segments are at most 16 MiB
	n   uint32 // length when in the log; 0 for in-memory text
	gen uint32 // generation of a follower's cache (see Follow); fills padding
}

// Len returns the length of the text in bytes.
func (t Text) Len() int {
	if t.n > 0 {
		return int(t.n)
	}
	return len(t.s)
}

// InMemory reports whether the text is held in memory.
func (t Text) InMemory() bool { return t.n == 0 }

// textMin is the shortest text worth leaving in the log: shorter ones
// cost less in memory than a read.
const textMin = 64

// segmentSource reads bytes of the log a corpus was built from: those
// of t, into p (len(p) == t.n).
type segmentSource interface {
	readAt(t Text, p []byte) error
	close() error
}

// ErrText wraps failures to read text back from the log.
var ErrText = errors.New("maintner: cannot read text from the log")

// Text returns the contents of t, reading it from the log if needed. The
// caller holds RLock (the text of a record is immutable, but the source
// is closed by Close).
func (c *Corpus) Text(t Text) (string, error) {
	if t.n == 0 {
		return t.s, nil
	}
	if c.src == nil {
		return "", fmt.Errorf("%w: no log source", ErrText)
	}
	buf := make([]byte, t.n)
	if err := c.src.readAt(t, buf); err != nil {
		return "", fmt.Errorf("%w: segment %d offset %d: %w", ErrText, t.seg, t.off, err)
	}
	return unsafe.String(&buf[0], len(buf)), nil
}

// MustText returns the contents of t, or "" if it cannot be read (the
// error is logged). For displays that would rather show less than fail.
func (c *Corpus) MustText(t Text) string {
	s, err := c.Text(t)
	if err != nil {
		c.log.Warn(err)
	}
	return s
}

// Close releases the files of the log the corpus reads text from.
func (c *Corpus) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.src == nil {
		return nil
	}
	err := c.src.close()
	c.src = nil
	return err
}

// recordLoc says where the record being applied lies, so that its long
// text fields can become references: the payload's first byte is at
// offset off of segment seg.
type recordLoc struct {
	payload []byte
	seg     int32
	off     int64
	gen     uint32 // see Text.gen
}

// textOf makes a Text of b, a slice of the record being applied: a
// reference into the log when the record's location is known and b is
// long enough, else an in-memory copy.
func (c *Corpus) textOf(b []byte) Text { return textIn(&c.text, c.cur, b) }

// textIn makes a Text of b, a slice of the record at loc (nil when
// unknown): a reference into the log, or a copy in a. a.used counts the
// bytes either way.
func textIn(a *arena, loc *recordLoc, b []byte) Text {
	if len(b) == 0 {
		return Text{}
	}
	if loc == nil || len(b) < textMin {
		return Text{s: a.copy(b)}
	}
	d := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(loc.payload)))
	if d > uintptr(len(loc.payload)) {
		// Not part of the record (cannot happen for decoded fields).
		return Text{s: a.copy(b)}
	}
	off := loc.off + int64(d)
	if off+int64(len(b)) > 1<<32-1 {
		return Text{s: a.copy(b)}
	}
	// Counted like text copied into memory, so that Stats.TextBytes
	// is the same for the same log however the corpus holds it.
	a.used += int64(len(b))
	return Text{seg: loc.seg, off: uint32(off), n: uint32(len(b)), gen: loc.gen}
}

// fileSource reads segment files.
type fileSource struct {
	mu    sync.Mutex
	paths []string
	files []*os.File
}

func (s *fileSource) readAt(t Text, p []byte) error {
	seg, off := int(t.seg), int64(t.off)
	s.mu.Lock()
	if seg < 0 || seg >= len(s.paths) {
		s.mu.Unlock()
		return fmt.Errorf("no segment %d", seg)
	}
	f := s.files[seg]
	if f == nil {
		var err error
		f, err = os.Open(s.paths[seg])
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.files[seg] = f
	}
	s.mu.Unlock()
	_, err := f.ReadAt(p, off)
	return err
}

func (s *fileSource) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i, f := range s.files {
		if f != nil {
			errs = append(errs, f.Close())
			s.files[i] = nil
		}
	}
	return errors.Join(errs...)
}

// SegmentStore is what a corpus needs to read its text back from a log:
// *mutlog.Log implements it.
type SegmentStore interface {
	ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error)
}

// storeSource reads through a SegmentStore.
type storeSource struct{ st SegmentStore }

func (s storeSource) readAt(t Text, p []byte) error {
	rc, err := s.st.ReadSegment(context.Background(), int(t.seg), int64(t.off), int64(len(p)))
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.ReadFull(rc, p)
	return err
}

func (storeSource) close() error { return nil }
