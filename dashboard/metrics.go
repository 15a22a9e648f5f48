package dashboard

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts and times pages by name and status class; the label set
// is fixed (page names are constants, codes are grouped).
type metrics struct {
	seconds *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tryd_dashboard_page_seconds",
		Help:    "Time to serve dashboard pages (for streams: until the stream ends), by page and status class.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	}, []string{"page", "code"})}
	if reg != nil {
		if err := reg.Register(m.seconds); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) wrap(page string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		m.seconds.WithLabelValues(page, strconv.Itoa(cw.code/100)+"xx").Observe(time.Since(start).Seconds())
	})
}

type codeWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *codeWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush.
func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
