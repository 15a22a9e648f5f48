// Command eventlatency is the measurement of bench/event-latency.sh: the
// time from a webhook leaving a simulator (GitHub or Gerrit) to the
// mutation it causes being delivered to a log follower. Everything runs
// in this process but talks over loopback HTTP, as the deployed
// components do:
//
//	githubsim, gerritsim ──webhook──▶ pubsubhelper (journal, fsync)
//	  ──/waitevent──▶ subscription ──Nudge──▶ maintner/ingest (REST, git)
//	  ──▶ corpus + disk log (fsync) ──/logs──▶ logsync follower
//
// Each event is a comment: on a GitHub pull request (issue_comment) or on
// a Gerrit change (comment-added), carrying a unique marker; the follower
// decodes every record it receives and notes when the marker shows up.
// Events are sent one at a time. The clock starts when the simulator's
// HTTP client sends the webhook and stops in the follower's callback.
//
// The baseline, measured on the same deliveries, is the webhook hop
// alone: the time until pubsubhelper acknowledges the delivery (after its
// fsync).
//
// With DEBUG=1 it also logs each Gerrit sync's phases and, per event,
// when the nudge and the corpus change happened.
//
// Output: one line per source and a total,
//
//	RESULT source=all n=300 lost=0 p50_ms=X p99_ms=Y ack_p50_ms=A ack_p99_ms=B
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/ingest"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/pubsubhelper"
	"github.com/tryd-ci/tryd/pubsubhelper/client"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

const (
	ghSecret     = "bench-github-secret"
	gerritSecret = "bench-gerrit-secret"
)

func main() {
	dir := flag.String("dir", "", "scratch directory (required)")
	n := flag.Int("n", 150, "events per source")
	flag.Parse()
	if *dir == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*dir, *n); err != nil {
		fmt.Fprintln(os.Stderr, "eventlatency:", err)
		os.Exit(1)
	}
}

// sendClock is the simulators' webhook transport: it notes when the first
// delivery (of the armed kind, if one is given) leaves after arm, and how
// long pubsubhelper takes to acknowledge it.
type sendClock struct {
	base http.RoundTripper
	mu   sync.Mutex
	kind string // event type to time: X-GitHub-Event or Gerrit's "type"
	sent time.Time
	ack  time.Duration
	done chan struct{}
}

func (s *sendClock) arm(kind string) {
	s.mu.Lock()
	s.kind, s.sent, s.ack, s.done = kind, time.Time{}, 0, make(chan struct{})
	s.mu.Unlock()
}

func (s *sendClock) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := req.Header.Get("X-GitHub-Event")
	if kind == "" && req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		var ev struct{ Type string }
		_ = json.Unmarshal(b, &ev)
		kind = ev.Type
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	start := time.Now()
	s.mu.Lock()
	timed := (s.kind == "" || kind == s.kind) && s.sent.IsZero() && s.done != nil
	if timed {
		s.sent = start
	}
	s.mu.Unlock()
	resp, err := s.base.RoundTrip(req)
	if timed {
		s.mu.Lock()
		s.ack = time.Since(start)
		close(s.done)
		s.mu.Unlock()
	}
	return resp, err
}

// debugMarks keeps the times of pipeline steps, for DEBUG=1 breakdowns.
type debugMarks struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

var dbg = &debugMarks{times: map[string][]time.Time{}}

func (d *debugMarks) mark(step string) {
	d.mu.Lock()
	d.times[step] = append(d.times[step], time.Now())
	d.mu.Unlock()
}

// first returns the first time step was marked after t.
func (d *debugMarks) first(step string, t time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range d.times[step] {
		if x.After(t) {
			return x
		}
	}
	return time.Time{}
}

// seen collects when the follower saw each marker.
type seen struct {
	mu   sync.Mutex
	at   map[string]time.Time
	wake chan struct{}
}

