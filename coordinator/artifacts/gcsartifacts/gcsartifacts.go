// Package gcsartifacts implements the coordinator's artifacts.Store in a
// Google Cloud Storage bucket (cloud.google.com/go/storage), so that every
// coordinator replica and every worker sees the same blobs.
//
// Layout: one object per blob, named Prefix + digest (lower-case hex
// SHA-256). Objects are immutable: Put writes with a does-not-exist
// precondition, so concurrent Puts of one digest leave one object and
// never rewrite it. Put hashes the stream while uploading and aborts the
// upload (the object never appears) when the contents do not match the
// digest. Eviction is left to the bucket's lifecycle rules (e.g. delete
// after 30 days), not to the coordinator.
//
// With SignedURLs, SignedURL returns a V4 signed GET URL for a blob, which
// the coordinator hands to workers (HTTP 307 from GET /api/artifacts/…)
// so that outputs travel from GCS to workers directly instead of through
// the coordinator.
//
// Stat remembers the blobs it found for StatTTL: a coordinator checks the
// output of every result it accepts, and with identical outputs (most
// jobs' outputs are) one request per result was the largest part of a
// busy coordinator's CPU and of GCS's load. Objects are immutable and
// leave the bucket only through this Store's Delete (which forgets them)
// or lifecycle rules that delete objects days old, so an answer a few
// seconds old is as good as a fresh one.
package gcsartifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/tryd-ci/tryd/coordinator/artifacts"
)

// Options configure a Store.
type Options struct {
	// Client is the GCS client (required); the caller closes it.
	Client *storage.Client
	// Bucket holds the blobs (required; it must exist).
	Bucket string
	// Prefix is prepended to object names; empty or ending in "/".
	Prefix string
	// SignedURLs enables SignedURL. Signing uses the client's
	// credentials (a service account key, or the IAM signBlob API for
	// workload identity) unless Sign is set.
	SignedURLs bool
	// Sign, if set, configures signing explicitly (GoogleAccessID and
	// PrivateKey or SignBytes, Hostname for an emulator); Method,
	// Expires and Scheme are filled in by SignedURL.
	Sign *storage.SignedURLOptions
	// URLExpiry is how long a signed URL stays valid (default 15m).
	URLExpiry time.Duration
	// StatTTL is how long Stat answers for a blob it found without
	// asking GCS again (default 10s; negative: always ask). It must be
	// far shorter than any lifecycle rule's age, and blobs deleted
	// other than through this Store may be reported present for up to
	// this long.
	StatTTL time.Duration
	// Now is the clock for URL expiry and StatTTL; nil means time.Now.
	Now func() time.Time
}

// Store is an artifacts.Store in a GCS bucket.
type Store struct {
	opts   Options
	bucket *storage.BucketHandle

	mu sync.Mutex
	// found holds blobs Stat or Put saw in the bucket: their size and
	// when. Expired entries are swept when it doubles in size.
	found     map[string]foundBlob
	sweepSize int
}

type foundBlob struct {
	size int64
	at   time.Time
}

// minSweep is the size of found below which it is not swept.
const minSweep = 1024

var _ artifacts.Store = (*Store)(nil)

// New returns a store on an existing bucket. It does not contact GCS.
func New(opts Options) (*Store, error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("gcsartifacts: Options.Client is nil")
	case opts.Bucket == "":
		return nil, errors.New("gcsartifacts: Options.Bucket is empty")
	case opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/"):
		return nil, fmt.Errorf("gcsartifacts: Options.Prefix %q must end in /", opts.Prefix)
	case opts.URLExpiry < 0:
		return nil, errors.New("gcsartifacts: Options.URLExpiry is negative")
	}
	if opts.URLExpiry == 0 {
		opts.URLExpiry = 15 * time.Minute
	}
	if opts.StatTTL == 0 {
		opts.StatTTL = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts, bucket: opts.Client.Bucket(opts.Bucket), found: map[string]foundBlob{}, sweepSize: minSweep}, nil
}

