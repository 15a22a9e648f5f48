package journal

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the journal's Prometheus collectors, with fixed labels.
type metrics struct {
	appends   *prometheus.CounterVec
	appendOK  prometheus.Counter // appends{result="ok"}, looked up once
	latency   prometheus.Histogram
	write     prometheus.Histogram
	fsync     prometheus.Histogram
	batch     prometheus.Histogram
	events    prometheus.Gauge
	bytes     prometheus.Gauge
	segments  prometheus.Gauge
	deleted   prometheus.Counter
	tornTails prometheus.Counter
	corrupt   prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_pubsubhelper_journal_appends_total",
			Help: "Events appended to the journal, by result (ok, duplicate, error).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tryd_pubsubhelper_journal_append_seconds",
			Help:    "Time from an append to its event being durable (queueing, write, fsync), for appends that were written.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14),
		}),
		write: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tryd_pubsubhelper_journal_write_seconds",
			Help:    "Time to write one group commit to the segment (before its fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tryd_pubsubhelper_journal_fsync_seconds",
			Help:    "Time to fsync one group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tryd_pubsubhelper_journal_batch_records",
			Help:    "Records per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		events:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "tryd_pubsubhelper_journal_events", Help: "Events retained in the journal."}),
		bytes:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tryd_pubsubhelper_journal_bytes", Help: "Bytes retained in the journal."}),
		segments:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "tryd_pubsubhelper_journal_segments", Help: "Segment files in the journal."}),
		deleted:   prometheus.NewCounter(prometheus.CounterOpts{Name: "tryd_pubsubhelper_journal_segments_deleted_total", Help: "Segments deleted by retention."}),
		tornTails: prometheus.NewCounter(prometheus.CounterOpts{Name: "tryd_pubsubhelper_journal_torn_tails_total", Help: "Torn records cut from the journal's tail on open."}),
		corrupt:   prometheus.NewCounter(prometheus.CounterOpts{Name: "tryd_pubsubhelper_journal_corrupt_segments_total", Help: "Segments with a bad record before their end, skipped on open."}),
	}
	if reg != nil {
		m.appends = register(reg, m.appends)
		m.latency = register(reg, m.latency)
		m.write = register(reg, m.write)
		m.fsync = register(reg, m.fsync)
		m.batch = register(reg, m.batch)
		m.events = register(reg, m.events)
		m.bytes = register(reg, m.bytes)
		m.segments = register(reg, m.segments)
		m.deleted = register(reg, m.deleted)
		m.tornTails = register(reg, m.tornTails)
		m.corrupt = register(reg, m.corrupt)
	}
	m.appendOK = m.appends.WithLabelValues("ok")
	return m
}

// register registers c, or returns the collector already registered
// under its name (a journal reopened in the same process keeps counting
// on the same series).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
