// Command replicas measures coordinator dispatch throughput for
// bench/coordinator-replicas.sh: the same graphs (B builds of J trivial
// jobs, "true <name>") run on one coordinator on SQLite (the baseline),
// one on PostgreSQL and two replicas on one PostgreSQL, each time with
// the same three real workers (tryd worker processes; with two replicas,
// two workers prefer replica 0 and one replica 1) and artifacts in a GCS
// emulator. Builds are submitted alternately to the replicas, all at
// once; jobs/s is jobs over the time from the first submit to the last
// build's end. Dispatch latency is measured afterwards on the idle
// cluster: single-job builds submitted one at a time (alternately to the
// replicas), from the client's submit to the job_started event's time (one
// clock: everything runs on this machine). It prints one "key=value"
// RESULT line, and before it, for each configuration, the CPU time
// (user+sys, from /proc) the coordinators, the workers (with their jobs'
// processes), PostgreSQL and this process (the GCS emulator, the
// clients) spent per job during the throughput run, and the
// coordinators' state commits per job (from their /metrics), and for
// two replicas each one's jobs, claims, forwarded calls, and CPU,
// commits and requests per job it dispatched: wall-clock figures swing
// with the machine's other load, CPU per job says what a replica costs.
// -cpuprofile writes the coordinators' CPU profiles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/replicatest"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
)

// slowSamples prints the dispatch latency samples over 3ms, in order.
var slowSamples = flag.Bool("slow-samples", false, "print each configuration's dispatch latency samples over 3ms, in the order taken (to stderr)")

func main() {
	tryd := flag.String("tryd", "", "tryd binary")
	builds := flag.Int("builds", 60, "builds per run")
	jobs := flag.Int("jobs", 50, "jobs per build")
	slots := flag.Int("slots", 4, "slots per worker (3 workers)")
	logs := flag.Bool("logs", false, "show the processes' logs")
	profiles := flag.String("cpuprofile", "", "write CPU profiles of the coordinators to this directory (CONFIG-coordN.pprof, over each process's life)")
	flag.Parse()
	if err := run(*tryd, *builds, *jobs, *slots, *logs, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
}

type result struct {
	jobsPerSec float64
	p50, p99   time.Duration
	// CPU time per job of the throughput run (zero where /proc did not
	// tell).
	cpuCoord, cpuWorkers, cpuPG, cpuBench time.Duration
	// State commits per job and their mean duration.
	commitsPerJob  float64
	commitMean     time.Duration
	requestsPerJob float64
	// replicas are each coordinator's figures in the throughput run.
	replicas []replicaStats
}

func run(tryd string, builds, jobs, slots int, logs bool, profiles string) error {
	if tryd == "" {
		return errors.New("-tryd is required")
	}
	dsn := os.Getenv(pgtest.EnvDSN)
	if dsn == "" {
		bin, err := pgtest.BinDir()
		if err != nil {
			return err
		}
		srv, stop, err := pgtest.Launch(bin)
		if err != nil {
			return err
		}
		defer stop()
		dsn = srv.DSN
	}
	configs := []struct {
		name     string
		postgres bool
		replicas int
	}{
		{"sqlite-1", false, 1},
		{"postgres-1", true, 1},
		{"postgres-2", true, 2},
	}
	res := map[string]result{}
	for i, cfg := range configs {
		var db string
		if cfg.postgres {
			var err error
			if db, err = createDB(dsn, fmt.Sprintf("tryd_bench_%d_%d", os.Getpid(), i)); err != nil {
				return err
			}
		}
		var prof string
		if profiles != "" {
			prof = filepath.Join(profiles, cfg.name)
			if err := os.MkdirAll(prof, 0o755); err != nil {
				return err
			}
		}
		r, err := measure(tryd, db, cfg.replicas, builds, jobs, slots, fmt.Sprintf("r%d", i), logs, postmaster(dsn), prof)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.name, err)
		}
		fmt.Printf("%-11s %7.1f jobs/s  dispatch p50 %6.2fms p99 %6.2fms\n", cfg.name, r.jobsPerSec, ms(r.p50), ms(r.p99))
		fmt.Printf("%-11s cpu/job: coordinators %4.0fus workers %4.0fus postgres %4.0fus bench (GCS emulator, clients) %4.0fus; %.2f commits/job, %.2fms each; %.2f requests/job\n", "",
			us(r.cpuCoord), us(r.cpuWorkers), us(r.cpuPG), us(r.cpuBench), r.commitsPerJob, ms(r.commitMean), r.requestsPerJob)
		for k, rs := range r.replicas {
			fmt.Printf("%-11s replica %d: %4.0f jobs dispatched, %2.0f builds claimed, %2.0f calls forwarded, %3.0f GCs; per job dispatched: cpu %4.0fus, %.2f commits, %.2f requests, %.1f KiB allocated\n", "",
				k, rs.dispatched, rs.claimed, rs.forwarded, rs.gcs, us(rs.cpu)/max(rs.dispatched, 1), rs.commits/max(rs.dispatched, 1), rs.requests/max(rs.dispatched, 1), rs.allocated/1024/max(rs.dispatched, 1))
		}
		res[cfg.name] = r
	}
	s, p1, p2 := res["sqlite-1"], res["postgres-1"], res["postgres-2"]
	fmt.Printf("RESULT jobs=%d sqlite1=%.1f pg1=%.1f pg2=%.1f ratio_pg2_pg1=%.2f ratio_pg1_sqlite=%.2f p99_sqlite1_ms=%.2f p99_pg1_ms=%.2f p99_pg2_ms=%.2f\n",
		builds*jobs, s.jobsPerSec, p1.jobsPerSec, p2.jobsPerSec, p2.jobsPerSec/p1.jobsPerSec, p1.jobsPerSec/s.jobsPerSec, ms(s.p99), ms(p1.p99), ms(p2.p99))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func createDB(dsn, name string) (string, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name), nil
}

