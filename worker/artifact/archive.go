// Package artifact moves job outputs between directories and the
// coordinator's content-addressed artifact store.
//
// Format: an artifact is an output archive (see coordinator/graph: an
// uncompressed POSIX tar with deterministic entries, so that equal
// directory trees give equal digests), identified by the lowercase hex
// SHA-256 of its bytes. Packing and unpacking are graph's PackOutputs and
// ReadOutputs, which refuse anything that would reach outside the
// directory; a hostile job therefore cannot write outside its directories
// through its outputs.
package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/tryd-ci/tryd/coordinator/graph"
)

// The kinds of refused outputs and archive entries (see
// graph.ErrUnsafeOutput, which they wrap). Callers report them as a
// failure of the job, not of the worker.
var (
	// ErrEscape marks an output or archive entry that would reach outside
	// its directory.
	ErrEscape = graph.ErrOutputEscapes
	// ErrUnsupported marks a file type that outputs may not contain.
	ErrUnsupported = graph.ErrOutputUnsupported
	// ErrTooLarge marks an output or archive over its Limits.
	ErrTooLarge = graph.ErrOutputTooLarge
)

// Limits bound what Pack and Unpack accept. Zero fields take the defaults.
type Limits struct {
	// MaxBytes bounds the total size of file contents (default 4 GiB).
	MaxBytes int64
	// MaxFiles bounds the number of entries (default 1,000,000).
	MaxFiles int
}

func (l Limits) graph() graph.OutputLimits {
	return graph.OutputLimits{MaxBytes: l.MaxBytes, MaxEntries: l.MaxFiles}
}

// EmptySize is the size of the archive of an empty directory (a tar
// end-of-archive marker: two zero blocks).
const EmptySize = 1024

// EmptyDigest is the digest of the archive of an empty directory, which
// Pack produces for a job without outputs.
var EmptyDigest = func() string {
	h := sha256.Sum256(make([]byte, EmptySize))
	return hex.EncodeToString(h[:])
}()

// ValidDigest reports whether s is a lowercase hex SHA-256.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Packed describes an archive written by Pack.
type Packed struct {
	// Digest is the hex SHA-256 of the archive bytes.
	Digest string
	// Size is the archive's length in bytes.
	Size int64
	// Files is the number of entries.
	Files int
}

// Pack writes the tree under dir to w as a deterministic tar archive and
// returns its digest. It fails with ErrEscape, ErrUnsupported or
// ErrTooLarge (wrapped, naming the path) on outputs that may not leave the
// worker.
func Pack(dir string, w io.Writer, lim Limits) (Packed, error) {
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	n, err := graph.PackOutputs(cw, dir, lim.graph())
	if err != nil {
		return Packed{}, fmt.Errorf("artifact: %w", err)
	}
	return Packed{Digest: hex.EncodeToString(h.Sum(nil)), Size: cw.n, Files: n}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Unpack extracts the tar archive r into dir, which must exist, as
// graph.ReadOutputs does: every write goes through an os.Root on dir, and
// entries that would escape fail the whole unpack with ErrEscape; what was
// written so far stays for the caller to remove with the job directory.
func Unpack(r io.Reader, dir string, lim Limits) error {
	if err := graph.ReadOutputs(r, dir, lim.graph()); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	return nil
}
