package gitmirror

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are gitmirror's Prometheus metrics. The repo label takes only
// configured repository names, so its set is fixed by the configuration.
type metrics struct {
	fetches      *prometheus.CounterVec   // repo, result
	fetchSeconds *prometheus.HistogramVec // repo
	pushes       *prometheus.CounterVec   // repo, result
	archives     *prometheus.CounterVec   // repo, result: git archive runs
	tarballs     *prometheus.CounterVec   // cache: hit, miss, join
	cacheBytes   prometheus.Gauge
	cacheEntries prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_gitmirror_fetches_total",
			Help: "Clones and fetches from upstream, by repository and result.",
		}, []string{"repo", "result"}),
		fetchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tryd_gitmirror_fetch_duration_seconds",
			Help:    "Time of clones and fetches from upstream.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"repo"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_gitmirror_pushes_total",
			Help: "Pushes to push mirrors, by repository and result.",
		}, []string{"repo", "result"}),
		archives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_gitmirror_archive_runs_total",
			Help: "git archive runs building tarballs, by repository and result.",
		}, []string{"repo", "result"}),
		tarballs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_gitmirror_tarball_requests_total",
			Help: "Tarball requests served, by cache outcome: hit, miss (built by this request) or join (streamed a build in progress).",
		}, []string{"cache"}),
		cacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_gitmirror_tarball_cache_bytes",
			Help: "Bytes of tarballs in the cache.",
		}),
		cacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_gitmirror_tarball_cache_entries",
			Help: "Tarballs in the cache.",
		}),
	}
	for _, c := range []prometheus.Collector{m.fetches, m.fetchSeconds, m.pushes, m.archives, m.tarballs, m.cacheBytes, m.cacheEntries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gitmirror: register metrics: %w", err)
		}
	}
	return m, nil
}
