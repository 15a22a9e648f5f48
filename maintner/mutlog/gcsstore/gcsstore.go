// Package gcsstore keeps a mutation log's segments in Google Cloud Storage
// (cloud.google.com/go/storage), implementing mutlog.Store.
//
// Objects, under an optional prefix:
//
//   - "NNNN.<sha224>.mutlog": a sealed segment, written once with a
//     DoesNotExist precondition and never changed (the names of
//     mutlog.SealedName, as on disk).
//   - "NNNN.growing.mutlog": the base of the growing segment, with
//     metadata "tryd-chunks: K" saying it already holds chunks 1..K.
//   - "NNNN.growing.mutlog.CCCCCCCC": one chunk per commit after the base,
//     numbered from 1, each created with a DoesNotExist precondition.
//
// The growing segment's bytes are the base followed by chunks K+1, K+2, …
// Each commit uploads only its own bytes; now and then (every 64 chunks,
// or when the chunks outweigh the base) the writer folds them into a new
// base, written with a GenerationMatch precondition, and deletes them, so
// total upload stays linear in the data and opening reads few objects.
// Sealing writes the sealed object and then deletes the growing ones; a
// crash in between leaves both, and the sealed one wins.
//
// Single writer: a "LOCK" object created with DoesNotExist claims the
// store; a second writer fails with mutlog.ErrLocked. Beyond that, every
// write is conditional (a chunk number can be created once, a base only
// over the generation the writer knows), so a writer that lost its claim
// (an operator forced a takeover) fails with mutlog.ErrConflict on its
// next commit instead of both writers succeeding.
package gcsstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/sirupsen/logrus"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// Options configures a Store.
type Options struct {
	// Client talks to GCS. Required.
	Client *storage.Client
	// Bucket names the bucket. Required.
	Bucket string
	// Prefix is prepended to object names, e.g. "maintner/"; it must be
	// empty or end in "/".
	Prefix string
	// TakeOverLock makes OpenWriter replace an existing LOCK object,
	// for an operator recovering from a writer that died without
	// releasing it. The old writer, if it still runs, fails on its next
	// commit.
	TakeOverLock bool
	// FoldEvery is how many chunks may follow the base before the
	// writer folds them into it (default 64).
	FoldEvery int
	// Log receives warnings; nil discards them.
	Log logrus.FieldLogger
}

// Store is a mutlog.Store in a GCS bucket.
type Store struct {
	opts   Options
	bucket *storage.BucketHandle
	log    logrus.FieldLogger
}

var _ mutlog.Store = (*Store)(nil)

// New validates opts and returns a Store.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("gcsstore: Options.Client is nil")
	}
	if opts.Bucket == "" {
		return nil, errors.New("gcsstore: Options.Bucket is empty")
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("gcsstore: Options.Prefix %q must end in /", opts.Prefix)
	}
	if opts.FoldEvery <= 0 {
		opts.FoldEvery = 64
	}
	lg := opts.Log
	if lg == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		lg = l
	}
	return &Store{opts: opts, bucket: opts.Client.Bucket(opts.Bucket), log: lg}, nil
}

const chunksKey = "tryd-chunks"

type object struct {
	name string
	gen  int64
	size int64
}

// segment is one segment as stored: sealed, or a growing base and chunks.
type segment struct {
	num    int
	sealed *object
	sha224 string
	base   *object
	folded int            // chunks the base holds
	chunks map[int]object // by chunk number
	stale  []object       // objects to delete (superseded)
}

