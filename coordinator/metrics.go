package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the coordinator's Prometheus metrics, with fixed label sets.
type metrics struct {
	dispatched      prometheus.Counter
	dispatchLatency prometheus.Histogram
	jobsFinished    *prometheus.CounterVec
	attemptsLost    prometheus.Counter
	queued          prometheus.Gauge
	running         prometheus.Gauge
	workers         prometheus.Gauge
	commitSeconds   prometheus.Histogram
	commitErrors    prometheus.Counter
	buildsSubmitted prometheus.Counter
	// prefetched counts prefetched assignments by outcome: handed out,
	// started, taken back, started by the worker after being taken back
	// (see prefetch.go).
	prefetched *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		dispatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_dispatched_total", Help: "Attempts given to workers.",
		}),
		dispatchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tryd_coordinator_dispatch_latency_seconds", Help: "Time from a job becoming ready to its assignment to a worker.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_coordinator_jobs_finished_total", Help: "Jobs finished, by final state.",
		}, []string{"state"}),
		attemptsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_attempts_lost_total", Help: "Attempts lost with their worker or given up by it.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_coordinator_jobs_queued", Help: "Jobs ready and waiting for a worker.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_coordinator_attempts_running", Help: "Attempts running on workers.",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tryd_coordinator_workers_connected", Help: "Workers with a live session.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tryd_coordinator_commit_seconds", Help: "Time to commit one batch of state changes.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_commit_errors_total", Help: "Failed state commits (retried).",
		}),
		buildsSubmitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tryd_coordinator_builds_submitted_total", Help: "Graphs submitted.",
		}),
		prefetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tryd_coordinator_prefetched_total", Help: "Prefetched assignments: handed out, started by their worker, taken back, started by their worker after being taken back (that run is cancelled and its result refused), started_forgotten (a start reported after the worker registered again, which this coordinator never handed out or forgot: recorded as abandoned), release_requested (an idle worker's steal, or a job of a higher priority, asked the holder to release it), released (the holder dropped it unstarted: its job went back to the queue), started_while_releasing (the holder had started it: it runs there).",
		}, []string{"event"}),
	}
	if reg != nil {
		reg.MustRegister(m.dispatched, m.dispatchLatency, m.jobsFinished, m.attemptsLost, m.queued, m.running,
			m.workers, m.commitSeconds, m.commitErrors, m.buildsSubmitted, m.prefetched)
	}
	return m
}
