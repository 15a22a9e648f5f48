package logsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// ErrDiverged is matched by a *DivergedError.
var ErrDiverged = errors.New("logsync: server history diverged from what was delivered")

// DivergedError reports that the server's log no longer contains records
// the follower already delivered: the server rewound (restored from an
// older copy, or lost uncommitted data) or was replaced. The follower has
// dropped the diverging part of its cache; the consumer must discard the
// state it built and Run again from the beginning.
type DivergedError struct {
	// At is the first position whose bytes may differ.
	At mutlog.Position
	// Delivered is how far the follower had delivered.
	Delivered mutlog.Position
	// Reason says what was seen.
	Reason string
}

func (e *DivergedError) Error() string {
	return fmt.Sprintf("logsync: server history diverged at %v, records up to %v were already delivered: %s", e.At, e.Delivered, e.Reason)
}

// Is makes errors.Is(err, ErrDiverged) work.
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// FollowerOptions configures a Follower.
type FollowerOptions struct {
	// URL is the server's index, e.g. "http://maintnerd:8080/logs".
	// Required.
	URL string
	// CacheDir keeps downloaded segments, in the layout of
	// mutlog.DiskStore (readable with mutlog.ForEachDir and by
	// x/build's network mutation source). Required; created if needed.
	// One follower at a time may use it (it is flocked). Segments wholly
	// before the position Run starts from are not fetched, so such a
	// cache may lack them.
	CacheDir string
	// Client makes the requests (default: a client without timeout,
	// since index requests long-poll; cancel through the context).
	Client *http.Client
	// IndexTimeout bounds one index request (default 2 minutes). The
	// server answers a long poll within about 55 seconds, 304 if
	// nothing changed, so a request outliving this is stuck on a dead
	// connection and is retried.
	IndexTimeout time.Duration
	// DownloadTimeout bounds one segment download (default 5 minutes;
	// a segment is at most 16 MiB).
	DownloadTimeout time.Duration
	// RetryMin and RetryMax bound the backoff after network or server
	// errors (defaults 100ms and 30s). There is no delay between
	// successful polls: the server's long poll paces them.
	RetryMin, RetryMax time.Duration
	// CaughtUp, if set, is called by Run (on its goroutine, between
	// deliveries) whenever everything the server listed has been
	// delivered, with the end position, before waiting for more: a
	// consumer learns that its state is current (for example, that old
	// votes were replayed and new ones are live).
	CaughtUp func(end mutlog.Position)
	// Log receives progress and errors; nil discards them.
	Log logrus.FieldLogger
	// Registry, if set, receives tryd_logsync_follower_* metrics.
	Registry *prometheus.Registry
}

// Follower syncs a server's log into a local cache and delivers its
// records. It is used by one goroutine at a time.
type Follower struct {
	opts   FollowerOptions
	base   *url.URL
	client *http.Client
	log    logrus.FieldLogger
	lock   mutlog.Writer
	m      followerMetrics

	// Per Run:
	segs      []cacheSeg      // cache state, by segment number
	delivered mutlog.Position // records before this were delivered (or skipped)
	from      mutlog.Position
	// The tail is the growing segment whose records were all
	// delivered, verified and cached: only its size and hash state are
	// kept, so that new bytes are downloaded, hashed and delivered
	// without holding (up to 16 MiB of) the segment in memory.
	tailNum  int       // segment number, or -1
	tailSize int64     // its verified bytes
	tailHash hash.Hash // SHA-224 state over them

	// cache is what Reader reads: the verified bytes of the cache.
	cache *cache
}

type cacheSeg struct {
	size   int64
	sha    string // SHA-224 of the cached bytes when known (sealed name or verified)
	sealed bool
	path   string
}

type followerMetrics struct {
	lag        prometheus.Gauge
	records    prometheus.Counter
	downloaded prometheus.Counter
	diverged   prometheus.Counter
	errors     prometheus.Counter
}

