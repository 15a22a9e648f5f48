// Package logsync serves a mutation log over HTTP and follows one: the
// /logs protocol of golang.org/x/build/maintner, so x/build's
// NewNetworkMutationSource and TailNetworkMutationSource follow a tryd
// server unchanged, and tryd's own Follower follows either.
//
// Wire format (paths relative to where the Handler is mounted, "/logs" by
// default):
//
//   - GET /logs returns a JSON array of the log's segments, oldest first:
//     [{"number":0,"size":16777139,"sha224":"<hex>","url":"/logs/0"}, ...].
//     size is the segment's committed length and sha224 the lower-case hex
//     SHA-224 of those bytes; every segment but the last is sealed. The
//     header X-Sum-Segment-Size carries the sum of the sizes. An empty log
//     is "[]", and a growing segment with no data yet is not listed.
//   - GET /logs?waitsizenot=N long-polls: it answers as above as soon as
//     the sum of sizes differs from N, or 304 Not Modified after about 55
//     seconds (clients simply ask again). Without waitsizenot it answers
//     at once. startseg=K lists segments from number K on (as x/build).
//   - GET /logs/K returns segment K's bytes (as of the request), with HTTP
//     Range support (http.ServeContent) and an ETag of its SHA-224, so a
//     follower fetches only what it lacks: Range: bytes=<have>-<size-1>.
//
// The Follower keeps what it downloads in a cache directory laid out as
// mutlog.DiskStore lays out a log, and its CacheReader reads delivered
// records back from there (by segment number, with a generation that
// makes references from before a divergence fail instead of reading
// other bytes), so that consumers such as maintner.Corpus.Follow keep
// references rather than copies.
package logsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// Source is what a Handler serves. *mutlog.Log implements it.
type Source interface {
	// Segments lists the committed segments.
	Segments() []mutlog.SegmentInfo
	// WaitSizeNot blocks until the total size differs from n.
	WaitSizeNot(ctx context.Context, n int64) (int64, error)
	// ReadSegment returns n bytes of segment num from offset off.
	ReadSegment(ctx context.Context, num int, off, n int64) (io.ReadCloser, error)
}

var _ Source = (*mutlog.Log)(nil)

// SegmentJSON is one element of the /logs index, field for field
// x/build's maintner.LogSegmentJSON.
type SegmentJSON struct {
	Number int    `json:"number"`
	Size   int64  `json:"size"`
	SHA224 string `json:"sha224"`
	URL    string `json:"url"`
}

// HandlerOptions configures a Handler.
type HandlerOptions struct {
	// Source is the log to serve. Required.
	Source Source
	// Path is where the handler is mounted (default "/logs"): the index
	// is served at Path and segment K at Path + "/K".
	Path string
	// PollTimeout bounds a long poll before it answers 304 (default 55s,
	// as x/build: within common proxy and client deadlines).
	PollTimeout time.Duration
	// Log receives errors; nil discards them.
	Log logrus.FieldLogger
	// Registry, if set, receives tryd_logsync_server_* metrics.
	Registry *prometheus.Registry
}

// Handler serves the /logs index and segments.
type Handler struct {
	opts    HandlerOptions
	log     logrus.FieldLogger
	polls   prometheus.Gauge
	served  prometheus.Counter
	indexes *prometheus.CounterVec
}

// NewHandler validates opts and returns a Handler.
func NewHandler(opts HandlerOptions) (*Handler, error) {
	if opts.Source == nil {
		return nil, errors.New("logsync: HandlerOptions.Source is nil")
	}
	if opts.Path == "" {
		opts.Path = "/logs"
	}
	if !strings.HasPrefix(opts.Path, "/") || strings.HasSuffix(opts.Path, "/") {
		return nil, fmt.Errorf("logsync: HandlerOptions.Path %q must start and not end with /", opts.Path)
	}
	if opts.PollTimeout == 0 {
		opts.PollTimeout = 55 * time.Second
	}
	h := &Handler{
		opts: opts,
		log:  opts.Log,
		polls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_logsync_server_waiting_polls", Help: "Long polls of the /logs index currently waiting."}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_logsync_server_segment_bytes_total", Help: "Segment bytes requested from /logs/K (ranges included)."}),
		indexes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_logsync_server_index_requests_total", Help: "Index requests by result (changed, immediate, timeout)."}, []string{"result"}),
	}
	if h.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		h.log = l
	}
	if opts.Registry != nil {
		for _, c := range []prometheus.Collector{h.polls, h.served, h.indexes} {
			if err := opts.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("logsync: register metrics: %w", err)
			}
		}
	}
	return h, nil
}

