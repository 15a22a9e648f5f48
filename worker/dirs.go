package worker

import (
	"path/filepath"
	"strconv"
	"syscall"
)

// Directory checks on the path from one job to the next. A trivial job
// costs about a millisecond, so the few checks that keep job directories
// clean between jobs are made with bare system calls: no *os.File (with
// its poller registration and finalizer) per directory looked at.

// dirBuf is the size of the buffer getdents fills.
const dirBuf = 4096

// dirNames returns the names in directory p (without . and ..), refusing
// a symlink in place of p. ok is false if p cannot be read as a
// directory.
func dirNames(p string) (names []string, ok bool) {
	fd, err := openDir(p)
	if err != nil {
		return nil, false
	}
	defer syscall.Close(fd)
	var buf [dirBuf]byte
	for {
		n, err := syscall.ReadDirent(fd, buf[:])
		if err != nil {
			return nil, false
		}
		if n <= 0 {
			return names, true
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
}

// emptyDir reports whether p is a readable, empty directory (not a
// symlink to one).
func emptyDir(p string) bool {
	fd, err := openDir(p)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var buf [dirBuf]byte
	for {
		n, err := syscall.ReadDirent(fd, buf[:])
		if err != nil {
			return false
		}
		if n <= 0 {
			return true
		}
		if _, count, _ := syscall.ParseDirent(buf[:n], 1, nil); count > 0 {
			return false
		}
	}
}

func openDir(p string) (int, error) {
	for {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// jobDirClean reports whether job directory d is as cleanJobDir leaves
// it: exactly out, tmp and deps, real directories, out and tmp empty,
// deps holding only empty directories named by a kept dependency index.
// Any doubt answers false (and cleanJobDir then looks closer).
func jobDirClean(d string) bool {
	names, ok := dirNames(d)
	if !ok || len(names) != len(jobSubdirs) {
		return false
	}
	for _, n := range names {
		p := filepath.Join(d, n)
		switch n {
		case "out", "tmp":
			if !emptyDir(p) {
				return false
			}
		case "deps":
			deps, ok := dirNames(p)
			if !ok {
				return false
			}
			for _, e := range deps {
				if i, err := strconv.Atoi(e); err != nil || i < 0 || i >= keptDepDirs || strconv.Itoa(i) != e || !emptyDir(filepath.Join(p, e)) {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}