// NewFollower validates opts, claims the cache directory and returns a
// Follower. Close releases the directory.
func NewFollower(opts FollowerOptions) (*Follower, error) {
	if opts.URL == "" {
		return nil, errors.New("logsync: FollowerOptions.URL is empty")
	}
	base, err := url.Parse(opts.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("logsync: FollowerOptions.URL %q is not an http(s) URL", opts.URL)
	}
	if opts.CacheDir == "" {
		return nil, errors.New("logsync: FollowerOptions.CacheDir is empty")
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.IndexTimeout <= 0 {
		opts.IndexTimeout = 2 * time.Minute
	}
	if opts.DownloadTimeout <= 0 {
		opts.DownloadTimeout = 5 * time.Minute
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 100 * time.Millisecond
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(30*time.Second, opts.RetryMin)
	}
	lg := opts.Log
	if lg == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		lg = l
	}
	f := &Follower{opts: opts, base: base, client: opts.Client, log: lg, tailNum: -1, cache: &cache{refs: 1}}
	f.m = followerMetrics{
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_logsync_follower_lag_bytes", Help: "Bytes the server has listed that the follower has not yet delivered."}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_logsync_follower_records_total", Help: "Records delivered by the follower."}),
		downloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_logsync_follower_downloaded_bytes_total", Help: "Segment bytes downloaded by the follower."}),
		diverged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_logsync_follower_divergences_total", Help: "Times the server's history no longer matched the follower's cache."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_logsync_follower_errors_total", Help: "Failed sync attempts (retried with backoff)."}),
	}
	if opts.Registry != nil {
		for _, c := range []prometheus.Collector{f.m.lag, f.m.records, f.m.downloaded, f.m.diverged, f.m.errors} {
			if err := opts.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("logsync: register metrics: %w", err)
			}
		}
	}
	st, err := mutlog.NewDiskStore(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("logsync: cache: %w", err)
	}
	// The cache has DiskStore's layout; claiming it as a writer takes
	// its flock, so two followers never share a cache.
	f.lock, err = st.OpenWriter(context.Background())
	if err != nil {
		return nil, fmt.Errorf("logsync: cache %s: %w", opts.CacheDir, err)
	}
	return f, nil
}

// Close releases the cache directory. Readers (see Reader) stay usable
// until they are closed.
func (f *Follower) Close() error {
	if f.lock == nil {
		return nil
	}
	err := errors.Join(f.lock.Close(), f.cache.release())
	f.lock = nil
	return err
}

// Run delivers, in order, every record of the server's log at or after
// from (the zero Position means all), reusing the cache, and then keeps
// delivering new records as the server commits them, until ctx ends (it
// returns ctx.Err()), fn returns an error (returned as is), or the server's
// history diverges from records already delivered (*DivergedError).
// Network and server errors are logged and retried with backoff. Only
// bytes whose SHA-224 matched the server's are ever delivered.
func (f *Follower) Run(ctx context.Context, from mutlog.Position, fn mutlog.Func) error {
	return f.run(ctx, from, fn, true)
}

// Sync is Run without the tail: it returns nil once every record the
// server listed when asked has been delivered.
func (f *Follower) Sync(ctx context.Context, from mutlog.Position, fn mutlog.Func) error {
	return f.run(ctx, from, fn, false)
}

func (f *Follower) run(ctx context.Context, from mutlog.Position, fn mutlog.Func, tail bool) error {
	if f.lock == nil {
		return errors.New("logsync: follower closed")
	}
	if err := f.loadCache(); err != nil {
		return err
	}
	f.delivered, f.from = mutlog.Position{}, from
	f.clearTail()
	wait := int64(-1)
	backoff := f.opts.RetryMin
	for {
		segs, err := f.fetchIndex(ctx, wait)
		if err == nil {
			var srvSum int64
			for _, s := range segs {
				srvSum += s.Size
			}
			err = f.apply(ctx, segs, srvSum, fn)
			if err == nil {
				backoff = f.opts.RetryMin
				if !tail {
					return nil
				}
				if f.opts.CaughtUp != nil {
					f.opts.CaughtUp(f.delivered)
				}
				wait = srvSum
				continue
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe *fatalError
		if errors.As(err, &fe) {
			return fe.err
		}
		if errors.Is(err, ErrDiverged) {
			return err
		}
		f.m.errors.Inc()
		f.log.WithError(err).WithField("retry_in", backoff).Warn("logsync: sync failed; retrying")
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, f.opts.RetryMax)
	}
}

// fatalError wraps errors from the consumer's fn, which end Run as is.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// loadCache lists the cache directory.
func (f *Follower) loadCache() error {
	des, err := os.ReadDir(f.opts.CacheDir)
	if err != nil {
		return fmt.Errorf("logsync: cache: %w", err)
	}
	byNum := map[int]cacheSeg{}
	maxNum := -1
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			// Left by a follower killed while writing it.
			os.Remove(filepath.Join(f.opts.CacheDir, de.Name()))
			continue
		}
		num, sum, sealed, ok := mutlog.ParseName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return fmt.Errorf("logsync: cache: %w", err)
		}
		path := filepath.Join(f.opts.CacheDir, de.Name())
		if prev, dup := byNum[num]; dup {
			// Keep the sealed copy; drop the other.
			if !sealed {
				os.Remove(path)
				continue
			}
			os.Remove(prev.path)
		}
		byNum[num] = cacheSeg{size: fi.Size(), sha: sum, sealed: sealed, path: path}
		maxNum = max(maxNum, num)
	}
	// Gaps are possible: a follower started from a later position does
	// not fetch the segments before it.
	f.segs = make([]cacheSeg, maxNum+1)
	for num, c := range byNum {
		f.segs[num] = c
	}
	return nil
}

