// Command replicas measures coordinator dispatch throughput for
// bench/coordinator-replicas.sh: the same graphs (B builds of J trivial
// jobs, "true <name>") run on one coordinator on SQLite (the baseline),
// one on PostgreSQL and two replicas on one PostgreSQL, each time with
// the same three real workers (tryd worker processes; with two replicas,
// two workers prefer replica 0 and one replica 1) and artifacts in a GCS
// emulator. Builds are submitted alternately to the replicas, all at
// once; jobs/s is jobs over the time from the first submit to the last
// build's end. Each configuration runs -rounds times, the rounds in
// alternating order (so that a drift in the machine's load weighs on all
// alike), each on a fresh database dropped afterwards (so that one run's
// dead rows are not vacuumed during the next); figures are over all runs. Dispatch latency is measured afterwards on the idle
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
// -limit C adds two configurations, 1 and 2 replicas on PostgreSQL with
// each coordinator in a cgroup of its own limited to C CPUs, as if on a
// machine of its own (their figures go on a RESULT_LIMITED line): there
// the coordinators, not the workers, bound throughput, and the ratio
// says what a second replica adds. -cpuprofile writes the coordinators'
// CPU profiles, -only runs one configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/replicatest"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate/pgtest"
)

// slowSamples prints the dispatch latency samples over 3ms, in order.
var workers = flag.Int("workers", 3, "workers (at most 4), connected to the replicas in turn")

var perRun = flag.Bool("per-run", false, "print each run's CPU and counters, not only each configuration's over all runs")

var slowSamples = flag.Bool("slow-samples", false, "print each configuration's dispatch latency samples over 3ms, in the order taken (to stderr)")

