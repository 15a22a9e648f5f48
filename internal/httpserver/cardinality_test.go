package httpserver

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMethodLabelsBounded checks that clients inventing request methods
// cannot add metric series: every unknown method counts as "other".
func TestMethodLabelsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _, _ := start(t, Options{
		Component: "test",
		Registry:  reg,
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
	})
	for i := range 50 {
		req, err := http.NewRequest(fmt.Sprintf("M%d", i), s.URL()+"/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get(t, s.URL()+"/x")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tryd_http_requests_total" {
			continue
		}
		methods := map[string]float64{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
		if len(methods) != 2 || methods["other"] != 50 || methods["GET"] != 1 {
			t.Errorf("requests by method = %v, want GET 1 and other 50", methods)
		}
		return
	}
	t.Fatal("tryd_http_requests_total not registered")
}