// tmpPrefix starts the names of cache files being written.
const tmpPrefix = "tmp-segment-"

var sha224Rx = regexp.MustCompile(`^[0-9a-f]{56}$`)

// maxIndexBytes bounds the index response (about 100 bytes a segment).
const maxIndexBytes = 16 << 20

// maxSegmentBytes bounds the size of a segment the follower accepts, and
// so what it allocates for one download: segments are at most 16 MiB,
// with room for a log written with a larger limit.
const maxSegmentBytes = 256 << 20

// fetchIndex gets the server's segment list, long-polling while its size
// is wait (wait < 0: answer at once).
func (f *Follower) fetchIndex(ctx context.Context, wait int64) ([]SegmentJSON, error) {
	u := *f.base
	if wait >= 0 {
		q := u.Query()
		q.Set("waitsizenot", fmt.Sprint(wait))
		u.RawQuery = q.Encode()
	}
	for {
		segs, again, err := f.fetchIndexOnce(ctx, u.String())
		if again {
			continue // the server's long poll timed out; ask again
		}
		return segs, err
	}
}

func (f *Follower) fetchIndexOnce(ctx context.Context, u string) (segs []SegmentJSON, again bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.IndexTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	res, err := f.client.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("logsync: index: %w", err)
	}
	if res.StatusCode == http.StatusNotModified {
		res.Body.Close()
		return nil, true, nil
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxIndexBytes+1))
	res.Body.Close()
	if err != nil {
		return nil, false, fmt.Errorf("logsync: index: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("logsync: index %s: %s: %s", f.opts.URL, res.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	if len(body) > maxIndexBytes {
		return nil, false, fmt.Errorf("logsync: index %s: more than %d bytes", f.opts.URL, maxIndexBytes)
	}
	segs, err = parseIndex(body)
	return segs, false, err
}

// parseIndex parses and validates a /logs index.
func parseIndex(body []byte) ([]SegmentJSON, error) {
	var segs []SegmentJSON
	if err := json.Unmarshal(body, &segs); err != nil {
		return nil, fmt.Errorf("logsync: index: %w", err)
	}
	for i, s := range segs {
		switch {
		case s.Number != i:
			return nil, fmt.Errorf("logsync: index: entry %d is segment %d", i, s.Number)
		case s.Size <= 0 || s.Size > maxSegmentBytes:
			return nil, fmt.Errorf("logsync: index: segment %d has size %d", i, s.Size)
		case !sha224Rx.MatchString(s.SHA224):
			return nil, fmt.Errorf("logsync: index: segment %d has bad sha224 %q", i, s.SHA224)
		case s.URL == "":
			return nil, fmt.Errorf("logsync: index: segment %d has no url", i)
		}
		if _, err := url.Parse(s.URL); err != nil {
			return nil, fmt.Errorf("logsync: index: segment %d: %w", i, err)
		}
	}
	return segs, nil
}

