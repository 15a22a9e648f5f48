// Command votelatency measures the trybot's latency from a Run-TryBot+1
// vote (the webhook leaving the Gerrit simulator) to the first job of the
// try run starting on an idle worker, for bench/vote-latency.sh.
//
// It measures three setups in one run, each with its own stack (Gerrit
// simulator, corpus server fed by the simulator's webhooks, gitmirror,
// coordinator, one worker, trybot; see bench/trystack):
//
//   - inproc: every component in this process (talking HTTP);
//   - procs: gitmirror, coordinator, worker and trybot as their own
//     "tryd" processes (the simulator and corpus server stay here);
//   - poll: like inproc, but the trybot scans the corpus every second
//     instead of after each change: golang.org/x/build's polling design.
//
// Each vote is on a new change; the next vote waits until the previous
// build finished, so the worker is idle. It prints one line per setup:
//
//	RESULT mode=inproc n=50 p50_ms=41.2 p99_ms=88.0 mean_ms=45.1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/bench/trystack"
	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot"
)

func main() {
	votes := flag.Int("votes", 50, "votes measured per setup")
	warm := flag.Int("warmup", 3, "votes before measuring, per setup")
	tryd := flag.String("tryd", "", "tryd binary (required for the procs setup)")
	modes := flag.String("modes", "inproc,procs,poll", "setups to measure, comma-separated")
	dir := flag.String("dir", "", "scratch directory (default: a temporary one)")
	verbose := flag.Bool("v", false, "print each latency and the processes' logs")
	slots := flag.Int("slots", 2, "slots of the worker")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "votelatency-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	for _, m := range splitComma(*modes) {
		lat, rest, err := measure(m, filepath.Join(*dir, m), *tryd, *warm, *votes, *slots, *verbose)
		if err != nil {
			fatal(fmt.Errorf("%s: %w", m, err))
		}
		sort.Float64s(lat)
		sort.Float64s(rest)
		var sum float64
		for _, l := range lat {
			sum += l
		}
		fmt.Printf("RESULT mode=%s n=%d p50_ms=%.1f p99_ms=%.1f mean_ms=%.1f max_ms=%.1f after_corpus_p50_ms=%.1f after_corpus_p99_ms=%.1f\n",
			m, len(lat), pct(lat, 50), pct(lat, 99), sum/float64(len(lat)), lat[len(lat)-1], pct(rest, 50), pct(rest, 99))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "votelatency:", err)
	os.Exit(1)
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// pct is the nearest-rank percentile of sorted xs.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(float64(len(xs))*p/100+0.999999) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

var builders = []config.Builder{{Name: "check", Steps: []config.Step{{Name: "check", Run: []string{"true"}}}}}

const buildersYAML = "  - name: check\n    steps:\n      - name: check\n        run: [\"true\"]\n"

