package segmap

import (
	"os"
	"syscall"
)

func mapFile(f *os.File, size int64, populate bool) ([]byte, error) {
	flags := syscall.MAP_SHARED
	if populate {
		flags |= syscall.MAP_POPULATE
	}
	return syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, flags)
}

func unmapFile(b []byte) error { return syscall.Munmap(b) }