// apply brings the cache in line with the server's segments and delivers
// new records.
func (f *Follower) apply(ctx context.Context, srv []SegmentJSON, srvSum int64, fn mutlog.Func) error {
	defer func() { f.m.lag.Set(float64(srvSum - f.deliveredBytes(srv))) }()
	if len(f.segs) > len(srv) {
		if err := f.diverge(len(srv), 0, fmt.Sprintf("cache has %d segments, server lists %d", len(f.segs), len(srv))); err != nil {
			return err
		}
	}
	for i, s := range srv {
		last := i == len(srv)-1
		if !f.from.Less(mutlog.Position{Segment: i, Offset: s.Size}) && (i >= len(f.segs) || f.segs[i].path == "") {
			// Every record of segment i lies before from and the
			// cache lacks it: skip it rather than download it.
			if f.delivered.Less(mutlog.Position{Segment: i, Offset: s.Size}) {
				f.delivered = mutlog.Position{Segment: i, Offset: s.Size}
			}
			continue
		}
		if !f.needs(i, s.Size) && i < len(f.segs) && f.segs[i].size == s.Size && f.segs[i].sha == s.SHA224 {
			// Delivered and verified already; just seal it if the
			// server has moved on.
			if !last && !f.segs[i].sealed {
				if err := f.sealCache(i); err != nil {
					return err
				}
			}
			continue
		}
		data, base, err := f.segmentBytes(ctx, i, s)
		if err != nil {
			return err
		}
		if !last {
			if err := f.sealCache(i); err != nil {
				return err
			}
		}
		if err := f.deliver(i, data, base, fn); err != nil {
			return err
		}
	}
	return nil
}

// needs reports whether records of segment i below size are undelivered.
func (f *Follower) needs(i int, size int64) bool {
	return f.delivered.Less(mutlog.Position{Segment: i, Offset: size})
}

func (f *Follower) deliveredBytes(srv []SegmentJSON) int64 {
	var n int64
	for i, s := range srv {
		switch {
		case i < f.delivered.Segment:
			n += s.Size
		case i == f.delivered.Segment:
			n += min(f.delivered.Offset, s.Size)
		}
	}
	return n
}

// segmentBytes verifies segment i against the server's s, downloading
// what the cache lacks and repairing the cache, and returns the
// segment's bytes from offset base on (s.Size-base of them). base is
// 0 except for the tail, whose earlier bytes were delivered already.
func (f *Follower) segmentBytes(ctx context.Context, i int, s SegmentJSON) (data []byte, base int64, err error) {
	if f.tailNum == i && !f.segs[i].sealed && f.tailSize < s.Size && !f.delivered.Less(mutlog.Position{Segment: i, Offset: f.tailSize}) {
		more, err := f.download(ctx, s, f.tailSize)
		if err != nil {
			return nil, 0, err
		}
		h := cloneHash(f.tailHash)
		h.Write(more)
		if hex.EncodeToString(h.Sum(nil)) == s.SHA224 {
			base := f.tailSize
			if err := f.appendCache(i, more, h); err != nil {
				return nil, 0, err
			}
			return more, base, nil
		}
		// The server's segment no longer starts with the tail: see
		// below where it differs.
	}
	var have []byte
	if i < len(f.segs) && f.segs[i].path != "" {
		c := f.segs[i]
		b, err := os.ReadFile(c.path)
		if err != nil {
			return nil, 0, fmt.Errorf("logsync: cache: %w", err)
		}
		have = b
		if c.sealed {
			sum := sha256.Sum224(b)
			if hex.EncodeToString(sum[:]) != c.sha {
				f.log.WithField("file", c.path).Warn("logsync: cached segment does not match its checksum; refetching")
				if err := f.dropFrom(i, 0); err != nil {
					return nil, 0, err
				}
				have = nil
			}
		}
	}
	if int64(len(have)) > s.Size {
		at := int64(0)
		if sum := sha256.Sum224(have[:s.Size]); hex.EncodeToString(sum[:]) == s.SHA224 {
			at = s.Size
		}
		if err := f.diverge(i, at, fmt.Sprintf("cached segment %d has %d bytes, server lists %d", i, len(have), s.Size)); err != nil {
			return nil, 0, err
		}
		have = nil
	}
	if have != nil {
		h := sha256.New224()
		h.Write(have)
		var more []byte
		if int64(len(have)) < s.Size {
			b, err := f.download(ctx, s, int64(len(have)))
			if err != nil {
				return nil, 0, err
			}
			more = b
			h.Write(more)
		}
		if hex.EncodeToString(h.Sum(nil)) == s.SHA224 {
			if err := f.storeCache(i, have, more, h); err != nil {
				return nil, 0, err
			}
			return append(have, more...), 0, nil
		}
		// The cached prefix plus the new bytes do not hash right:
		// fetch the whole segment to see which side changed.
		full, err := f.download(ctx, s, 0)
		if err != nil {
			return nil, 0, err
		}
		if sum := sha256.Sum224(full); hex.EncodeToString(sum[:]) != s.SHA224 {
			return nil, 0, fmt.Errorf("logsync: segment %d: download does not match the server's sha224", i)
		}
		at := int64(0)
		for at < int64(len(have)) && have[at] == full[at] {
			at++
		}
		if err := f.diverge(i, at, fmt.Sprintf("cached bytes of segment %d differ from the server's at offset %d", i, at)); err != nil {
			return nil, 0, err
		}
		h = sha256.New224()
		h.Write(full)
		if err := f.storeCache(i, nil, full, h); err != nil {
			return nil, 0, err
		}
		return full, 0, nil
	}
	full, err := f.download(ctx, s, 0)
	if err != nil {
		return nil, 0, err
	}
	h := sha256.New224()
	h.Write(full)
	if hex.EncodeToString(h.Sum(nil)) != s.SHA224 {
		return nil, 0, fmt.Errorf("logsync: segment %d: download does not match the server's sha224", i)
	}
	if err := f.storeCache(i, nil, full, h); err != nil {
		return nil, 0, err
	}
	return full, 0, nil
}