func measure(mode, dir, tryd string, warm, votes, slots int, verbose bool) (lat, rest []float64, err error) {
	ctx := context.Background()
	log := logrus.New()
	log.SetOutput(io.Discard)
	var procLog io.Writer = io.Discard
	if verbose {
		log.SetOutput(os.Stderr)
		log.SetLevel(logrus.WarnLevel)
		procLog = os.Stderr
	}
	opts := trystack.Options{Dir: dir, Builders: builders, Log: log, ProcLog: procLog, WorkerSlots: slots}
	if mode == "procs" {
		if tryd == "" {
			return nil, nil, fmt.Errorf("-tryd is required")
		}
		opts.Tryd = tryd
	}
	s, err := trystack.Start(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()

	var mu sync.Mutex
	voted := map[int]time.Time{}
	// The vote leaves the simulator as two webhooks: ref-updated of the
	// change's meta ref, then comment-added. The first of them to arrive
	// is the start of the measurement.
	s.WebhookAt = func(body []byte) {
		at := time.Now()
		var ev struct {
			Type   string `json:"type"`
			Change struct {
				Number json.Number `json:"number"`
			} `json:"change"`
			Author    struct{ Username string } `json:"author"`
			Submitter struct{ Username string } `json:"submitter"`
			RefUpdate struct {
				RefName string `json:"refName"`
			} `json:"refUpdate"`
		}
		if json.Unmarshal(body, &ev) != nil {
			return
		}
		n := 0
		switch {
		case ev.Type == "comment-added" && ev.Author.Username == "reviewer":
			n, _ = strconv.Atoi(ev.Change.Number.String())
		case ev.Type == "ref-updated" && ev.Submitter.Username == "reviewer" && strings.HasSuffix(ev.RefUpdate.RefName, "/meta"):
			parts := strings.Split(ev.RefUpdate.RefName, "/")
			if len(parts) == 5 {
				n, _ = strconv.Atoi(parts[3])
			}
		}
		if n == 0 {
			return
		}
		mu.Lock()
		if _, ok := voted[n]; !ok {
			voted[n] = at
		}
		mu.Unlock()
	}

	// inCorpus records when each vote became visible in the corpus (the
	// leader's copy), to split the latency into ingestion and the rest.
	inCorpus := map[int]time.Time{}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		var last uint64
		for {
			v, changed := s.Corpus.Watch()
			if v == last {
				select {
				case <-wctx.Done():
					return
				case <-changed:
				}
				continue
			}
			last = v
			at := time.Now()
			mu.Lock()
			var pending []int
			for n := range voted {
				if _, ok := inCorpus[n]; !ok {
					pending = append(pending, n)
				}
			}
			mu.Unlock()
			s.Corpus.RLock()
			p := s.Corpus.GerritProject(s.CorpusProject())
			var seen []int
			for _, n := range pending {
				if p != nil {
					if ch := p.Change(int32(n)); ch != nil && ch.HasVote("Run-TryBot", 1) {
						seen = append(seen, n)
					}
				}
			}
			s.Corpus.RUnlock()
			mu.Lock()
			for _, n := range seen {
				inCorpus[n] = at
			}
			mu.Unlock()
		}
	}()

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	switch mode {
	case "inproc", "poll":
		to := s.TrybotOptions(filepath.Join(dir, "trybot"))
		to.Log = log
		if mode == "poll" {
			to.PollInterval = time.Second
		}
		tb, err := trybot.New(tctx, to)
		if err != nil {
			return nil, nil, err
		}
		defer tb.Close()
		done := make(chan struct{})
		go func() { tb.Run(tctx); close(done) }()
		defer func() { cancel(); <-done }()
	case "procs":
		if _, err := s.StartTrybotProcess(tctx, dir, buildersYAML); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("unknown mode %q", mode)
	}

	cc := s.Client()
	gm, err := gmclient.New(s.GitmirrorURL, nil)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < warm+votes; i++ {
		n, _, err := s.Gerrit.CreateChange(ctx, s.Project, "main", s.Owner, fmt.Sprintf("change %d", i), map[string]string{"f.txt": strconv.Itoa(i)})
		if err != nil {
			return nil, nil, err
		}
		if err := s.Gerrit.Flush(ctx); err != nil {
			return nil, nil, err
		}
		// A reviewer votes after the upload was mirrored (gitmirror
		// fetches on the upload's event, seconds before any vote).
		if err := waitMirrored(ctx, gm, s.Project, n); err != nil {
			return nil, nil, err
		}
		if err := s.Gerrit.Vote(ctx, n, 1, s.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
			return nil, nil, err
		}
		b, err := waitBuild(ctx, cc, n)
		if err != nil {
			return nil, nil, err
		}
		mu.Lock()
		t0, ok := voted[n]
		mu.Unlock()
		if !ok {
			return nil, nil, fmt.Errorf("change %d: vote webhook not seen", n)
		}
		var first time.Time
		for _, j := range b.Jobs {
			if j.Started != nil && (first.IsZero() || j.Started.Before(first)) {
				first = *j.Started
			}
		}
		if first.IsZero() {
			return nil, nil, fmt.Errorf("change %d: build %d has no started job", n, b.ID)
		}
		ms := float64(first.Sub(t0).Microseconds()) / 1000
		if verbose {
			fmt.Fprintf(os.Stderr, "%s change %d: %.1f ms (build created +%.1f ms)\n", mode, n, ms, float64(b.Created.Sub(t0).Microseconds())/1000)
		}
		mu.Lock()
		t1, ok1 := inCorpus[n]
		mu.Unlock()
		if i >= warm {
			lat = append(lat, ms)
			if ok1 {
				rest = append(rest, float64(first.Sub(t1).Microseconds())/1000)
			}
		}
		// Let the run post its result, so that the next vote meets an
		// idle trybot and worker.
		if err := waitResult(ctx, s, n); err != nil {
			return nil, nil, err
		}
	}
	return lat, rest, nil
}

// waitMirrored waits until gitmirror has change n's patch set 1.
func waitMirrored(ctx context.Context, gm *gmclient.Client, repo string, n int) error {
	ref := fmt.Sprintf("refs/changes/%02d/%d/1", n%100, n)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		refs, err := gm.Refs(ctx, repo, ref)
		if err == nil && refs[ref] != "" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("gitmirror did not get %s within 30s", ref)
}

// waitResult waits until the corpus shows the trybot's TryBot-Result on
// change n.
func waitResult(ctx context.Context, s *trystack.Stack, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s.Corpus.RLock()
		done := false
		if p := s.Corpus.GerritProject(s.CorpusProject()); p != nil {
			if ch := p.Change(int32(n)); ch != nil {
				done = ch.Vote(1, "TryBot-Result", int32(s.Bot)) != 0
			}
		}
		s.Corpus.RUnlock()
		if done {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("change %d: no TryBot-Result within 30s", n)
}

// waitBuild waits for change n's build and for it to finish.
func waitBuild(ctx context.Context, cc *api.Client, n int) (*api.Build, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		bs, err := cc.Builds(ctx, api.ListOptions{Labels: map[string]string{"change": strconv.Itoa(n)}, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(bs) > 0 {
			return cc.Wait(ctx, bs[0].ID, nil)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("change %d: no build after 60s", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
