package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by the GitHub and Gerrit syncers of a process
// (registering the same collectors twice returns the first ones).
type metrics struct {
	syncs      *prometheus.CounterVec   // source, result
	syncDur    *prometheus.HistogramVec // source
	mutations  *prometheus.CounterVec   // source
	nudges     *prometheus.CounterVec   // source
	ghRequests *prometheus.CounterVec   // result
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tryd_ingest_syncs_total",
			Help: "Sync passes (nudges and reconciliations), by source (github, gerrit) and result (ok, error, no_access: GitHub refused the repository to the credentials, see the log)."}, []string{"source", "result"}),
		syncDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tryd_ingest_sync_seconds",
			Help: "Duration of sync passes, by source.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"source"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tryd_ingest_mutations_total",
			Help: "Mutations logged by ingestion, by source."}, []string{"source"}),
		nudges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tryd_ingest_nudges_total",
			Help: "Nudges received, by source."}, []string{"source"}),
		ghRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tryd_ingest_github_requests_total",
			Help: "GitHub REST requests, by result (ok, not_modified, rate_limited, refused_locally, error)."}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.syncs, err = register(reg, m.syncs)
	if err == nil {
		m.syncDur, err = register(reg, m.syncDur)
	}
	if err == nil {
		m.mutations, err = register(reg, m.mutations)
	}
	if err == nil {
		m.nudges, err = register(reg, m.nudges)
	}
	if err == nil {
		m.ghRequests, err = register(reg, m.ghRequests)
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: register metrics: %w", err)
	}
	return m, nil
}

// register registers c, or returns the collector already registered
// under its name (the other syncer's).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(C); ok {
				return ex, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) observe(source string, start, end time.Time, err error) {
	result := "ok"
	switch {
	case errors.Is(err, ErrNoAccess):
		result = "no_access"
	case err != nil:
		result = "error"
	}
	m.syncs.WithLabelValues(source, result).Inc()
	m.syncDur.WithLabelValues(source).Observe(end.Sub(start).Seconds())
}