func main() {
	tryd := flag.String("tryd", "", "tryd binary")
	rounds := flag.Int("rounds", 2, "runs of each configuration, in alternating order")
	builds := flag.Int("builds", 60, "builds per run")
	jobs := flag.Int("jobs", 50, "jobs per build")
	slots := flag.Int("slots", 4, "slots per worker")
	logs := flag.Bool("logs", false, "show the processes' logs")
	profiles := flag.String("cpuprofile", "", "write CPU profiles of the coordinators to this directory (CONFIG-roundR/coordN.pprof, over each process's life)")
	flag.Float64Var(&limitCPUs, "limit", 0, "also run 1 and 2 replicas on PostgreSQL with each coordinator limited to this many CPUs (a cgroup each; needs root); 0: not")
	only := flag.String("only", "", "run only this configuration (for profiling; no RESULT line)")
	flag.Parse()
	if *workers < 1 || *workers > len(replicatest.WorkerNames) {
		fmt.Fprintf(os.Stderr, "replicas: -workers %d: 1 to %d\n", *workers, len(replicatest.WorkerNames))
		os.Exit(2)
	}
	if limitCPUs > 0 {
		configs = append(configs, config{"pg-1-limited", true, 1, true}, config{"pg-2-limited", true, 2, true})
	}
	if *only != "" {
		configs = slices.DeleteFunc(configs, func(c config) bool { return c.name != *only })
		if len(configs) == 0 {
			fmt.Fprintf(os.Stderr, "replicas: no configuration %q\n", *only)
			os.Exit(2)
		}
	}
	if err := runAll(*tryd, *rounds, *builds, *jobs, *slots, *logs, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
}

// config is one way of running the coordinators.
type config struct {
	name     string
	postgres bool
	replicas int
	// limited runs each coordinator in a cgroup of its own limited to
	// limitCPUs; the dispatch latency is not sampled.
	limited bool
}

var configs = []config{
	{"sqlite-1", false, 1, false},
	{"postgres-1", true, 1, false},
	{"postgres-2", true, 2, false},
}

// limitCPUs is the CPU limit of each coordinator of the limited
// configurations (-limit).
var limitCPUs float64

// run is what one throughput run and its latency samples measured.
type run struct {
	jobs    int
	elapsed time.Duration
	// cpu is the CPU time and counters spent during the throughput run.
	cpu cpuTimes
	lat []time.Duration
}

// total sums a configuration's runs.
type total struct {
	jobs    int
	elapsed time.Duration
	cpu     cpuTimes
	lat     []time.Duration
}

func (t *total) add(r run) {
	t.jobs += r.jobs
	t.elapsed += r.elapsed
	t.cpu = t.cpu.add(r.cpu)
	t.lat = append(t.lat, r.lat...)
}

func (t *total) jobsPerSec() float64 { return float64(t.jobs) / t.elapsed.Seconds() }

// percentile returns the p-th percentile of the latency samples.
func (t *total) percentile(p int) time.Duration {
	if len(t.lat) == 0 {
		return 0
	}
	l := slices.Clone(t.lat)
	slices.Sort(l)
	return l[len(l)*p/100]
}

func runAll(tryd string, rounds, builds, jobs, slots int, logs bool, profiles string) error {
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
	pgPid := postmaster(dsn)
	totals := map[string]*total{}
	// rate is each configuration's jobs/s in each round.
	rate := map[string][]float64{}
	for _, cfg := range configs {
		totals[cfg.name] = &total{}
	}
	// Rounds alternate the order of the configurations (ABC CBA ...), so
	// that a drift of the machine's load during the benchmark weighs on
	// each alike.
	for round := range rounds {
		order := slices.Clone(configs)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, cfg := range order {
			r, err := measureConfig(cfg, round, dsn, pgPid, tryd, builds, jobs, slots, logs, profiles)
			if err != nil {
				return fmt.Errorf("%s (round %d): %w", cfg.name, round+1, err)
			}
			var used []string
			for _, rs := range r.cpu.replicas {
				used = append(used, fmt.Sprintf("%.3f", rs.cpu.Seconds()/r.elapsed.Seconds()))
			}
			fmt.Printf("round %d %-12s %7.1f jobs/s (coordinators used %s CPUs)\n", round+1, cfg.name, float64(r.jobs)/r.elapsed.Seconds(), strings.Join(used, ", "))
			totals[cfg.name].add(r)
			rate[cfg.name] = append(rate[cfg.name], float64(r.jobs)/r.elapsed.Seconds())
			if *perRun {
				var t total
				t.add(r)
				printTotal(cfg.name, &t)
			}
		}
	}
	fmt.Println()
	for _, cfg := range configs {
		printTotal(cfg.name, totals[cfg.name])
	}
	if len(configs) == 1 {
		return nil
	}
	s, p1, p2 := totals["sqlite-1"], totals["postgres-1"], totals["postgres-2"]
	fmt.Printf("RESULT jobs=%d rounds=%d sqlite1=%.1f pg1=%.1f pg2=%.1f ratio_pg2_pg1=%.2f ratio_pg1_sqlite=%.2f p99_sqlite1_ms=%.2f p99_pg1_ms=%.2f p99_pg2_ms=%.2f\n",
		builds*jobs, rounds, s.jobsPerSec(), p1.jobsPerSec(), p2.jobsPerSec(), p2.jobsPerSec()/p1.jobsPerSec(), p1.jobsPerSec()/s.jobsPerSec(),
		ms(s.percentile(99)), ms(p1.percentile(99)), ms(p2.percentile(99)))
	if limitCPUs > 0 {
		l1, l2 := totals["pg-1-limited"], totals["pg-2-limited"]
		// The ratio within each round (run next to each other), to
		// show how far one round's reading may stray.
		var rounds []float64
		for i, r2 := range rate["pg-2-limited"] {
			rounds = append(rounds, r2/rate["pg-1-limited"][i])
		}
		fmt.Printf("RESULT_LIMITED limit_cpus=%.2f pg1=%.1f pg2=%.1f ratio_pg2_pg1=%.2f round_min=%.2f round_max=%.2f\n", limitCPUs, l1.jobsPerSec(), l2.jobsPerSec(), l2.jobsPerSec()/l1.jobsPerSec(), slices.Min(rounds), slices.Max(rounds))
	}
	return nil
}

// measureConfig runs cfg once, on a database of its own that is dropped
// afterwards: what a run leaves (dead rows for autovacuum) must not cost
// the next one.
func measureConfig(cfg config, round int, dsn string, pgPid int, tryd string, builds, jobs, slots int, logs bool, profiles string) (run, error) {
	prefix := fmt.Sprintf("r%d%s", round, cfg.name[:1]) + strconv.Itoa(cfg.replicas)
	if cfg.limited {
		prefix += "l"
	}
	var db string
	if cfg.postgres {
		name := fmt.Sprintf("tryd_bench_%d_%s", os.Getpid(), prefix)
		var err error
		if db, err = createDB(dsn, name); err != nil {
			return run{}, err
		}
		defer dropDB(dsn, name)
	} else {
		pgPid = 0
	}
	var prof string
	if profiles != "" {
		prof = filepath.Join(profiles, fmt.Sprintf("%s-round%d", cfg.name, round+1))
		if err := os.MkdirAll(prof, 0o755); err != nil {
			return run{}, err
		}
	}
	return measure(tryd, db, cfg, builds, jobs, slots, prefix, logs, pgPid, prof)
}

// printTotal prints a configuration's figures over all rounds.
func printTotal(name string, t *total) {
	n := float64(t.jobs)
	per := func(d time.Duration) float64 { return us(d) / n }
	c := t.cpu
	fmt.Printf("%-11s %7.1f jobs/s  dispatch p50 %6.2fms p99 %6.2fms (%d samples)\n", name, t.jobsPerSec(), ms(t.percentile(50)), ms(t.percentile(99)), len(t.lat))
	commitMean := 0.0
	if c.commits > 0 {
		commitMean = ms(c.commitTime) / c.commits
	}
	fmt.Printf("%-11s cpu/job: coordinators %4.0fus workers %4.0fus postgres %4.0fus bench (GCS emulator, clients) %4.0fus; %.2f commits/job, %.2fms each; %.2f requests/job\n", "",
		per(c.coord), per(c.workers), per(c.pg), per(c.bench), c.commits/n, commitMean, c.requests/n)
	for k, rs := range c.replicas {
		fmt.Printf("%-11s replica %d: %4.0f jobs dispatched, %2.0f builds claimed (%2.0f from memory), %2.0f calls forwarded, %3.0f GCs, %4.0f prefetched, %3.0f taken back (%2.0f after they started), %3.0f released; per job dispatched: cpu %4.0fus, %.2f commits, %.2f requests, %.1f context switches, %.1f KiB allocated\n", "",
			k, rs.dispatched, rs.claimed, rs.claimedBack, rs.forwarded, rs.gcs, rs.prefetched, rs.takenBack, rs.wasted, rs.released, us(rs.cpu)/max(rs.dispatched, 1), rs.commits/max(rs.dispatched, 1), rs.requests/max(rs.dispatched, 1), rs.switches/max(rs.dispatched, 1), rs.allocated/1024/max(rs.dispatched, 1))
	}
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

// dropDB drops a database the benchmark made (its coordinators are gone;
// FORCE ends any connection left).
func dropDB(dsn, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replicas: drop database:", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
		fmt.Fprintln(os.Stderr, "replicas: drop database:", err)
	}
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

func measure(tryd, dsn string, cfg config, builds, jobs, slots int, prefix string, logs bool, pgPid int, profiles string) (run, error) {
	replicas := cfg.replicas
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "tryd-replicas-")
	if err != nil {
		return run{}, err
	}
	defer os.RemoveAll(dir)
	opts := replicatest.Options{Tryd: tryd, Dir: dir, DSN: dsn, Replicas: replicas, CPUProfileDir: profiles}
	if logs {
		opts.Log = os.Stderr
	}
	c, err := replicatest.Start(ctx, opts)
	if err != nil {
		return run{}, err
	}
	var limits []*cpuLimit
	defer func() {
		c.Close() // the coordinators exit, so their cgroups can go
		for _, l := range limits {
			l.close()
		}
	}()
	if cfg.limited {
		for i, p := range c.Coordinators() {
			l, err := newCPULimit(fmt.Sprintf("tryd-bench-%d-%s-%d", os.Getpid(), prefix, i), limitCPUs)
			if err != nil {
				return run{}, err
			}
			limits = append(limits, l)
			if err := l.add(p.Pid()); err != nil {
				return run{}, err
			}
		}
	}
	// Workers connect to the replicas in turn (w1 and w3 to the first).
	for i := range *workers {
		if _, err := c.StartWorker(replicatest.WorkerNames[i], i%replicas, slots); err != nil {
			return run{}, err
		}
	}
	if err := waitWorkers(ctx, c, replicas, *workers); err != nil {
		return run{}, err
	}
	// Warm up: connections, prepared plans, worker caches.
	if err := runBuilds(ctx, c, replicas, 2, 10, prefix+"warm"); err != nil {
		return run{}, err
	}
	cpu0 := cpuOf(c, pgPid)
	t0 := time.Now()
	if err := runBuilds(ctx, c, replicas, builds, jobs, prefix); err != nil {
		return run{}, err
	}
	el := time.Since(t0)
	cpu1 := cpuOf(c, pgPid)
	var lat []time.Duration
	for i := range samples {
		if cfg.limited {
			break
		}
		d, err := dispatchLatency(ctx, c.Client(i%replicas), fmt.Sprintf("%s-lat%d", prefix, i))
		if err != nil {
			return run{}, err
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
	return run{jobs: builds * jobs, elapsed: el, cpu: cpu1.sub(cpu0), lat: lat}, nil
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
