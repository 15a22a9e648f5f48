// Package gcsstore keeps a mutation log's segments in Google Cloud Storage
// (cloud.google.com/go/storage), implementing mutlog.Store.
//
// Objects, under an optional prefix, are named as on disk:
// "NNNN.<sha224>.mutlog" for sealed segments (written once, with a
// DoesNotExist precondition, never changed) and "NNNN.growing.mutlog" for
// the growing one, which each commit rewrites whole with a GenerationMatch
// precondition on the generation the writer last wrote. A "LOCK" object,
// created with DoesNotExist, claims the store for one writer: a second
// writer fails with mutlog.ErrLocked, and even a writer that lost its claim
// (an operator forced a takeover) fails on its next write, because the
// growing object's generation moved, so two writers never both succeed.
//
// Rewriting the growing object costs one upload of the segment so far per
// commit (at most 16 MiB); group commit keeps the number of commits down
// under load. Sealing writes the sealed object, then deletes the growing
// one; a crash between the two leaves both, and the sealed one wins.
package gcsstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
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
	lg := opts.Log
	if lg == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		lg = l
	}
	return &Store{opts: opts, bucket: opts.Client.Bucket(opts.Bucket), log: lg}, nil
}

type object struct {
	mutlog.SegmentInfo
	name string
	gen  int64
}

// list returns the segment objects in order, each number once: a sealed
// object wins over a growing one left by an interrupted seal.
func (s *Store) list(ctx context.Context, prefix string) (segs []object, stale []object, err error) {
	it := s.bucket.Objects(ctx, &storage.Query{Prefix: s.opts.Prefix + prefix})
	byNum := map[int]object{}
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("gcsstore: list gs://%s/%s: %w", s.opts.Bucket, s.opts.Prefix, err)
		}
		num, sum, sealed, ok := mutlog.ParseName(strings.TrimPrefix(attrs.Name, s.opts.Prefix))
		if !ok {
			continue
		}
		o := object{mutlog.SegmentInfo{Number: num, Size: attrs.Size, SHA224: sum, Sealed: sealed}, attrs.Name, attrs.Generation}
		if prev, dup := byNum[num]; dup {
			switch {
			case prev.Sealed && !o.Sealed:
				stale = append(stale, o)
				continue
			case !prev.Sealed && o.Sealed:
				stale = append(stale, prev)
			default:
				return nil, nil, fmt.Errorf("%w: gcsstore: segment %d stored twice (%s, %s)", mutlog.ErrCorrupt, num, prev.name, o.name)
			}
		}
		byNum[num] = o
	}
	for _, o := range byNum {
		segs = append(segs, o)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Number < segs[j].Number })
	return segs, stale, nil
}

// Segments implements mutlog.Store; the growing segment's SHA-224 is
// computed by reading it.
func (s *Store) Segments(ctx context.Context) ([]mutlog.SegmentInfo, error) {
	objs, _, err := s.list(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]mutlog.SegmentInfo, len(objs))
	for i, o := range objs {
		if !o.Sealed {
			b, _, err := s.readObject(ctx, o.name, o.gen)
			if err != nil {
				return nil, err
			}
			o.Size = int64(len(b))
			sum := sha256.Sum224(b)
			o.SHA224 = hex.EncodeToString(sum[:])
		}
		out[i] = o.SegmentInfo
	}
	return out, nil
}

