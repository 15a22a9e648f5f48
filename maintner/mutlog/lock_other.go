//go:build !unix

package mutlog

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// lockFile is not implemented off Unix: refuse rather than run without the
// single-writer guarantee.
func lockFile(f *os.File) error {
	return errors.New("mutlog: disk store locking is only implemented on Unix")
}
