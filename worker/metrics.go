package worker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/worker/artifact"
)

// metrics are the worker's Prometheus metrics (fixed label sets).
type metrics struct {
	running prometheus.Gauge
	jobs    *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	// heldPrefetched and heldPipelined count the held assignments
	// queued (see held): the work a coordinator crash or an outage
	// holds up.
	heldPrefetched, heldPipelined prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry, cache *artifact.Cache) (*metrics, error) {
	m := &metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_worker_running_jobs", Help: "Jobs running on this worker now.",
		}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_worker_jobs_total", Help: "Attempts finished by this worker, by result state.",
		}, []string{"state"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tryd_worker_job_duration_seconds", Help: "Wall time of attempts on this worker, by result state.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"state"}),
	}
	held := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tryd_worker_held_assignments", Help: "Assignments queued on this worker that the coordinator has not committed (not started while reports to it fail), by kind: prefetched or pipelined.",
	}, []string{"kind"})
	m.heldPrefetched, m.heldPipelined = held.WithLabelValues("prefetched"), held.WithLabelValues("pipelined")
	if reg == nil {
		return m, nil
	}
	cacheBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tryd_worker_cache_bytes", Help: "Bytes held in the local artifact cache.",
	}, func() float64 { return float64(cache.Size()) })
	for _, c := range []prometheus.Collector{m.running, m.jobs, m.seconds, held, cacheBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("worker: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(res api.AttemptResult) {
	m.jobs.WithLabelValues(string(res.State)).Inc()
	m.seconds.WithLabelValues(string(res.State)).Observe(float64(res.DurationMS) / 1000)
}