// remembered returns the size of a blob found less than StatTTL ago.
func (s *Store) remembered(digest string) (int64, bool) {
	if s.opts.StatTTL < 0 {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.found[digest]
	if !ok || s.opts.Now().Sub(f.at) >= s.opts.StatTTL {
		return 0, false
	}
	return f.size, true
}

// remember records that the bucket holds a blob.
func (s *Store) remember(digest string, size int64) {
	if s.opts.StatTTL < 0 {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.found[digest] = foundBlob{size: size, at: now}
	if len(s.found) < s.sweepSize {
		return
	}
	for d, f := range s.found {
		if now.Sub(f.at) >= s.opts.StatTTL {
			delete(s.found, d)
		}
	}
	s.sweepSize = max(minSweep, 2*len(s.found))
}

// forget drops a blob from what Stat remembers.
func (s *Store) forget(digest string) {
	s.mu.Lock()
	delete(s.found, digest)
	s.mu.Unlock()
}

func (s *Store) object(digest string) (*storage.ObjectHandle, error) {
	if !artifacts.ValidDigest(digest) {
		return nil, fmt.Errorf("gcsartifacts: %q: %w", digest, artifacts.ErrBadDigest)
	}
	return s.bucket.Object(s.opts.Prefix + digest), nil
}

// hashReader hashes what it reads and, at EOF, fails unless the contents
// matched the digest, so that the upload it feeds is aborted.
type hashReader struct {
	r    io.Reader
	h    hash.Hash
	want string
}

var errMismatch = errors.New("content does not match digest")

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(h.h.Sum(nil)) != h.want {
		return n, errMismatch
	}
	return n, err
}

// Put implements artifacts.Store.
func (s *Store) Put(ctx context.Context, digest string, r io.Reader) error {
	obj, err := s.object(digest)
	if err != nil {
		return err
	}
	// Asked of GCS, not remembered: a blob deleted behind this Store's
	// back is uploaded again.
	if size, err := s.attrs(ctx, obj, digest); err == nil {
		s.remember(digest, size)
		// Already there; still verify and consume what the caller sent.
		hr := &hashReader{r: r, h: sha256.New(), want: digest}
		if _, err := io.Copy(io.Discard, hr); err != nil {
			if errors.Is(err, errMismatch) {
				return fmt.Errorf("gcsartifacts: put %s: %w", digest, artifacts.ErrDigestMismatch)
			}
			return fmt.Errorf("gcsartifacts: put %s: read: %w", digest, err)
		}
		return nil
	}
	// Cancelling the context before Close aborts the upload: the object
	// is created only when the writer closes cleanly.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(wctx)
	w.ContentType = "application/octet-stream"
	// Blobs are immutable: let caches keep them.
	w.CacheControl = "private, max-age=31536000, immutable"
	hr := &hashReader{r: r, h: sha256.New(), want: digest}
	// The writer allocates a whole chunk (16 MiB by default) for every
	// upload, however small, and most blobs (logs, manifests, outputs of
	// tests) are small: for a busy coordinator those buffers were most
	// of what it allocated, and so of its GC work. A blob that fits in
	// the smallest chunk goes in one request from a chunk of that size,
	// which, unlike ChunkSize 0, the writer can still retry.
	head, err := io.ReadAll(io.LimitReader(hr, googleapi.MinUploadChunkSize+1))
	if err == nil && len(head) <= googleapi.MinUploadChunkSize {
		w.ChunkSize = googleapi.MinUploadChunkSize
	}
	if err == nil {
		_, err = io.Copy(w, io.MultiReader(bytes.NewReader(head), hr))
	}
	if err != nil {
		cancel()
		w.Close()
		if errors.Is(err, errMismatch) {
			return fmt.Errorf("gcsartifacts: put %s: %w", digest, artifacts.ErrDigestMismatch)
		}
		return fmt.Errorf("gcsartifacts: put %s: %w", digest, err)
	}
	if err := w.Close(); err != nil {
		if isPrecondition(err) {
			return nil // another Put of the same blob won
		}
		return fmt.Errorf("gcsartifacts: put %s: %w", digest, err)
	}
	s.remember(digest, w.Attrs().Size)
	return nil
}

func isPrecondition(err error) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed
}

// Open implements artifacts.Store.
func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	obj, err := s.object(digest)
	if err != nil {
		return nil, 0, err
	}
	r, err := obj.NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, 0, fmt.Errorf("gcsartifacts: open %s: %w", digest, artifacts.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("gcsartifacts: open %s: %w", digest, err)
	}
	return r, r.Attrs.Size, nil
}

// Stat implements artifacts.Store.
func (s *Store) Stat(ctx context.Context, digest string) (int64, error) {
	obj, err := s.object(digest)
	if err != nil {
		return 0, err
	}
	if size, ok := s.remembered(digest); ok {
		return size, nil
	}
	size, err := s.attrs(ctx, obj, digest)
	if err != nil {
		return 0, err
	}
	s.remember(digest, size)
	return size, nil
}

// attrs asks GCS for a blob's size.
func (s *Store) attrs(ctx context.Context, obj *storage.ObjectHandle, digest string) (int64, error) {
	attrs, err := obj.Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return 0, fmt.Errorf("gcsartifacts: stat %s: %w", digest, artifacts.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("gcsartifacts: stat %s: %w", digest, err)
	}
	return attrs.Size, nil
}

// Delete implements artifacts.Store.
func (s *Store) Delete(ctx context.Context, digest string) error {
	obj, err := s.object(digest)
	if err != nil {
		return err
	}
	err = obj.Delete(ctx)
	s.forget(digest)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("gcsartifacts: delete %s: %w", digest, err)
	}
	return nil
}

// ErrNoSigning is returned by SignedURL when Options.SignedURLs is off.
var ErrNoSigning = errors.New("gcsartifacts: signed URLs are not enabled")

// SignedURL returns a URL that GETs the blob without other credentials
// until Options.URLExpiry from now. It does not check that the blob
// exists.
func (s *Store) SignedURL(ctx context.Context, digest string) (string, error) {
	if !s.opts.SignedURLs {
		return "", ErrNoSigning
	}
	if !artifacts.ValidDigest(digest) {
		return "", fmt.Errorf("gcsartifacts: %q: %w", digest, artifacts.ErrBadDigest)
	}
	var o storage.SignedURLOptions
	if s.opts.Sign != nil {
		o = *s.opts.Sign
	}
	o.Method = http.MethodGet
	o.Expires = s.opts.Now().Add(s.opts.URLExpiry)
	o.Scheme = storage.SigningSchemeV4
	u, err := s.bucket.SignedURL(s.opts.Prefix+digest, &o)
	if err != nil {
		return "", fmt.Errorf("gcsartifacts: sign URL of %s: %w", digest, err)
	}
	return u, nil
}
