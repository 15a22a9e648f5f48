//go:build !linux

package maintner

import (
	"errors"
	"os"
)

var errNoMmap = errors.New("maintner: segments are not mapped on this system")

// mapSegment is Linux-only (see mmap_linux.go); elsewhere LoadFiles
// reads segments.
func mapSegment(*os.File, int64) ([]byte, error) { return nil, errNoMmap }

func unmapSegment([]byte) error { return nil }
