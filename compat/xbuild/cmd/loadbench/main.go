// Command loadbench loads a directory of mutation log segments into a
// corpus, with tryd's maintner or with golang.org/x/build/maintner, and
// prints how long it took and how much memory it needed, for
// bench/corpus-load.sh. Run it once per implementation, each in its own
// process, so that peak memory figures do not mix.
//
// Output is one line of key=value pairs:
//
//	impl=tryd seconds=1.234 cpu_seconds=2.345 peak_rss=123456789 heap_live=98765432 votes_seconds=0.5 votes_cpu_seconds=0.6 votes_peak_rss=... records=...
//
// seconds is wall time; cpu_seconds the process's user+system CPU time
// spent loading (less sensitive to other load on the machine).
//
// After loading, both compute the current label votes of every Gerrit
// change (votes_*): x/build with GerritMeta.LabelVotes, tryd by reading
// every change, which derives it from its NoteDb history (tryd derives a
// change when it is first read, x/build computes votes on every call), so
// the cost of getting all votes ready is visible next to the load.
// peak_rss is the process's VmHWM from /proc/self/status (the peak
// resident set, which bounds the peak heap from above and is what a
// machine must provide); heap_live is the Go heap after a full GC once
// loading finished.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	xmaintner "golang.org/x/build/maintner"

	"github.com/tryd-ci/tryd/maintner"
)

func main() {
	impl := flag.String("impl", "tryd", "implementation: tryd or xbuild")
	dir := flag.String("dir", "", "directory of segment files (NNNN.<sha224>.mutlog)")
	workers := flag.Int("workers", 0, "tryd: segments decoded in parallel (0: the corpus default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the load to this file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the load to this file")
	phase := flag.String("phase", "load", "what the profiles cover: load, votes (the all-votes pass after the load) or all")
	flag.Parse()
	switch *phase {
	case "load", "votes", "all":
	default:
		log.Fatalf("loadbench: unknown --phase %q (want load, votes or all)", *phase)
	}
	// startProfile and stopProfile bracket the phase the profiles cover.
	var cpuFile *os.File
	startProfile := func(p string) {
		if *phase != p && !(*phase == "all" && p == "load") {
			return
		}
		if *memprofile != "" && p == "votes" {
			// The allocation profile counts from the start of the
			// process: write a base to subtract (pprof -diff_base).
			writeAllocs(*memprofile + ".base")
		}
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				log.Fatal(err)
			}
			cpuFile = f
		}
	}
	stopProfile := func(p string) {
		if *phase != p && !(*phase == "all" && p == "votes") {
			return
		}
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
			cpuFile = nil
		}
		if *memprofile != "" {
			writeAllocs(*memprofile)
		}
	}
	if *dir == "" {
		log.Fatal("loadbench: --dir is required")
	}
	ctx := context.Background()
	var detail string
	var start time.Time
	cpuStart := cpuTime()
	switch *impl {
	case "tryd":
		c, err := maintner.New(maintner.Options{LoadWorkers: *workers})
		if err != nil {
			log.Fatal(err)
		}
		startProfile("load")
		start = time.Now()
		if err := c.LoadDir(ctx, *dir); err != nil {
			log.Fatalf("loadbench: tryd: %v", err)
		}
		d := time.Since(start)
		stopProfile("load")
		cpu := cpuTime() - cpuStart
		peak := vmHWM()
		startProfile("votes")
		votes := measure(func() int {
			n := 0
			c.RLock()
			defer c.RUnlock()
			for _, p := range c.GerritProjects() {
				for _, ch := range p.Changes() {
					n += len(ch.VotesOn(ch.CurrentPatchSet))
				}
			}
			return n
		})
		stopProfile("votes")
		s := c.Stats()
		detail = fmt.Sprintf("%s records=%d issues=%d comments=%d changes=%d", votes, s.Records, s.GitHubIssues, s.GitHubComments, s.GerritChanges)
		report(*impl, d, cpu, peak, detail)
		runtime.KeepAlive(c)
	case "xbuild":
		// x/build's DiskMutationLogger reads "maintner-*.mutlog" files in
		// lexical order; link the segments under those names.
		paths, err := maintner.SegmentFiles(*dir)
		if err != nil {
			log.Fatal(err)
		}
		tmp, err := os.MkdirTemp("", "loadbench")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		for i, p := range paths {
			abs, _ := filepath.Abs(p)
			if err := os.Symlink(abs, filepath.Join(tmp, fmt.Sprintf("maintner-%06d.mutlog", i))); err != nil {
				log.Fatal(err)
			}
		}
		log.SetOutput(io.Discard) // x/build logs progress through package log
		c := new(xmaintner.Corpus)
		startProfile("load")
		start = time.Now()
		if err := c.Initialize(ctx, xmaintner.NewDiskMutationLogger(tmp)); err != nil {
			log.SetOutput(os.Stderr)
			log.Fatalf("loadbench: xbuild: %v", err)
		}
		d := time.Since(start)
		stopProfile("load")
		cpu := cpuTime() - cpuStart
		peak := vmHWM()
		startProfile("votes")
		votes := measure(func() int {
			n := 0
			c.Gerrit().ForeachProjectUnsorted(func(p *xmaintner.GerritProject) error {
				return p.ForeachCLUnsorted(func(cl *xmaintner.GerritCL) error {
					v, err := cl.Metas[len(cl.Metas)-1].LabelVotes()
					if err != nil {
						log.Fatal(err)
					}
					for _, byVoter := range v {
						n += len(byVoter)
					}
					return nil
				})
			})
			return n
		})
		stopProfile("votes")
		issues, comments, changes := 0, 0, 0
		c.GitHub().ForeachRepo(func(r *xmaintner.GitHubRepo) error {
			return r.ForeachIssue(func(is *xmaintner.GitHubIssue) error {
				issues++
				return is.ForeachComment(func(*xmaintner.GitHubComment) error { comments++; return nil })
			})
		})
		c.Gerrit().ForeachProjectUnsorted(func(p *xmaintner.GerritProject) error {
			return p.ForeachCLUnsorted(func(*xmaintner.GerritCL) error { changes++; return nil })
		})
		detail = fmt.Sprintf("%s issues=%d comments=%d changes=%d", votes, issues, comments, changes)
		report(*impl, d, cpu, peak, detail)
		runtime.KeepAlive(c)
	default:
		log.Fatalf("loadbench: unknown --impl %q (want tryd or xbuild)", *impl)
	}
}

// writeAllocs writes the allocation profile so far to path.
func writeAllocs(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

// measure runs fn and describes its wall and CPU time and the peak RSS
// after it.
func measure(fn func() int) string {
	start, cpuStart := time.Now(), cpuTime()
	n := fn()
	return fmt.Sprintf("votes_seconds=%.3f votes_cpu_seconds=%.3f votes_peak_rss=%d votes=%d", time.Since(start).Seconds(), (cpuTime() - cpuStart).Seconds(), vmHWM(), n)
}

func report(impl string, d, cpu time.Duration, peak int64, detail string) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("impl=%s seconds=%.3f cpu_seconds=%.3f peak_rss=%d heap_live=%d %s\n", impl, d.Seconds(), cpu.Seconds(), peak, ms.HeapAlloc, detail)
}

// cpuTime returns the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM returns the peak resident set size in bytes, or 0 if unknown.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			fields := strings.Fields(string(v))
			if len(fields) == 2 && fields[1] == "kB" {
				n, _ := strconv.ParseInt(fields[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}
