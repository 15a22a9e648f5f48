package mutlog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tryd-ci/tryd/maintner/reclog"
)

// DirOptions adjusts ForEachDir.
type DirOptions struct {
	// From skips records before this position.
	From Position
	// VerifySHA224 checks each sealed segment's bytes against the
	// SHA-224 in its name before delivering any of its records (costs a
	// hash of every byte; the logsync follower has already verified what
	// it stored).
	VerifySHA224 bool
}

// ForEachDir calls fn for every record in the segment files of dir (the
// layout of DiskStore and of the logsync follower's cache), in order. A
// growing last segment that ends inside a record (a writer mid-append, or
// a torn tail not yet cut) is read up to its last complete record;
// malformed data anywhere else is an error naming the segment and offset.
// Payloads are only valid while fn runs. It reads each segment whole into
// one reused buffer, so a gigabyte of log is scanned in about a second.
func ForEachDir(dir string, opts DirOptions, fn Func) error {
	segs, err := listDir(dir)
	if err != nil {
		return fmt.Errorf("mutlog: read %s: %w", dir, err)
	}
	infos := make([]SegmentInfo, len(segs))
	for i, s := range segs {
		infos[i] = s.SegmentInfo
	}
	if err := checkSegments(infos); err != nil {
		return fmt.Errorf("mutlog: read %s: %w", dir, err)
	}
	var buf []byte
	for _, s := range segs {
		if s.Number < opts.From.Segment {
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return fmt.Errorf("mutlog: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("mutlog: %w", err)
		}
		if int64(cap(buf)) < fi.Size() {
			buf = make([]byte, fi.Size())
		}
		data := buf[:fi.Size()]
		_, err = io.ReadFull(f, data)
		f.Close()
		if err != nil {
			return fmt.Errorf("mutlog: read %s: %w", s.path, err)
		}
		if s.Sealed && opts.VerifySHA224 {
			sum := sha256.Sum224(data)
			if got := hex.EncodeToString(sum[:]); got != s.SHA224 {
				return fmt.Errorf("%w: %s: bytes hash to %s", ErrCorrupt, s.path, got)
			}
		}
		err = scanFrom(s.Number, data, opts.From, fn)
		if !s.Sealed && errors.Is(err, reclog.ErrTruncated) {
			// The input ended inside the last record: stop before it.
			return nil
		}
		if err != nil {
			return fmt.Errorf("mutlog: %s: %w", s.path, err)
		}
	}
	return nil
}