// liveChunks returns the growing segment's live chunks in order, checking
// they follow the base without gaps.
func (s *segment) liveChunks() ([]object, error) {
	var nums []int
	for n := range s.chunks {
		if n > s.folded {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := make([]object, len(nums))
	for i, n := range nums {
		if n != s.folded+1+i {
			return nil, fmt.Errorf("%w: gcsstore: growing segment %d: chunk %d missing", mutlog.ErrCorrupt, s.num, s.folded+1+i)
		}
		out[i] = s.chunks[n]
	}
	return out, nil
}

func (s *Store) growingName(num int) string { return s.opts.Prefix + mutlog.GrowingName(num) }
func (s *Store) chunkName(num, c int) string {
	return fmt.Sprintf("%s.%08d", s.growingName(num), c)
}

// list reads the objects whose names start with prefix (relative to the
// store's prefix) and groups them by segment, in order.
func (s *Store) list(ctx context.Context, prefix string) ([]*segment, error) {
	it := s.bucket.Objects(ctx, &storage.Query{Prefix: s.opts.Prefix + prefix})
	byNum := map[int]*segment{}
	get := func(n int) *segment {
		if byNum[n] == nil {
			byNum[n] = &segment{num: n, chunks: map[int]object{}}
		}
		return byNum[n]
	}
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("gcsstore: list gs://%s/%s: %w", s.opts.Bucket, s.opts.Prefix, err)
		}
		rel := strings.TrimPrefix(attrs.Name, s.opts.Prefix)
		o := object{attrs.Name, attrs.Generation, attrs.Size}
		if num, sum, sealed, ok := mutlog.ParseName(rel); ok {
			seg := get(num)
			if sealed {
				if seg.sealed != nil {
					return nil, fmt.Errorf("%w: gcsstore: segment %d sealed twice (%s, %s)", mutlog.ErrCorrupt, num, seg.sealed.name, o.name)
				}
				seg.sealed, seg.sha224 = &o, sum
			} else {
				seg.base = &o
				k, err := strconv.Atoi(attrs.Metadata[chunksKey])
				if err != nil || k < 0 {
					return nil, fmt.Errorf("%w: gcsstore: %s has bad %s metadata %q", mutlog.ErrCorrupt, o.name, chunksKey, attrs.Metadata[chunksKey])
				}
				seg.folded = k
			}
			continue
		}
		base, cstr, ok := strings.Cut(rel, ".growing.mutlog.")
		if !ok || len(cstr) != 8 {
			continue
		}
		num, sum, _, ok := mutlog.ParseName(base + ".growing.mutlog")
		c, err := strconv.Atoi(cstr)
		if !ok || sum != "" || err != nil || c < 1 {
			continue
		}
		get(num).chunks[c] = o
	}
	segs := make([]*segment, 0, len(byNum))
	for _, seg := range byNum {
		switch {
		case seg.sealed != nil:
			// Leftovers of an interrupted seal.
			if seg.base != nil {
				seg.stale = append(seg.stale, *seg.base)
			}
			for _, c := range seg.chunks {
				seg.stale = append(seg.stale, c)
			}
			seg.base, seg.chunks = nil, nil
		case seg.base == nil:
			// Chunks without a base cannot be placed: a base is
			// written before any chunk, so this is damage.
			return nil, fmt.Errorf("%w: gcsstore: segment %d has chunks but no base object", mutlog.ErrCorrupt, seg.num)
		default:
			for n, c := range seg.chunks {
				if n <= seg.folded {
					seg.stale = append(seg.stale, c) // left by an interrupted fold
				}
			}
		}
		segs = append(segs, seg)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].num < segs[j].num })
	return segs, nil
}

// readGrowing returns the bytes of a growing segment.
func (s *Store) readGrowing(ctx context.Context, seg *segment) ([]byte, error) {
	chunks, err := seg.liveChunks()
	if err != nil {
		return nil, err
	}
	data, err := s.readObject(ctx, *seg.base)
	if err != nil {
		return nil, err
	}
	for _, c := range chunks {
		b, err := s.readObject(ctx, c)
		if err != nil {
			return nil, err
		}
		data = append(data, b...)
	}
	return data, nil
}

func (s *Store) readObject(ctx context.Context, o object) ([]byte, error) {
	obj := s.bucket.Object(o.name)
	if o.gen != 0 {
		obj = obj.Generation(o.gen)
	}
	r, err := obj.NewReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("gcsstore: read %s: %w", o.name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("gcsstore: read %s: %w", o.name, err)
	}
	return b, nil
}

