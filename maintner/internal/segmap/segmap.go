// Package segmap maps sealed mutation-log segment files into memory,
// read-only, where the system allows it. Sealed segments never change, so
// a mapping of one stays valid (and holds its bytes even if the file is
// renamed or removed) until it is unmapped. Both the corpus loader
// (maintner.LoadFiles, which maps a segment while it is applied) and the
// logsync follower's cache reader (which keeps sealed segments mapped for
// text reads) use it.
package segmap

import (
	"errors"
	"os"
)

// ErrUnsupported is returned by Map where files cannot be mapped; callers
// then read the file instead.
var ErrUnsupported = errors.New("segmap: segments are not mapped on this system")

// MaxSize is the largest file Map maps: segments are at most 16 MiB,
// and a larger file is not one a store wrote.
const MaxSize = 1 << 30

// Map maps size bytes of f read-only and shared. With populate, every
// page is mapped at once (the file is usually in the page cache, and
// the caller reads all of it): much cheaper than faulting each page in
// on first touch. Without it, pages are faulted in as they are read,
// which suits a mapping kept for occasional random reads. The mapping
// outlives f; release it with Unmap.
func Map(f *os.File, size int64, populate bool) ([]byte, error) {
	if size <= 0 || size > MaxSize {
		return nil, errors.New("segmap: size out of range")
	}
	return mapFile(f, size, populate)
}

// Unmap releases a mapping made by Map. The bytes must not be used
// afterwards.
func Unmap(b []byte) error { return unmapFile(b) }