func graphOf(prefix string, n int) graph.Graph {
	var g graph.Graph
	for i := range n {
		name := prefix + "-" + strconv.Itoa(i)
		g.Jobs = append(g.Jobs, &graph.Job{Name: name, SourceMode: graph.SourceNone, Cacheable: true,
			Commands: []graph.Command{{Argv: []string{"true", name}}}})
	}
	return g
}

func measure(tryd, dsn string, replicas, builds, jobs, slots int, prefix string, logs bool, pgPid int, profiles string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "tryd-replicas-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	opts := replicatest.Options{Tryd: tryd, Dir: dir, DSN: dsn, Replicas: replicas, CPUProfileDir: profiles}
	if logs {
		opts.Log = os.Stderr
	}
	c, err := replicatest.Start(ctx, opts)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	for i, prefer := range []int{0, 1, 0} {
		if _, err := c.StartWorker(replicatest.WorkerNames[i], prefer%replicas, slots); err != nil {
			return result{}, err
		}
	}
	if err := waitWorkers(ctx, c, replicas, 3); err != nil {
		return result{}, err
	}
	// Warm up: connections, prepared plans, worker caches.
	if err := runBuilds(ctx, c, replicas, 2, 10, prefix+"warm"); err != nil {
		return result{}, err
	}
	cpu0 := cpuOf(c, pgPid)
	t0 := time.Now()
	if err := runBuilds(ctx, c, replicas, builds, jobs, prefix); err != nil {
		return result{}, err
	}
	el := time.Since(t0)
	cpu1 := cpuOf(c, pgPid)
	var lat []time.Duration
	for i := range samples {
		d, err := dispatchLatency(ctx, c.Client(i%replicas), fmt.Sprintf("%s-lat%d", prefix, i))
		if err != nil {
			return result{}, err
		}
		lat = append(lat, d)
	}
	if *slowSamples {
		// Which samples were slow, in order: a spike in the first ones
		// follows the throughput run (background work it left).
		for i, d := range lat {
			if d > 3*time.Millisecond {
				fmt.Fprintf(os.Stderr, "%s: latency sample %d: %.2fms\n", prefix, i, ms(d))
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	n := time.Duration(builds * jobs)
	r := result{jobsPerSec: float64(builds*jobs) / el.Seconds(),
		cpuCoord: (cpu1.coord - cpu0.coord) / n, cpuWorkers: (cpu1.workers - cpu0.workers) / n, cpuBench: (cpu1.bench - cpu0.bench) / n,
		commitsPerJob: (cpu1.commits - cpu0.commits) / float64(n), requestsPerJob: (cpu1.requests - cpu0.requests) / float64(n)}
	for k := range cpu1.replicas {
		r.replicas = append(r.replicas, cpu1.replicas[k].sub(cpu0.replicas[k]))
	}
	if dc := cpu1.commits - cpu0.commits; dc > 0 {
		r.commitMean = (cpu1.commitTime - cpu0.commitTime) / time.Duration(dc)
	}
	if dsn != "" {
		r.cpuPG = (cpu1.pg - cpu0.pg) / n
	}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r, nil
}

// runBuilds submits the builds alternately to the replicas at once and
// follows each build's events (through the replica it was submitted
// to) until it finishes.
func runBuilds(ctx context.Context, c *replicatest.Cluster, replicas, builds, jobs int, prefix string) error {
	var wg sync.WaitGroup
	errs := make(chan error, builds)
	for b := range builds {
		cl := c.Client(b % replicas)
		sub, err := cl.Submit(ctx, api.SubmitRequest{Graph: graphOf(fmt.Sprintf("%s-b%d", prefix, b), jobs)})
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				bs, err := cl.Wait(ctx, sub.BuildID, nil)
				if err != nil && ctx.Err() == nil && errors.Is(err, api.ErrUnavailable) {
					// Waiting for a replica to claim it.
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("build %d: %w", sub.BuildID, err)
					return
				}
				if bs.State != api.BuildSucceeded {
					errs <- fmt.Errorf("build %d %s: %s", sub.BuildID, bs.State, bs.Error)
					return
				}
				break
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// samples is how many single-job builds dispatchLatency times.
const samples = 60

// dispatchLatency submits a one-job build to an idle cluster and returns
// the time from the submit to the job's start on a worker.
func dispatchLatency(ctx context.Context, cl *api.Client, name string) (time.Duration, error) {
	g := graphOf(name, 1)
	t0 := time.Now()
	sub, err := cl.Submit(ctx, api.SubmitRequest{Graph: g})
	if err != nil {
		return 0, err
	}
	var started time.Time
	for {
		_, err = cl.Wait(ctx, sub.BuildID, func(ev api.Event) {
			if ev.Type == api.EventJobStarted && started.IsZero() {
				started = ev.Time
			}
		})
		if err != nil && ctx.Err() == nil && errors.Is(err, api.ErrUnavailable) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		return 0, fmt.Errorf("build %d: %w", sub.BuildID, err)
	}
	if started.IsZero() {
		return 0, fmt.Errorf("build %d: no job_started event", sub.BuildID)
	}
	return started.Sub(t0), nil
}

func waitWorkers(ctx context.Context, c *replicatest.Cluster, replicas, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		total := 0
		for i := range replicas {
			ws, err := c.Client(i).Workers(ctx)
			if err != nil {
				continue
			}
			for _, w := range ws {
				if w.Connected {
					total++
				}
			}
		}
		if total >= n {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%d workers did not connect within 60s", n)
}