func (s *Store) readObject(ctx context.Context, name string, gen int64) ([]byte, int64, error) {
	obj := s.bucket.Object(name)
	if gen != 0 {
		obj = obj.Generation(gen)
	}
	r, err := obj.NewReader(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("gcsstore: read %s: %w", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("gcsstore: read %s: %w", name, err)
	}
	return b, r.Attrs.Generation, nil
}

// ReadSegment implements mutlog.Store.
func (s *Store) ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error) {
	if num < 0 {
		return nil, fmt.Errorf("gcsstore: segment %d: %w", num, mutlog.ErrNotFound)
	}
	objs, _, err := s.list(ctx, fmt.Sprintf("%04d.", num))
	if err != nil {
		return nil, err
	}
	var o *object
	for i := range objs {
		if objs[i].Number == num {
			o = &objs[i]
		}
	}
	if o == nil {
		return nil, fmt.Errorf("gcsstore: segment %d: %w", num, mutlog.ErrNotFound)
	}
	if off < 0 || n < 0 || off+n > o.Size {
		return nil, fmt.Errorf("gcsstore: segment %d bytes [%d,%d) of %d: %w", num, off, off+n, o.Size, mutlog.ErrRange)
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
	owner := fmt.Sprintf("%s pid %d at %s", host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	lock := s.bucket.Object(s.lockName())
	cond := storage.Conditions{DoesNotExist: true}
	if s.opts.TakeOverLock {
		if attrs, err := lock.Attrs(ctx); err == nil {
			cond = storage.Conditions{GenerationMatch: attrs.Generation}
			s.log.WithField("object", s.lockName()).Warn("gcsstore: taking over the writer lock")
		}
	}
	gen, err := s.write(ctx, s.lockName(), cond, []byte(owner+"\n"))
	if isPrecondition(err) {
		holder, _, _ := s.readObject(ctx, s.lockName(), 0)
		return nil, fmt.Errorf("%w: gs://%s/%s is held by %s", mutlog.ErrLocked, s.opts.Bucket, s.lockName(), strings.TrimSpace(string(holder)))
	}
	if err != nil {
		return nil, err
	}
	w := &writer{s: s, lockGen: gen, cur: -1}
	if err := w.load(ctx); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (s *Store) write(ctx context.Context, name string, cond storage.Conditions, data []byte) (int64, error) {
	ow := s.bucket.Object(name).If(cond).NewWriter(ctx)
	ow.ContentType = "application/octet-stream"
	ow.ChunkSize = 0 // one request: objects are at most a segment
	if _, err := ow.Write(data); err != nil {
		ow.Close()
		return 0, fmt.Errorf("gcsstore: write %s: %w", name, err)
	}
	if err := ow.Close(); err != nil {
		return 0, fmt.Errorf("gcsstore: write %s: %w", name, err)
	}
	return ow.Attrs().Generation, nil
}

func isPrecondition(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && (ge.Code == http.StatusPreconditionFailed || ge.Code == http.StatusConflict)
}

// writer holds the growing segment in memory so each commit can rewrite
// it with a generation precondition.
type writer struct {
	s       *Store
	lockGen int64
	last    int   // number of the last segment, -1 if none
	sealed  bool  // whether the last segment is sealed
	cur     int   // growing segment in data, or -1
	gen     int64 // generation of the growing object
	data    []byte
}

func (w *writer) load(ctx context.Context) error {
	objs, stale, err := w.s.list(ctx, "")
	if err != nil {
		return err
	}
	for _, o := range stale {
		if err := w.s.bucket.Object(o.name).Generation(o.gen).Delete(ctx); err != nil {
			w.s.log.WithError(err).WithField("object", o.name).Warn("gcsstore: delete leftover growing object")
		}
	}
	w.last = -1
	if len(objs) == 0 {
		return nil
	}
	o := objs[len(objs)-1]
	w.last, w.sealed = o.Number, o.Sealed
	if !o.Sealed {
		b, gen, err := w.s.readObject(ctx, o.name, o.gen)
		if err != nil {
			return err
		}
		w.cur, w.gen, w.data = o.Number, gen, b
	}
	return nil
}

func (w *writer) conflict(err error, what string) error {
	if isPrecondition(err) {
		return fmt.Errorf("gcsstore: %s: %w (another writer took over gs://%s/%s?): %w", what, mutlog.ErrConflict, w.s.opts.Bucket, w.s.opts.Prefix, err)
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
		w.cur, w.gen, w.data = num, 0, nil
	default:
		return fmt.Errorf("gcsstore: %w: cannot append to segment %d at %d (last segment %d, sealed %v)", mutlog.ErrConflict, num, off, w.last, w.sealed)
	}
	next := append(w.data[:len(w.data):len(w.data)], data...)
	cond := storage.Conditions{DoesNotExist: true}
	if w.gen != 0 {
		cond = storage.Conditions{GenerationMatch: w.gen}
	}
	gen, err := w.s.write(ctx, w.s.opts.Prefix+mutlog.GrowingName(num), cond, next)
	if err != nil {
		return w.conflict(err, fmt.Sprintf("append to segment %d", num))
	}
	w.gen, w.data, w.last, w.sealed = gen, next, num, false
	return nil
}

func (w *writer) Truncate(ctx context.Context, num int, size int64) error {
	if w.cur != num || w.sealed || size > int64(len(w.data)) || size < 0 {
		return fmt.Errorf("gcsstore: %w: cannot truncate segment %d to %d", mutlog.ErrConflict, num, size)
	}
	next := w.data[:size:size]
	gen, err := w.s.write(ctx, w.s.opts.Prefix+mutlog.GrowingName(num), storage.Conditions{GenerationMatch: w.gen}, next)
	if err != nil {
		return w.conflict(err, fmt.Sprintf("truncate segment %d", num))
	}
	w.gen, w.data = gen, next
	return nil
}

func (w *writer) Seal(ctx context.Context, num int, sha224 string) error {
	if w.cur != num || w.sealed {
		return fmt.Errorf("gcsstore: %w: segment %d is not the growing segment", mutlog.ErrConflict, num)
	}
	sum := sha256.Sum224(w.data)
	if got := hex.EncodeToString(sum[:]); got != sha224 {
		return fmt.Errorf("gcsstore: seal segment %d: its bytes hash to %s, not %s", num, got, sha224)
	}
	// Check the claim first: the sealed name is new, so the write's own
	// precondition cannot notice a rival writer.
	growing := w.s.bucket.Object(w.s.opts.Prefix + mutlog.GrowingName(num))
	attrs, err := growing.Attrs(ctx)
	if err != nil {
		return fmt.Errorf("gcsstore: seal segment %d: %w", num, err)
	}
	if attrs.Generation != w.gen {
		return fmt.Errorf("gcsstore: seal segment %d: %w (growing object generation %d, writer wrote %d)", num, mutlog.ErrConflict, attrs.Generation, w.gen)
	}
	if _, err := w.s.write(ctx, w.s.opts.Prefix+mutlog.SealedName(num, sha224), storage.Conditions{DoesNotExist: true}, w.data); err != nil {
		return w.conflict(err, fmt.Sprintf("seal segment %d", num))
	}
	if err := growing.If(storage.Conditions{GenerationMatch: w.gen}).Delete(ctx); err != nil {
		return fmt.Errorf("gcsstore: seal segment %d: delete growing object: %w", num, err)
	}
	w.sealed, w.cur, w.gen, w.data = true, -1, 0, nil
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
