package mutlog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Log's Prometheus metrics. With no registry they are
// still updated but not exported.
type metrics struct {
	reg           *prometheus.Registry
	appends       prometheus.Counter
	bytes         prometheus.Counter
	commits       prometheus.Counter
	seals         prometheus.Counter
	failures      prometheus.Counter
	commitSeconds prometheus.Histogram
	groupSize     prometheus.Histogram
	size          prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		reg: reg,
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_mutlog_appended_records_total", Help: "Records durably appended to the mutation log."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_mutlog_appended_bytes_total", Help: "Framed bytes durably appended to the mutation log."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_mutlog_commits_total", Help: "Durable writes (fsyncs or object writes) to the store; each serves a group of appends."}),
		seals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_mutlog_sealed_segments_total", Help: "Segments sealed by this writer."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_mutlog_commit_failures_total", Help: "Failed commits (each stops the log until reopened)."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tryd_mutlog_commit_seconds", Help: "Time to commit one group (write and fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tryd_mutlog_group_records", Help: "Records per commit (group commit batching).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_mutlog_size_bytes", Help: "Committed size of the mutation log (sum of segment sizes)."}),
	}
	if reg != nil {
		for _, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				m.unregisterSome()
				return nil, fmt.Errorf("mutlog: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.appends, m.bytes, m.commits, m.seals, m.failures, m.commitSeconds, m.groupSize, m.size}
}

func (m *metrics) unregisterSome() {
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

// unregister removes the metrics so the log can be reopened on the same
// registry.
func (m *metrics) unregister() {
	if m.reg != nil {
		m.unregisterSome()
	}
}
