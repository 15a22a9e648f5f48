// Package artifacts stores the coordinator's content-addressed blobs: job
// output archives, uploaded source files and upload manifests, each named
// by the lower-case hex SHA-256 of its contents. Store is the interface
// (a GCS implementation can be added beside Disk); artifacts/storetest is
// the conformance suite every implementation passes.
package artifacts

import (
	"context"
	"errors"
	"io"

	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Errors of a Store.
var (
	// ErrNotFound: no blob with that digest.
	ErrNotFound = errors.New("artifacts: not found")
	// ErrDigestMismatch: the uploaded contents do not hash to the digest.
	ErrDigestMismatch = errors.New("artifacts: content does not match digest")
	// ErrBadDigest: the digest is not 64 lower-case hex digits.
	ErrBadDigest = errors.New("artifacts: malformed digest")
)

// Store holds blobs by SHA-256 digest. Implementations are safe for
// concurrent use; Put of the same digest from several goroutines is fine.
type Store interface {
	// Put stores the contents of r under digest, verifying the hash
	// (ErrDigestMismatch, nothing stored). Putting an existing blob is a
	// no-op that still consumes r.
	Put(ctx context.Context, digest string, r io.Reader) error
	// Open returns the blob and its size; ErrNotFound if absent.
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
	// Stat returns the blob's size; ErrNotFound if absent.
	Stat(ctx context.Context, digest string) (int64, error)
	// Delete removes the blob; deleting an absent blob is not an error.
	Delete(ctx context.Context, digest string) error
}

// ValidDigest reports whether d is a well-formed digest (graph.IsDigest).
// Stores check it before a digest reaches a file name or object key.
func ValidDigest(d string) bool { return graph.IsDigest(d) }
