package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/replicatest"
	"github.com/tryd-ci/tryd/internal/testcluster"
)

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture tryd runs on).
const userHZ = 100

// cpuTimes are CPU times (user+sys) consumed so far, and the
// coordinators' state commits.
type cpuTimes struct {
	coord, workers, pg, bench time.Duration
	commits                   float64       // batches committed
	commitTime                time.Duration // spent committing them
	requests                  float64       // HTTP requests the coordinators answered
	// replicas are the figures of each coordinator.
	replicas []replicaStats
}

// sub returns the times and counts spent between o and t.
func (t cpuTimes) sub(o cpuTimes) cpuTimes {
	d := cpuTimes{coord: t.coord - o.coord, workers: t.workers - o.workers, pg: t.pg - o.pg, bench: t.bench - o.bench,
		commits: t.commits - o.commits, commitTime: t.commitTime - o.commitTime, requests: t.requests - o.requests}
	for k := range t.replicas {
		d.replicas = append(d.replicas, t.replicas[k].sub(o.replicas[k]))
	}
	return d
}

// add sums the times and counts of two runs of one configuration.
func (t cpuTimes) add(o cpuTimes) cpuTimes {
	s := cpuTimes{coord: t.coord + o.coord, workers: t.workers + o.workers, pg: t.pg + o.pg, bench: t.bench + o.bench,
		commits: t.commits + o.commits, commitTime: t.commitTime + o.commitTime, requests: t.requests + o.requests}
	for k := range max(len(t.replicas), len(o.replicas)) {
		var a, b replicaStats
		if k < len(t.replicas) {
			a = t.replicas[k]
		}
		if k < len(o.replicas) {
			b = o.replicas[k]
		}
		s.replicas = append(s.replicas, a.add(b))
	}
	return s
}

// replicaStats are one coordinator's counters so far.
type replicaStats struct {
	cpu                                               time.Duration
	commits, requests, dispatched, claimed, forwarded float64
	// allocated is the bytes its Go runtime allocated; gcs its GC
	// cycles (GC work follows allocation, so a replica that allocates
	// more per job pays for it again in marking).
	allocated, gcs float64
	// prefetched are attempts handed out beyond free slots, takenBack
	// those taken back, and restarted those a worker had started when
	// they were taken back: runs thrown away.
	prefetched, takenBack, wasted float64
	// released are attempts their worker released on request (for an
	// idle worker, or a job of a higher priority) instead of their
	// being taken back.
	released float64
	// claimedBack are the claimed builds resumed from memory (this
	// replica had offered them, and none held them since).
	claimedBack float64
	// switches are its threads' context switches (voluntary and not):
	// each is a wake-up of the Go runtime (a poll arriving, a goroutine
	// handing work to another, sysmon), whose cost does not shrink
	// with the work it wakes for, so a replica that does less per
	// wake-up pays more per job.
	switches float64
}

func (r replicaStats) add(o replicaStats) replicaStats {
	return replicaStats{cpu: r.cpu + o.cpu, commits: r.commits + o.commits, requests: r.requests + o.requests,
		dispatched: r.dispatched + o.dispatched, claimed: r.claimed + o.claimed, forwarded: r.forwarded + o.forwarded,
		allocated: r.allocated + o.allocated, gcs: r.gcs + o.gcs,
		prefetched: r.prefetched + o.prefetched, takenBack: r.takenBack + o.takenBack, wasted: r.wasted + o.wasted, released: r.released + o.released, claimedBack: r.claimedBack + o.claimedBack, switches: r.switches + o.switches}
}

