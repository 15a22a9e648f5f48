package testcluster

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Metrics reads the Prometheus text exposition a server (a coordinator, a
// worker) serves at base+"/metrics": each sample's value by its series as
// written there (`tryd_x_total{event="a"}`), and by the bare name the sum
// over its labels (`tryd_x_total`). Histograms appear as their _count,
// _sum and _bucket series.
func Metrics(ctx context.Context, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("testcluster: metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("testcluster: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("testcluster: metrics of %s: %s", base, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the last space: label values may hold
		// spaces, and tryd writes no timestamps.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		m[series] += v
		if name, _, ok := strings.Cut(series, "{"); ok {
			m[name] += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("testcluster: metrics of %s: %w", base, err)
	}
	return m, nil
}