var segNumRx = regexp.MustCompile(`^[0-9]{1,9}$`)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == h.opts.Path:
		h.serveIndex(w, r)
	case strings.HasPrefix(p, h.opts.Path+"/"):
		h.serveSegment(w, r, strings.TrimPrefix(p, h.opts.Path+"/"))
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	startSeg := 0
	if s := q.Get("startseg"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, "bad startseg: want a segment number", http.StatusBadRequest)
			return
		}
		startSeg = n
	}
	result := "immediate"
	if s := q.Get("waitsizenot"); s != "" {
		old, err := strconv.ParseInt(s, 10, 64)
		if err != nil || old < 0 {
			http.Error(w, "bad waitsizenot: want a non-negative byte count", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.PollTimeout)
		h.polls.Inc()
		_, err = h.opts.Source.WaitSizeNot(ctx, old)
		h.polls.Dec()
		cancel()
		if err != nil {
			if r.Context().Err() != nil {
				return // client went away
			}
			if errors.Is(err, mutlog.ErrClosed) {
				// Shutting down: 5xx makes clients retry later.
				http.Error(w, "log closed", http.StatusServiceUnavailable)
				return
			}
			h.indexes.WithLabelValues("timeout").Inc()
			w.WriteHeader(http.StatusNotModified)
			return
		}
		result = "changed"
	}
	h.indexes.WithLabelValues(result).Inc()
	segs := h.opts.Source.Segments()
	out := make([]SegmentJSON, 0, len(segs))
	var sum int64
	for _, s := range segs {
		if s.Number < startSeg || s.Size == 0 {
			continue
		}
		sum += s.Size
		out = append(out, SegmentJSON{Number: s.Number, Size: s.Size, SHA224: s.SHA224, URL: fmt.Sprintf("%s/%d", h.opts.Path, s.Number)})
	}
	body, err := json.MarshalIndent(out, "", "\t")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Sum-Segment-Size", strconv.FormatInt(sum, 10))
	w.Write(body)
}

func (h *Handler) serveSegment(w http.ResponseWriter, r *http.Request, numStr string) {
	if !segNumRx.MatchString(numStr) {
		http.Error(w, "bad segment number", http.StatusBadRequest)
		return
	}
	num, _ := strconv.Atoi(numStr)
	var seg *mutlog.SegmentInfo
	for _, s := range h.opts.Source.Segments() {
		if s.Number == num {
			seg = &s
			break
		}
	}
	if seg == nil {
		http.Error(w, fmt.Sprintf("segment %d not found", num), http.StatusNotFound)
		return
	}
	rs := &segmentReader{ctx: r.Context(), src: h.opts.Source, num: num, size: seg.Size, served: h.served}
	defer rs.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+seg.SHA224+`"`)
	if !seg.Sealed {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, rs)
	if rs.err != nil {
		h.log.WithError(rs.err).WithField("segment", num).Error("logsync: read segment")
	}
}

// segmentReader is an io.ReadSeeker over a segment snapshot of known size
// that opens ranged reads on the Source lazily, so http.ServeContent can
// seek to a requested range without reading what precedes it.
type segmentReader struct {
	ctx    context.Context
	src    Source
	num    int
	size   int64
	pos    int64
	rc     io.ReadCloser
	err    error
	served prometheus.Counter
}

func (s *segmentReader) Seek(off int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = off
	case io.SeekCurrent:
		abs = s.pos + off
	case io.SeekEnd:
		abs = s.size + off
	default:
		return 0, errors.New("logsync: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("logsync: negative position")
	}
	if abs != s.pos {
		s.Close()
		s.pos = abs
	}
	return abs, nil
}

func (s *segmentReader) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.rc == nil {
		rc, err := s.src.ReadSegment(s.ctx, s.num, s.pos, s.size-s.pos)
		if err != nil {
			s.err = err
			return 0, err
		}
		s.rc = rc
	}
	if int64(len(p)) > s.size-s.pos {
		p = p[:s.size-s.pos]
	}
	n, err := s.rc.Read(p)
	s.pos += int64(n)
	s.served.Add(float64(n))
	if err == io.EOF && s.pos < s.size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (s *segmentReader) Close() error {
	if s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
	return nil
}