func (r replicaStats) sub(o replicaStats) replicaStats {
	return replicaStats{cpu: r.cpu - o.cpu, commits: r.commits - o.commits, requests: r.requests - o.requests,
		dispatched: r.dispatched - o.dispatched, claimed: r.claimed - o.claimed, forwarded: r.forwarded - o.forwarded,
		allocated: r.allocated - o.allocated, gcs: r.gcs - o.gcs,
		prefetched: r.prefetched - o.prefetched, takenBack: r.takenBack - o.takenBack, wasted: r.wasted - o.wasted, released: r.released - o.released, claimedBack: r.claimedBack - o.claimedBack, switches: r.switches - o.switches}
}

// procCPU returns a process's CPU time from /proc/PID/stat: its own and,
// with children, that of its waited-for children (a worker's jobs, a
// PostgreSQL server's ended backends). ppid is its parent.
func procCPU(pid int, children bool) (cpu time.Duration, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// The command name (field 2) may hold spaces: fields count from
	// after its closing parenthesis, where field 3 (state) is [0].
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	ppid = int(num(1))
	ticks := num(11) + num(12) // utime, stime (fields 14, 15)
	if children {
		ticks += num(13) + num(14) // cutime, cstime
	}
	return time.Duration(ticks) * time.Second / userHZ, ppid
}

// cpuOf sums the CPU time of the cluster's coordinators, its workers and
// the PostgreSQL server whose postmaster is pgPid (0: not measured):
// the postmaster, its live backends and those that ended.
func cpuOf(c *replicatest.Cluster, pgPid int) cpuTimes {
	var t cpuTimes
	for _, p := range c.Coordinators() {
		d, _ := procCPU(p.Pid(), false)
		t.coord += d
		m := coordinatorStats(p.URL)
		t.commits += m["tryd_coordinator_commit_seconds_count"]
		t.commitTime += time.Duration(m["tryd_coordinator_commit_seconds_sum"] * float64(time.Second))
		t.requests += m["tryd_http_requests_total"]
		t.replicas = append(t.replicas, replicaStats{cpu: d, commits: m["tryd_coordinator_commit_seconds_count"], requests: m["tryd_http_requests_total"],
			dispatched: m["tryd_coordinator_dispatched_total"], claimed: m["tryd_coordinator_builds_claimed_total"], claimedBack: m["tryd_coordinator_builds_claimed_offered_total"],
			forwarded: m["tryd_coordinator_forwarded_total"],
			allocated: m["go_memstats_alloc_bytes_total"], gcs: m["go_gc_duration_seconds_count"],
			prefetched: m[`tryd_coordinator_prefetched_total{event="handed_out"}`], takenBack: m[`tryd_coordinator_prefetched_total{event="taken_back"}`],
			wasted:   m[`tryd_coordinator_prefetched_total{event="started_after_take_back"}`],
			released: m[`tryd_coordinator_prefetched_total{event="released"}`],
			switches: contextSwitches(p.Pid())})
	}
	// This process: the GCS emulator and the clients.
	t.bench, _ = procCPU(os.Getpid(), false)
	for _, p := range c.Workers() {
		d, _ := procCPU(p.Pid(), true)
		t.workers += d
	}
	if pgPid <= 0 {
		return t
	}
	t.pg, _ = procCPU(pgPid, true)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if cpu, ppid := procCPU(pid, false); ppid == pgPid {
			t.pg += cpu
		}
	}
	return t
}

// contextSwitches returns the context switches of a process's threads
// so far (from /proc/PID/task/*/status; threads that ended are not
// counted, and the Go runtime seldom ends one).
func contextSwitches(pid int) float64 {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	var n float64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				n += x
			}
		}
	}
	return n
}

// postmaster returns the PID of the PostgreSQL server at dsn when it
// runs on this machine (the parent of a backend we connect to), else 0.
func postmaster(dsn string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0
	}
	_, ppid := procCPU(backend, false)
	return ppid
}

// coordinatorStats reads a coordinator's metrics (testcluster.Metrics);
// none if it does not answer.
func coordinatorStats(base string) map[string]float64 {
	m, err := testcluster.Metrics(context.Background(), base)
	if err != nil {
		return map[string]float64{}
	}
	return m
}