func (s *seen) note(payload []byte) {
	now := time.Now()
	m, err := maintner.UnmarshalMutation(payload)
	if err != nil {
		return
	}
	var texts []string
	if gi := m.Base.GetGithubIssue(); gi != nil {
		for _, c := range gi.GetComment() {
			texts = append(texts, c.GetBody())
		}
	}
	if g := m.Base.GetGerrit(); g != nil {
		for _, c := range g.GetCommits() {
			texts = append(texts, string(c.GetRaw()))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range texts {
		if i := strings.Index(t, "bench-marker-"); i >= 0 {
			key := t[i:]
			if j := strings.IndexAny(key, " \n"); j >= 0 {
				key = key[:j]
			}
			if _, ok := s.at[key]; !ok {
				s.at[key] = now
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (s *seen) wait(key string, timeout time.Duration) (time.Time, bool) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		t, ok := s.at[key]
		s.mu.Unlock()
		if ok {
			return t, true
		}
		select {
		case <-s.wake:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			return time.Time{}, false
		}
	}
}

func serve(ctx context.Context, h http.Handler, name string) (string, func(), error) {
	srv, err := httpserver.New(httpserver.Options{Handler: h, Component: name})
	if err != nil {
		return "", nil, err
	}
	if err := srv.Listen(); err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	return srv.URL(), func() { cancel(); <-done }, nil
}

func run(dir string, n int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	if os.Getenv("DEBUG") != "" {
		quiet.SetOutput(os.Stderr)
		quiet.SetLevel(logrus.DebugLevel)
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	// pubsubhelper with a durable journal.
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal")})
	if err != nil {
		return err
	}
	stops = append(stops, func() { j.Close() })
	ps, err := pubsubhelper.New(pubsubhelper.Options{Journal: j,
		GitHubSecrets:   []pubsubhelper.Secret{{Server: "github", Value: []byte(ghSecret)}},
		GerritSecrets:   []pubsubhelper.Secret{{Server: "review", Value: []byte(gerritSecret)}},
		OpenSubscribers: true}) // on loopback; the subscribers send no token
	if err != nil {
		return err
	}
	psURL, stop, err := serve(ctx, ps.Handler(), "pubsubhelper")
	if err != nil {
		return err
	}
	stops = append(stops, stop)

	// Simulators whose webhooks go through the timing transport.
	clock := &sendClock{base: http.DefaultTransport.(*http.Transport).Clone()}
	hc := &http.Client{Transport: clock, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	gh, err := githubsim.New(githubsim.Options{Dir: filepath.Join(dir, "github"), HTTPClient: hc})
	if err != nil {
		return err
	}
	if err := gh.Start(ctx, ""); err != nil {
		return err
	}
	stops = append(stops, func() { gh.Close() })
	tok, err := gh.AddUser("gopher", githubsim.PermAdmin)
	if err != nil {
		return err
	}
	const repo = "gopher/widget"
	if err := gh.CreateRepo(ctx, repo); err != nil {
		return err
	}
	if _, err := gh.Push(ctx, repo, "main", map[string]string{"go.mod": "module widget\n"}); err != nil {
		return err
	}
	if _, err := gh.AddHook(ctx, repo, githubsim.HookOptions{URL: psURL + "/github-webhook", Secret: ghSecret, Events: []string{"*"}}); err != nil {
		return err
	}
	pr, err := gh.OpenPR(ctx, repo, "gopher", githubsim.PROptions{Head: "fix", Title: "Fix it", Files: map[string]string{"fix.go": "package widget\n"}})
	if err != nil {
		return err
	}

	gs, err := gerritsim.New(gerritsim.Options{Dir: filepath.Join(dir, "gerrit"), HTTPClient: hc, WebhookRetryInterval: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	if err := gs.Start(); err != nil {
		return err
	}
	stops = append(stops, func() { gs.Close() })
	if err := gs.CreateProject(ctx, gerritsim.ProjectInput{Name: "proj"}); err != nil {
		return err
	}
	owner, err := gs.CreateAccount(gerritsim.AccountInput{Username: "owner", Email: "owner@example.com"})
	if err != nil {
		return err
	}
	reviewer, err := gs.CreateAccount(gerritsim.AccountInput{Username: "reviewer", Email: "reviewer@example.com"})
	if err != nil {
		return err
	}
	change, _, err := gs.CreateChange(ctx, "proj", "main", owner, "Add feature", map[string]string{"f.go": "package proj\n"})
	if err != nil {
		return err
	}
	hookURL, _ := url.Parse(psURL + "/gerrit-webhook")
	hookURL.User = url.UserPassword("gerrit", gerritSecret)
	gs.AddWebhook(hookURL.String())

	// maintnerd: disk log, corpus, /logs, ingestion nudged by a
	// pubsubhelper subscription.
	st, err := mutlog.NewDiskStore(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	lg, err := mutlog.Open(ctx, mutlog.Options{Store: st})
	if err != nil {
		return err
	}
	stops = append(stops, func() { lg.Close() })
	corpus, err := maintner.New(maintner.Options{Appender: lg})
	if err != nil {
		return err
	}
	logs, err := logsync.NewHandler(logsync.HandlerOptions{Source: lg, Path: "/logs"})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/logs", logs)
	mux.Handle("/logs/", logs)
	mdURL, stop, err := serve(ctx, mux, "maintnerd")
	if err != nil {
		return err
	}
	stops = append(stops, stop)
	ghs, err := ingest.NewGitHub(ingest.GitHubOptions{Corpus: corpus, APIURL: gh.APIURL(), Token: tok, Repos: []string{repo}, Logger: quiet})
	if err != nil {
		return err
	}
	gerr, err := ingest.NewGerrit(ingest.GerritOptions{Corpus: corpus, URL: gs.URL(), Projects: []string{"proj"}, Dir: filepath.Join(dir, "mirrors"), Logger: quiet})
	if err != nil {
		return err
	}
	ictx, icancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stops = append(stops, func() { icancel(); wg.Wait() })
	wg.Add(3)
	go func() { defer wg.Done(); ghs.Run(ictx) }()
	go func() { defer wg.Done(); gerr.Run(ictx) }()
	pc, err := client.New(psURL, client.Options{})
	if err != nil {
		return err
	}
	go func() {
		defer wg.Done()
		pc.Subscribe(ictx, pubsubtypes.Cursor{Time: pubsubtypes.Time(time.Now().Add(-time.Minute))}, pubsubtypes.Filter{}, client.SubscribeOptions{},
			func(_ context.Context, ev *pubsubtypes.Event) error {
				dbg.mark("nudge")
				switch {
				case ev.GitHub != nil && ev.GitHub.RepoOwner != "":
					num := ev.GitHub.PullRequestNumber
					if num == 0 {
						num = ev.GitHub.IssueNumber
					}
					ghs.Nudge(ev.GitHub.RepoOwner+"/"+ev.GitHub.Repo, num)
				case ev.Gerrit != nil && ev.Gerrit.Project != "":
					gerr.Nudge(ev.Gerrit.Project, ev.Gerrit.ChangeNumber)
				}
				return nil
			})
	}()

	// Debug breakdown: when the corpus last changed.
	go func() {
		for {
			_, ch := corpus.Watch()
			select {
			case <-ch:
				dbg.mark("corpus")
			case <-ictx.Done():
				return
			}
		}
	}()

	// The follower.
	fol, err := logsync.NewFollower(logsync.FollowerOptions{URL: mdURL + "/logs", CacheDir: filepath.Join(dir, "follower"), Log: quiet})
	if err != nil {
		return err
	}
	sn := &seen{at: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	fctx, fcancel := context.WithCancel(ctx)
	fdone := make(chan struct{})
	go func() {
		defer close(fdone)
		fol.Run(fctx, mutlog.Position{}, func(_ mutlog.Position, payload []byte) error { sn.note(payload); return nil })
	}()
	stops = append(stops, func() { fcancel(); <-fdone; fol.Close() })

	// Warm up: the first reconciliation passes and one event of each.
	deadline := time.Now().Add(time.Minute)
	for {
		corpus.RLock()
		r := corpus.GitHubRepo("gopher", "widget")
		p := corpus.GerritProject(gerr.CorpusName("proj"))
		ready := r != nil && r.Issue(int32(pr)) != nil && p != nil && p.Change(int32(change)) != nil
		corpus.RUnlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: the corpus did not get the repository and project")
		}
		time.Sleep(20 * time.Millisecond)
	}

	results := map[string][]sample{}
	lost := map[string]int{}
	// event times one action from its first webhook: a Gerrit comment
	// sends ref-updated (the meta ref moved) before comment-added.
	event := func(source string, i int, act func(marker string) error) error {
		marker := fmt.Sprintf("bench-marker-%s-%d", source, i)
		clock.arm("")
		if err := act(marker); err != nil {
			return err
		}
		at, ok := sn.wait(marker, 15*time.Second)
		clock.mu.Lock()
		done := clock.done
		clock.mu.Unlock()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
		clock.mu.Lock()
		sent, ack := clock.sent, clock.ack
		clock.mu.Unlock()
		if !ok || sent.IsZero() {
			lost[source]++
			return nil
		}
		if os.Getenv("DEBUG") != "" {
			nudge, corp := dbg.first("nudge", sent), dbg.first("corpus", sent)
			fmt.Fprintf(os.Stderr, "%s %d: total %v nudge %v corpus %v follower %v\n", source, i, at.Sub(sent).Round(time.Millisecond/10),
				nudge.Sub(sent).Round(time.Millisecond/10), corp.Sub(sent).Round(time.Millisecond/10), at.Sub(corp).Round(time.Millisecond/10))
		}
		if i >= 0 { // negative i: warm-up
			results[source] = append(results[source], sample{at.Sub(sent), ack})
		}
		return nil
	}
	ghAct := func(marker string) error {
		_, err := gh.Comment(ctx, repo, pr, "gopher", "comment "+marker)
		return err
	}
	gerritAct := func(marker string) error {
		return gs.Comment(ctx, change, 0, reviewer, "comment "+marker, "")
	}
	for i := -3; i < 0; i++ {
		if err := event("github", i, ghAct); err != nil {
			return err
		}
		if err := event("gerrit", i, gerritAct); err != nil {
			return err
		}
	}
	lost = map[string]int{}
	// A lost event costs its 15 s timeout: give up after a few, so that
	// the run stays within the benchmark's time budget (and fails).
	for i := 0; i < n && lost["github"]+lost["gerrit"] < 5; i++ {
		if err := event("github", i, ghAct); err != nil {
			return err
		}
		if err := event("gerrit", i, gerritAct); err != nil {
			return err
		}
	}
	var all []sample
	for _, src := range []string{"github", "gerrit"} {
		all = append(all, results[src]...)
		printResult(src, results[src], lost[src])
	}
	printResult("all", all, lost["github"]+lost["gerrit"])
	return nil
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(p * float64(len(ds)-1))
	return float64(ds[i].Microseconds()) / 1000
}

// sample is one event's latency to the follower and its webhook's
// acknowledgement time.
type sample struct{ lat, ack time.Duration }

func printResult(source string, ss []sample, lost int) {
	var lat, ack []time.Duration
	for _, s := range ss {
		lat = append(lat, s.lat)
		ack = append(ack, s.ack)
	}
	fmt.Printf("RESULT source=%s n=%d lost=%d p50_ms=%.1f p99_ms=%.1f ack_p50_ms=%.1f ack_p99_ms=%.1f\n",
		source, len(ss), lost, pct(lat, 0.5), pct(lat, 0.99), pct(ack, 0.5), pct(ack, 0.99))
}
