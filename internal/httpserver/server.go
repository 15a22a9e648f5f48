// Package httpserver is the one way tryd's components serve HTTP: a
// listener, sensible timeouts, GET /healthz, Prometheus metrics at
// GET /metrics (with Go runtime and process metrics), request logging and
// request metrics, and graceful shutdown that lets in-flight requests
// finish when the context given to Serve is cancelled.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// Options configures a Server. Only Handler and Component are required.
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" (the default)
	// picks a free port on loopback.
	Addr string
	// Handler serves every path except /healthz and /metrics.
	Handler http.Handler
	// Component names the component in logs and metrics.
	Component string
	// Log receives request and lifecycle logs; nil discards them.
	Log logrus.FieldLogger
	// Registry holds the component's metrics and is served at /metrics.
	// Nil means a new registry with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// Health, if set, is called by /healthz; an error makes it answer 503.
	Health func(context.Context) error

	// ReadHeaderTimeout bounds reading request headers (default 10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds idle keep-alive connections (default 120s).
	IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// after its context is cancelled (default 30s). Long-poll handlers
	// should watch the request context, which is cancelled at shutdown.
	ShutdownTimeout time.Duration
}

// Server is an HTTP server with tryd's standard endpoints. There is no
// write timeout by default because several endpoints long-poll or stream;
// handlers bound their own work with the request context.
type Server struct {
	opts Options
	log  logrus.FieldLogger
	ln   net.Listener
	srv  *http.Server
	base context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	serving bool
}

// New validates opts and returns a Server that is not yet listening.
func New(opts Options) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("httpserver: Options.Handler is nil")
	}
	if opts.Component == "" {
		return nil, errors.New("httpserver: Options.Component is empty")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 120 * time.Second
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = NewRegistry()
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	log = log.WithField("component", opts.Component)
	s := &Server{opts: opts, log: log}
	s.base, s.stop = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          nil,
	}
	return s, nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors registered, for components that share one registry.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Registry returns the registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.opts.Registry }

// Listen binds the listening socket, so that Addr and URL are known before
// Serve is called.
func (s *Server) Listen() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("httpserver: %s: listen on %s: %w", s.opts.Component, s.opts.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (host:port), or "" before Listen.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns "http://" plus the bound address, with an unspecified host
// replaced by 127.0.0.1 so that the URL can be dialled.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Serve listens (if Listen was not called) and serves until ctx is
// cancelled, then shuts down gracefully: it stops accepting, cancels the
// contexts of requests still running so long-polls return, and waits up to
// ShutdownTimeout for handlers to finish. It returns nil after a clean
// shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("httpserver: Serve called twice")
	}
	s.serving = true
	s.mu.Unlock()

	s.log.WithField("addr", s.URL()).Info("serving")
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		s.stop()
		return fmt.Errorf("httpserver: %s: %w", s.opts.Component, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	// Shutdown stops accepting and waits for active requests, so ordinary
	// in-flight requests finish normally. Long-polls and streams only end
	// when their request context is cancelled, which happens after a grace
	// period.
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.srv.Shutdown(sctx) }()
	grace := time.NewTimer(longPollGrace)
	defer grace.Stop()
	var err error
	select {
	case err = <-shutdownDone:
	case <-grace.C:
		s.stop()
		err = <-shutdownDone
	}
	s.stop()
	return s.shutdownResult(err, errc)
}

// longPollGrace is how long ordinary requests get to finish at shutdown
// before the contexts of all requests (including long-polls) are cancelled.
const longPollGrace = 2 * time.Second

func (s *Server) shutdownResult(err error, errc <-chan error) error {
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("httpserver: %s: %w", s.opts.Component, serr)
	}
	if err != nil {
		s.srv.Close()
		return fmt.Errorf("httpserver: %s: shutdown: %w", s.opts.Component, err)
	}
	s.log.Info("stopped")
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry}))
	mux.Handle("/", s.opts.Handler)
	return s.instrument(mux)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.opts.Health(ctx); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// methodLabel maps a request method to a fixed set of label values:
// net/http accepts any token as a method, and a label value per distinct
// method would let any client add metric series without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

func (s *Server) instrument(h http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "tryd_http_requests_total",
		Help:        "HTTP requests served, by method and status code.",
		ConstLabels: prometheus.Labels{"component": s.opts.Component},
	}, []string{"method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "tryd_http_request_duration_seconds",
		Help:        "Time to serve HTTP requests, by method.",
		ConstLabels: prometheus.Labels{"component": s.opts.Component},
		Buckets:     prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"method"})
	inflight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tryd_http_requests_in_flight",
		Help:        "HTTP requests being served.",
		ConstLabels: prometheus.Labels{"component": s.opts.Component},
	})
	for _, c := range []prometheus.Collector{requests, duration, inflight} {
		if err := s.opts.Registry.Register(c); err != nil {
			// A registry shared by several servers of one component
			// already has them; reuse the registered collectors.
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				switch existing := are.ExistingCollector.(type) {
				case *prometheus.CounterVec:
					requests = existing
				case *prometheus.HistogramVec:
					duration = existing
				case prometheus.Gauge:
					inflight = existing
				}
			}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		inflight.Inc()
		defer func() {
			inflight.Dec()
			d := time.Since(start)
			method := methodLabel(r.Method)
			requests.WithLabelValues(method, strconv.Itoa(rw.code)).Inc()
			duration.WithLabelValues(method).Observe(d.Seconds())
			if rw.code < 500 && !debugEnabled(s.log) {
				return // spare building an entry nobody logs, per request
			}
			entry := s.log.WithFields(logrus.Fields{
				"method": r.Method, "path": r.URL.Path, "code": rw.code,
				"bytes": rw.n, "dur": d.Round(time.Microsecond).String(), "remote": r.RemoteAddr,
			})
			switch {
			case rw.code >= 500:
				entry.Warn("request")
			default:
				entry.Debug("request")
			}
		}()
		h.ServeHTTP(rw, r)
	})
}

// statusWriter records the status code and body size of a response. It
// keeps Flush and the http.ResponseController escape hatch working for
// streaming handlers.
type statusWriter struct {
	http.ResponseWriter
	code        int
	n           int64
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// debugEnabled reports whether log writes debug entries (true when it
// cannot tell).
func debugEnabled(log logrus.FieldLogger) bool {
	switch l := log.(type) {
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}