// Segments implements mutlog.Store; the growing segment is read to
// compute its size and SHA-224.
func (s *Store) Segments(ctx context.Context) ([]mutlog.SegmentInfo, error) {
	segs, err := s.list(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]mutlog.SegmentInfo, len(segs))
	for i, seg := range segs {
		if seg.sealed != nil {
			out[i] = mutlog.SegmentInfo{Number: seg.num, Size: seg.sealed.size, SHA224: seg.sha224, Sealed: true}
			continue
		}
		b, err := s.readGrowing(ctx, seg)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum224(b)
		out[i] = mutlog.SegmentInfo{Number: seg.num, Size: int64(len(b)), SHA224: hex.EncodeToString(sum[:])}
	}
	return out, nil
}

// ReadSegment implements mutlog.Store.
func (s *Store) ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error) {
	if num < 0 {
		return nil, fmt.Errorf("gcsstore: segment %d: %w", num, mutlog.ErrNotFound)
	}
	segs, err := s.list(ctx, fmt.Sprintf("%04d.", num))
	if err != nil {
		return nil, err
	}
	var seg *segment
	for _, sg := range segs {
		if sg.num == num {
			seg = sg
		}
	}
	if seg == nil {
		return nil, fmt.Errorf("gcsstore: segment %d: %w", num, mutlog.ErrNotFound)
	}
	if seg.sealed == nil {
		b, err := s.readGrowing(ctx, seg)
		if err != nil {
			return nil, err
		}
		if off < 0 || n < 0 || off+n > int64(len(b)) {
			return nil, fmt.Errorf("gcsstore: segment %d bytes [%d,%d) of %d: %w", num, off, off+n, len(b), mutlog.ErrRange)
		}
		return io.NopCloser(bytes.NewReader(b[off : off+n])), nil
	}
	o := seg.sealed
	if off < 0 || n < 0 || off+n > o.size {
		return nil, fmt.Errorf("gcsstore: segment %d bytes [%d,%d) of %d: %w", num, off, off+n, o.size, mutlog.ErrRange)
	}
	if n == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	r, err := s.bucket.Object(o.name).Generation(o.gen).NewRangeReader(ctx, off, n)
	if err != nil {
		return nil, fmt.Errorf("gcsstore: read %s: %w", o.name, err)
	}
	return r, nil
}

func (s *Store) lockName() string { return s.opts.Prefix + "LOCK" }

// OpenWriter implements mutlog.Store.
func (s *Store) OpenWriter(ctx context.Context) (mutlog.Writer, error) {
	host, _ := os.Hostname()
	// The nonce makes every claim's bytes unique, so a retried lock
	// write recognizes its own object and nobody else's (see write).
	nonce := make([]byte, 8)
	rand.Read(nonce)
	owner := fmt.Sprintf("%s pid %d at %s (claim %x)", host, os.Getpid(), time.Now().UTC().Format(time.RFC3339), nonce)
	lock := s.bucket.Object(s.lockName())
	cond := storage.Conditions{DoesNotExist: true}
	if s.opts.TakeOverLock {
		if attrs, err := lock.Attrs(ctx); err == nil {
			cond = storage.Conditions{GenerationMatch: attrs.Generation}
			s.log.WithField("object", s.lockName()).Warn("gcsstore: taking over the writer lock")
		}
	}
	gen, err := s.write(ctx, s.lockName(), cond, nil, []byte(owner+"\n"))
	if isPrecondition(err) {
		holder, _ := s.readObject(ctx, object{name: s.lockName()})
		return nil, fmt.Errorf("%w: gs://%s/%s is held by %s", mutlog.ErrLocked, s.opts.Bucket, s.lockName(), strings.TrimSpace(string(holder)))
	}
	if err != nil {
		return nil, err
	}
	w := &writer{s: s, lockGen: gen, cur: -1, last: -1}
	if err := w.load(ctx); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// write creates or replaces an object under a precondition. The client
// retries conditional writes on transient errors; when a retry fails its
// precondition because the first attempt did land, the object already
// holds exactly these bytes and metadata, and that counts as success.
func (s *Store) write(ctx context.Context, name string, cond storage.Conditions, meta map[string]string, data []byte) (int64, error) {
	ow := s.bucket.Object(name).If(cond).NewWriter(ctx)
	ow.ContentType = "application/octet-stream"
	ow.Metadata = meta
	ow.ChunkSize = 0 // one request: objects are at most a segment
	_, err := ow.Write(data)
	if cerr := ow.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return ow.Attrs().Generation, nil
	}
	if isPrecondition(err) {
		if gen, ok := s.holds(ctx, name, meta, data); ok {
			return gen, nil
		}
	}
	return 0, fmt.Errorf("gcsstore: write %s: %w", name, err)
}

