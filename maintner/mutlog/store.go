package mutlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
)

// SegmentInfo describes one segment of a log.
type SegmentInfo struct {
	// Number is the segment's position in the log, from 0.
	Number int
	// Size is the segment's length in bytes.
	Size int64
	// SHA224 is the lower-case hex SHA-224 of the segment's Size bytes.
	SHA224 string
	// Sealed reports that the segment is complete and immutable; only
	// the last segment of a log may be unsealed (growing).
	Sealed bool
}

// Store keeps the segments of one log. It is the small interface the Log
// needs from a backend; implementations (DiskStore here, gcsstore.Store)
// must pass storetest.Test.
//
// Reading methods may be called concurrently with each other and with the
// Writer. Segments are numbered from 0 without gaps; at most the last one
// is growing.
type Store interface {
	// Segments lists the segments in order.
	Segments(ctx context.Context) ([]SegmentInfo, error)
	// ReadSegment returns n bytes of segment num from offset off. It
	// fails with an error matching ErrNotFound if the segment does not
	// exist and ErrRange if the range lies beyond its end.
	ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error)
	// OpenWriter claims the store for exclusive writing. A second
	// writer, in this process or another, fails with an error matching
	// ErrLocked.
	OpenWriter(ctx context.Context) (Writer, error)
}

// Writer appends to a Store. Only one exists per store at a time, and its
// methods are called by one goroutine at a time.
type Writer interface {
	// Append adds data at offset off of segment num, creating the
	// segment when off is 0. off must equal the segment's current size
	// and num must be the last segment or the one after a sealed last
	// segment; otherwise Append fails (ErrConflict) without writing.
	// The data is durable when Append returns nil.
	Append(ctx context.Context, num int, off int64, data []byte) error
	// Truncate cuts the growing segment num to size bytes (used to drop
	// a torn tail on open). The cut is durable when it returns nil.
	Truncate(ctx context.Context, num int, size int64) error
	// Seal marks the growing segment num complete; sha224 is the hex
	// SHA-224 of its bytes, which the store may use to name it. Sealed
	// segments never change.
	Seal(ctx context.Context, num int, sha224 string) error
	// Close releases the writer's claim on the store.
	Close() error
}

var (
	// ErrLocked means another writer holds the store.
	ErrLocked = errors.New("mutlog: store is locked by another writer")
	// ErrNotFound means a segment does not exist.
	ErrNotFound = errors.New("mutlog: segment not found")
	// ErrRange means a read lies beyond the end of a segment.
	ErrRange = errors.New("mutlog: read beyond end of segment")
	// ErrConflict means a write did not match the store's state: the
	// store changed behind the writer's back (another writer, or
	// tampering), so the writer must stop.
	ErrConflict = errors.New("mutlog: store changed underneath the writer")
	// ErrCorrupt means stored data is malformed somewhere other than a
	// torn tail; errors of this kind also carry a *reclog.Error naming
	// the segment and offset.
	ErrCorrupt = errors.New("mutlog: corrupt log")
	// ErrTooLarge means a payload cannot fit in one segment.
	ErrTooLarge = errors.New("mutlog: payload too large for a segment")
	// ErrClosed means the Log was closed.
	ErrClosed = errors.New("mutlog: log closed")
)

// segment file names: "0007.<sha224>.mutlog" sealed, "0007.growing.mutlog"
// growing: the layout of x/build's network mutation source cache, used by
// DiskStore, the logsync follower's cache and gcsstore's object names.
var segNameRx = regexp.MustCompile(`^([0-9]{4,9})\.([0-9a-f]{56}|growing)\.mutlog$`)

// SealedName returns the file name of sealed segment num.
func SealedName(num int, sha224 string) string { return fmt.Sprintf("%04d.%s.mutlog", num, sha224) }

// GrowingName returns the file name of growing segment num.
func GrowingName(num int) string { return fmt.Sprintf("%04d.growing.mutlog", num) }

// ParseName parses a segment file name made by SealedName or GrowingName.
// ok is false for any other name.
func ParseName(name string) (num int, sha224 string, sealed, ok bool) {
	m := segNameRx.FindStringSubmatch(name)
	if m == nil {
		return 0, "", false, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, "", false, false
	}
	if m[2] == "growing" {
		return n, "", false, true
	}
	return n, m[2], true, true
}

// checkSegments verifies that segs are numbered from 0 without gaps and
// that only the last may be growing.
func checkSegments(segs []SegmentInfo) error {
	for i, s := range segs {
		if s.Number != i {
			return fmt.Errorf("%w: segment %d missing (found %d)", ErrCorrupt, i, s.Number)
		}
		if !s.Sealed && i != len(segs)-1 {
			return fmt.Errorf("%w: segment %d is growing but is not the last", ErrCorrupt, i)
		}
	}
	return nil
}
