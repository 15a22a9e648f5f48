package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/testcluster"
)

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// cpuTimes is a process's CPU time: its own (user+system) and that of
// its reaped children (the jobs' processes, for a worker).
type cpuTimes struct{ self, children time.Duration }

// procCPU reads /proc/<pid>/stat; on systems without /proc it reports
// zeros (the figures are then left out).
func procCPU(pid int) cpuTimes {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return cpuTimes{}
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return cpuTimes{}
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime, stime, cutime, cstime are fields
	// 14 to 17.
	if len(f) < 15 {
		return cpuTimes{}
	}
	n := func(k int) time.Duration {
		v, _ := strconv.ParseInt(f[k-3], 10, 64)
		return time.Duration(v) * clockTick
	}
	return cpuTimes{self: n(14) + n(15), children: n(16) + n(17)}
}

// cpuMeter samples the CPU time of the cluster's processes, and the
// coordinator's request and commit counts, around a run.
type cpuMeter struct {
	url               string
	names             []string
	pids              []int
	observer          int // index of a process reported but not counted
	start             []cpuTimes
	requests, commits float64
}

func newCPUMeter(url string, names []string, pids []int, observer int) *cpuMeter {
	m := &cpuMeter{url: url, names: names, pids: pids, observer: observer}
	m.reset()
	return m
}

func (m *cpuMeter) reset() {
	m.requests, m.commits = counters(m.url)
	m.start = m.start[:0]
	for _, p := range m.pids {
		m.start = append(m.start, procCPU(p))
	}
}

// report returns the CPU time per job of each process since reset, and
// the total (tryd's processes plus the jobs' processes; not the
// observer's).
func (m *cpuMeter) report(jobs int) (string, time.Duration) {
	var parts []string
	var total time.Duration
	var kids time.Duration
	for i, p := range m.pids {
		now := procCPU(p)
		self := now.self - m.start[i].self
		parts = append(parts, fmt.Sprintf("%s %.0fµs", m.names[i], perJobUS(self, jobs)))
		if i == m.observer {
			continue
		}
		kids += now.children - m.start[i].children
		total += self
	}
	total += kids
	parts = append(parts, fmt.Sprintf("jobs' processes %.0fµs", perJobUS(kids, jobs)))
	if r, c := counters(m.url); r > 0 {
		parts = append(parts, fmt.Sprintf("%.2f requests and %.2f commits per job", (r-m.requests)/float64(jobs), (c-m.commits)/float64(jobs)))
	}
	return strings.Join(parts, ", "), total
}

func perJobUS(d time.Duration, jobs int) float64 {
	return float64(d) / float64(time.Microsecond) / float64(jobs)
}

// counters reads the coordinator's /metrics and sums the samples of a few
// counters: HTTP requests served and state commits.
func counters(url string) (requests, commits float64) {
	m, err := testcluster.Metrics(context.Background(), url)
	if err != nil {
		return 0, 0
	}
	return m["tryd_http_requests_total"], m["tryd_coordinator_commit_seconds_count"]
}