func cloneHash(h hash.Hash) hash.Hash {
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err) // crypto/sha256 always supports this
	}
	c := sha256.New224()
	if err := c.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic(err)
	}
	return c
}

// download fetches segment bytes [off, s.Size).
func (f *Follower) download(ctx context.Context, s SegmentJSON, off int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.DownloadTimeout)
	defer cancel()
	ref, _ := url.Parse(s.URL)
	u := f.base.ResolveReference(ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	want := s.Size - off
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, s.Size-1))
	res, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("logsync: segment %d: %w", s.Number, err)
	}
	defer res.Body.Close()
	body := io.Reader(res.Body)
	switch {
	case res.StatusCode == http.StatusPartialContent:
	case res.StatusCode == http.StatusOK:
		// Range ignored: skip to off.
		if _, err := io.CopyN(io.Discard, res.Body, off); err != nil {
			return nil, fmt.Errorf("logsync: segment %d: %w", s.Number, err)
		}
	default:
		return nil, fmt.Errorf("logsync: segment %d: %s: %s", s.Number, u, res.Status)
	}
	buf := make([]byte, want)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, fmt.Errorf("logsync: segment %d: read %d bytes at %d: %w", s.Number, want, off, err)
	}
	f.m.downloaded.Add(float64(want))
	return buf, nil
}

// storeCache records segment i as have+more (verified, hashing to h) in
// the cache: appending more to the growing file when have is already
// there, rewriting it otherwise. The segment becomes the tail.
func (f *Follower) storeCache(i int, have, more []byte, h hash.Hash) error {
	sum := hex.EncodeToString(h.Sum(nil))
	size := int64(len(have) + len(more))
	if i < len(f.segs) && f.segs[i].sealed && f.segs[i].sha == sum {
		if err := f.cache.verified(i, f.segs[i].path, size, true); err != nil {
			return err
		}
		f.setTail(i, size, h)
		return nil
	}
	if have != nil && i < len(f.segs) && !f.segs[i].sealed && f.segs[i].size == int64(len(have)) {
		return f.appendCache(i, more, h)
	}
	path := filepath.Join(f.opts.CacheDir, mutlog.GrowingName(i))
	if i < len(f.segs) && f.segs[i].path != "" {
		// The file is replaced: bytes past have may differ.
		if err := f.cache.drop(i, int64(len(have))); err != nil {
			return err
		}
		os.Remove(f.segs[i].path)
	}
	tmp, err := os.CreateTemp(f.opts.CacheDir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("logsync: cache: %w", err)
	}
	_, err = tmp.Write(have)
	if err == nil {
		_, err = tmp.Write(more)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("logsync: cache: %w", err)
	}
	for len(f.segs) <= i {
		f.segs = append(f.segs, cacheSeg{})
	}
	f.segs[i] = cacheSeg{size: size, sha: sum, path: path}
	if err := f.cache.verified(i, path, size, false); err != nil {
		return err
	}
	f.setTail(i, size, h)
	return nil
}