// holds reports whether object name has exactly data and meta, and its
// generation.
func (s *Store) holds(ctx context.Context, name string, meta map[string]string, data []byte) (int64, bool) {
	r, err := s.bucket.Object(name).NewReader(ctx)
	if err != nil {
		return 0, false
	}
	defer r.Close()
	got, err := io.ReadAll(io.LimitReader(r, int64(len(data))+1))
	if err != nil || !bytes.Equal(got, data) {
		return 0, false
	}
	attrs, err := s.bucket.Object(name).Generation(r.Attrs.Generation).Attrs(ctx)
	if err != nil || len(attrs.Metadata) != len(meta) {
		return 0, false
	}
	for k, v := range meta {
		if attrs.Metadata[k] != v {
			return 0, false
		}
	}
	return r.Attrs.Generation, true
}

func (s *Store) deleteAll(ctx context.Context, objs []object) {
	for _, o := range objs {
		if err := s.bucket.Object(o.name).Generation(o.gen).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
			s.log.WithError(err).WithField("object", o.name).Warn("gcsstore: delete superseded object")
		}
	}
}

func isPrecondition(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && (ge.Code == http.StatusPreconditionFailed || ge.Code == http.StatusConflict)
}

// writer keeps the growing segment's bytes in memory (for folding and
// sealing) and the names of its objects.
type writer struct {
	s       *Store
	lockGen int64
	last    int  // number of the last segment, -1 if none
	sealed  bool // whether the last segment is sealed
	cur     int  // growing segment, or -1
	data    []byte
	base    object   // current base object
	folded  int      // chunks the base holds
	chunks  []object // live chunks after the base
	chunkSz int64    // their total size
}

func (w *writer) load(ctx context.Context) error {
	segs, err := w.s.list(ctx, "")
	if err != nil {
		return err
	}
	for _, seg := range segs {
		w.s.deleteAll(ctx, seg.stale)
	}
	if len(segs) == 0 {
		return nil
	}
	seg := segs[len(segs)-1]
	w.last, w.sealed = seg.num, seg.sealed != nil
	if seg.sealed == nil {
		data, err := w.s.readGrowing(ctx, seg)
		if err != nil {
			return err
		}
		chunks, _ := seg.liveChunks()
		w.cur, w.data, w.base, w.folded, w.chunks = seg.num, data, *seg.base, seg.folded, chunks
		w.chunkSz = 0
		for _, c := range chunks {
			w.chunkSz += c.size
		}
	}
	return nil
}

func (w *writer) conflict(err error, what string) error {
	if isPrecondition(err) {
		return fmt.Errorf("gcsstore: %s: %w (did another writer take over gs://%s/%s?): %w", what, mutlog.ErrConflict, w.s.opts.Bucket, w.s.opts.Prefix, err)
	}
	return err
}

func (w *writer) Append(ctx context.Context, num int, off int64, data []byte) error {
	switch {
	case w.cur == num && !w.sealed:
		if off != int64(len(w.data)) {
			return fmt.Errorf("gcsstore: %w: segment %d has %d bytes, writer expected %d", mutlog.ErrConflict, num, len(w.data), off)
		}
	case off == 0 && ((w.last == -1 && num == 0) || (w.sealed && num == w.last+1)):
		// Start the segment with its base.
		name := w.s.growingName(num)
		gen, err := w.s.write(ctx, name, storage.Conditions{DoesNotExist: true}, map[string]string{chunksKey: "0"}, data)
		if err != nil {
			return w.conflict(err, fmt.Sprintf("start segment %d", num))
		}
		w.cur, w.last, w.sealed = num, num, false
		w.data = append([]byte(nil), data...)
		w.base, w.folded, w.chunks, w.chunkSz = object{name, gen, int64(len(data))}, 0, nil, 0
		return nil
	default:
		return fmt.Errorf("gcsstore: %w: cannot append to segment %d at %d (last segment %d, sealed %v)", mutlog.ErrConflict, num, off, w.last, w.sealed)
	}
	c := w.folded + len(w.chunks) + 1
	name := w.s.chunkName(num, c)
	gen, err := w.s.write(ctx, name, storage.Conditions{DoesNotExist: true}, nil, data)
	if err != nil {
		return w.conflict(err, fmt.Sprintf("append chunk %d to segment %d", c, num))
	}
	w.data = append(w.data, data...)
	w.chunks = append(w.chunks, object{name, gen, int64(len(data))})
	w.chunkSz += int64(len(data))
	if len(w.chunks) >= w.s.opts.FoldEvery || w.chunkSz > w.base.size {
		if err := w.fold(ctx, int64(len(w.data))); err != nil {
			return err
		}
	}
	return nil
}

