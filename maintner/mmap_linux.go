package maintner

import (
	"os"
	"syscall"
)

// mapSegment maps size bytes of f read-only. MAP_POPULATE maps every
// page at once (the file is usually in the page cache): much cheaper
// than faulting each page in on first touch.
func mapSegment(f *os.File, size int64) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
}

func unmapSegment(b []byte) error { return syscall.Munmap(b) }