// appendCache appends more to the growing cache file of segment i,
// whose bytes with more hash to h, and makes it the tail.
func (f *Follower) appendCache(i int, more []byte, h hash.Hash) error {
	c := &f.segs[i]
	if len(more) > 0 {
		fh, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("logsync: cache: %w", err)
		}
		_, err = fh.Write(more)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("logsync: cache: %w", err)
		}
	}
	c.size += int64(len(more))
	c.sha = hex.EncodeToString(h.Sum(nil))
	if err := f.cache.verified(i, c.path, c.size, false); err != nil {
		return err
	}
	f.setTail(i, c.size, h)
	return nil
}

func (f *Follower) setTail(i int, size int64, h hash.Hash) {
	f.tailNum, f.tailSize, f.tailHash = i, size, h
}

func (f *Follower) clearTail() { f.tailNum, f.tailSize, f.tailHash = -1, 0, nil }

// sealCache renames cached segment i to its sealed name.
func (f *Follower) sealCache(i int) error {
	c := f.segs[i]
	if !c.sealed {
		to := filepath.Join(f.opts.CacheDir, mutlog.SealedName(i, c.sha))
		if err := os.Rename(c.path, to); err != nil {
			return fmt.Errorf("logsync: cache: seal: %w", err)
		}
		f.segs[i].sealed, f.segs[i].path = true, to
	}
	f.cache.sealed(i)
	if f.tailNum == i {
		f.clearTail()
	}
	return nil
}

// diverge handles a server whose segment i differs from the cache from
// offset at on: the cache is dropped from segment i on; if records there
// were already delivered, a *DivergedError is returned, else the cache is
// simply refetched.
func (f *Follower) diverge(i int, at int64, reason string) error {
	f.m.diverged.Inc()
	if err := f.dropFrom(i, at); err != nil {
		return err
	}
	pos := mutlog.Position{Segment: i, Offset: at}
	if pos.Less(f.delivered) {
		f.log.WithFields(logrus.Fields{"at": pos, "delivered": f.delivered}).Error("logsync: server history diverged from delivered records: " + reason)
		return &DivergedError{At: pos, Delivered: f.delivered, Reason: reason}
	}
	f.log.WithField("at", pos).Warn("logsync: cache does not match the server; refetching: " + reason)
	return nil
}

// dropFrom deletes cached segments i and later, whose bytes from
// offset at of segment i on differ from the server's. Readers' references
// to them become stale.
func (f *Follower) dropFrom(i int, at int64) error {
	if err := f.cache.drop(i, at); err != nil {
		return err
	}
	for j := i; j < len(f.segs); j++ {
		if f.segs[j].path == "" {
			continue
		}
		if err := os.Remove(f.segs[j].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("logsync: cache: %w", err)
		}
	}
	if i < len(f.segs) {
		f.segs = f.segs[:i]
	}
	if f.tailNum >= i {
		f.clearTail()
	}
	return nil
}

// deliver passes the undelivered records of segment i to fn: data is
// the segment's verified bytes from offset base on, and records before
// base were delivered.
func (f *Follower) deliver(i int, data []byte, base int64, fn mutlog.Func) error {
	start := int64(0)
	if f.delivered.Segment == i {
		start = f.delivered.Offset
	} else if f.delivered.Segment > i {
		return nil
	}
	if start < base {
		return &fatalError{fmt.Errorf("logsync: internal error: segment %d delivered to %d, bytes from %d", i, start, base)}
	}
	end := base + int64(len(data))
	if start >= end {
		return nil
	}
	name := fmt.Sprintf("%04d", i)
	_, err := reclog.Scan(name, data[start-base:], start, func(off int64, p []byte) error {
		pos := mutlog.Position{Segment: i, Offset: off}
		if !pos.Less(f.from) {
			if err := fn(pos, p); err != nil {
				return &fatalError{err}
			}
			f.m.records.Inc()
		}
		f.delivered = mutlog.Position{Segment: i, Offset: off + reclog.RecordLen(off, len(p))}
		return nil
	})
	if err != nil {
		var fe *fatalError
		if errors.As(err, &fe) {
			return err
		}
		// The bytes match the server's checksum but are not a valid
		// log: the server itself is corrupt. Stop; never deliver it.
		return &fatalError{fmt.Errorf("logsync: server log is corrupt: %w: %w", mutlog.ErrCorrupt, err)}
	}
	// A segment the server moved on from is complete.
	f.delivered = mutlog.Position{Segment: i, Offset: end}
	return nil
}
