package testcluster_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tryd-ci/tryd/internal/testcluster"
)

// TestMetrics reads what a real registry exposes: series with labels
// (a value with a space included), their sums by name, histograms.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tryd_x_total", Help: "x"}, []string{"event"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tryd_y", Help: "y"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tryd_z_seconds", Help: "z", Buckets: []float64{1}})
	reg.MustRegister(c, g, h)
	c.WithLabelValues("a").Add(2)
	c.WithLabelValues("b c").Add(3)
	g.Set(-1.5)
	h.Observe(0.5)
	h.Observe(2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	m, err := testcluster.Metrics(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{
		`tryd_x_total{event="a"}`:   2,
		`tryd_x_total{event="b c"}`: 3,
		`tryd_x_total`:              5,
		`tryd_y`:                    -1.5,
		`tryd_z_seconds_count`:      2,
		`tryd_z_seconds_sum`:        2.5,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	nf := httptest.NewServer(http.NotFoundHandler())
	defer nf.Close()
	if _, err := testcluster.Metrics(t.Context(), nf.URL); err == nil {
		t.Error("metrics of a server that answers 404: no error")
	}
}