// fold writes a new base holding the first size bytes and every current
// chunk, then deletes the chunks.
func (w *writer) fold(ctx context.Context, size int64) error {
	k := w.folded + len(w.chunks)
	gen, err := w.s.write(ctx, w.base.name, storage.Conditions{GenerationMatch: w.base.gen}, map[string]string{chunksKey: strconv.Itoa(k)}, w.data[:size])
	if err != nil {
		return w.conflict(err, fmt.Sprintf("fold segment %d", w.cur))
	}
	old := w.chunks
	w.base, w.folded, w.chunks, w.chunkSz = object{w.base.name, gen, size}, k, nil, 0
	w.data = w.data[:size]
	w.s.deleteAll(ctx, old)
	return nil
}

func (w *writer) Truncate(ctx context.Context, num int, size int64) error {
	if w.cur != num || w.sealed || size > int64(len(w.data)) || size < 0 {
		return fmt.Errorf("gcsstore: %w: cannot truncate segment %d to %d", mutlog.ErrConflict, num, size)
	}
	return w.fold(ctx, size)
}

func (w *writer) Seal(ctx context.Context, num int, sha224 string) error {
	if w.cur != num || w.sealed {
		return fmt.Errorf("gcsstore: %w: segment %d is not the growing segment", mutlog.ErrConflict, num)
	}
	sum := sha256.Sum224(w.data)
	if got := hex.EncodeToString(sum[:]); got != sha224 {
		return fmt.Errorf("gcsstore: seal segment %d: its bytes hash to %s, not %s", num, got, sha224)
	}
	// The sealed name is new, so its own precondition cannot notice a
	// rival writer: check that the base and the next chunk are as this
	// writer left them.
	attrs, err := w.s.bucket.Object(w.base.name).Attrs(ctx)
	if err != nil {
		return fmt.Errorf("gcsstore: seal segment %d: %w", num, err)
	}
	if attrs.Generation != w.base.gen {
		return fmt.Errorf("gcsstore: seal segment %d: %w (base generation %d, writer wrote %d)", num, mutlog.ErrConflict, attrs.Generation, w.base.gen)
	}
	next := w.s.chunkName(num, w.folded+len(w.chunks)+1)
	if _, err := w.s.bucket.Object(next).Attrs(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("gcsstore: seal segment %d: %w (%s exists or cannot be checked: %v)", num, mutlog.ErrConflict, next, err)
	}
	if _, err := w.s.write(ctx, w.s.opts.Prefix+mutlog.SealedName(num, sha224), storage.Conditions{DoesNotExist: true}, nil, w.data); err != nil {
		return w.conflict(err, fmt.Sprintf("seal segment %d", num))
	}
	w.s.deleteAll(ctx, append([]object{w.base}, w.chunks...))
	w.sealed, w.cur, w.data, w.chunks, w.chunkSz = true, -1, nil, nil, 0
	return nil
}

func (w *writer) Close() error {
	if w.s == nil {
		return nil
	}
	s := w.s
	w.s = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.bucket.Object(s.lockName()).If(storage.Conditions{GenerationMatch: w.lockGen}).Delete(ctx); err != nil {
		return fmt.Errorf("gcsstore: release lock: %w", err)
	}
	return nil
}
