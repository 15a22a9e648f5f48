// Package trystack starts, on loopback, everything a try run needs around
// the trybot: a Gerrit simulator (and optionally a GitHub simulator), a
// corpus server (mutation log on disk, /logs) fed from the simulators'
// webhooks, gitmirror, a coordinator and workers, all real and talking
// HTTP. The trybot's tests and bench/vote-latency.sh use it.
//
// The corpus is fed by maintnerd's own ingestion (maintner/ingest: Gerrit
// through a git mirror of the NoteDb refs, GitHub through its REST API),
// nudged by every webhook of the simulators as pubsubhelper's events
// nudge it in a deployment.
package trystack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/gitmirror"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/ingest"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/trybot"
	"github.com/tryd-ci/tryd/worker"
)

// Options says what to start.
type Options struct {
	// Dir holds every component's files (required).
	Dir string
	// Git is the git executable (default "git").
	Git string
	// Log receives the components' logs (default: discarded).
	Log logrus.FieldLogger
	// Workers is how many in-process workers to start (default 1;
	// negative starts none, e.g. when workers run as processes).
	Workers int
	// WorkerSlots is each worker's slot count (default 2).
	WorkerSlots int
	// WorkerLabels are added to every worker's labels.
	WorkerLabels map[string]string
	// JobPath, if set, is a directory the in-process workers put first
	// on their jobs' PATH: one holding a tryd binary, for builders with
	// planner "go", whose planner job runs "tryd goplan" (a "tryd
	// worker" process puts its own executable there itself).
	JobPath string
	// Builders and Aliases go into the trybot's configuration.
	Builders []config.Builder
	Aliases  map[string][]string
	// PublicURL is the trybot's public_url (default
	// "https://tryd.example").
	PublicURL string
	// Tryd, if set, is a tryd binary: gitmirror, the coordinator and
	// the workers then run as their own processes ("tryd gitmirror",
	// "tryd coordinator", "tryd worker") instead of in this one.
	Tryd string
	// ProcLog receives the processes' stderr (default: discarded).
	ProcLog io.Writer
	// GitHub also starts a GitHub simulator (Stack.GitHub), with its
	// repository mirrored as "gh" (in-process stacks only).
	GitHub bool
}

// Stack is a running set of components. The exported fields are for
// tests to drive the simulators and to configure a trybot.
type Stack struct {
	opts Options
	log  logrus.FieldLogger

	Gerrit *gerritsim.Sim
	// Project is the Gerrit project "proj"; Owner uploads changes,
	// Reviewer votes, Bot is the trybot's account.
	Project                  string
	Owner, Reviewer, Bot     int
	BotUser, BotPasswordFile string

	// Corpus is the corpus server's corpus; LogsURL its /logs.
	Corpus  *maintner.Corpus
	LogsURL string
	// MaintnerdURL is the corpus server's base URL.
	MaintnerdURL string

	// GitHub is set when Options.GitHub asked for it.
	GitHub  *GitHub
	github  *GitHub
	appMu   sync.Mutex
	appHook http.Handler

	CoordinatorURL  string
	ClientToken     string
	ClientTokenFile string
	WorkerTokens    map[string]string
	Coord           *coordinator.Coordinator

	GitmirrorURL string
	Mirror       *gitmirror.Mirror

	mlog      *mutlog.Log
	ingGerrit *ingest.Gerrit

	// WebhookAt, if set, is called when a webhook reaches the corpus
	// feeder (before the corpus is updated).
	WebhookAt func(body []byte)

	cancel  context.CancelFunc
	rctx    context.Context // lives until Close
	wg      sync.WaitGroup
	closers []func()
}

func token() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start starts everything; Close stops it.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	if opts.Dir == "" {
		return nil, errors.New("trystack: Options.Dir is empty")
	}
	if opts.Git == "" {
		opts.Git = "git"
	}
	if p, err := exec.LookPath(opts.Git); err == nil {
		opts.Git, _ = filepath.Abs(p)
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Log = l
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.WorkerSlots <= 0 {
		opts.WorkerSlots = 2
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "https://tryd.example"
	}
	rctx, cancel := context.WithCancel(context.Background())
	s = &Stack{opts: opts, log: opts.Log, cancel: cancel, rctx: rctx, Project: "proj"}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	sub := func(name string) string {
		d := filepath.Join(opts.Dir, name)
		os.MkdirAll(d, 0o755)
		return d
	}

	// Corpus server.
	st, err := mutlog.NewDiskStore(sub("maintner"))
	if err != nil {
		return nil, err
	}
	s.mlog, err = mutlog.Open(ctx, mutlog.Options{Store: st})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { s.mlog.Close() })
	s.Corpus, err = maintner.New(maintner.Options{Appender: s.mlog})
	if err != nil {
		return nil, err
	}
	logs, err := logsync.NewHandler(logsync.HandlerOptions{Source: s.mlog, Path: "/logs"})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/logs", logs)
	mux.Handle("/logs/", logs)
	mux.HandleFunc("POST /gerrit-webhook", s.gerritWebhook)
	mux.HandleFunc("POST /github-webhook", s.githubWebhook)
	mux.HandleFunc("POST /github-app-webhook", s.appWebhook)
	msrv := httptest.NewServer(mux)
	s.closers = append(s.closers, msrv.Close)
	s.MaintnerdURL, s.LogsURL = msrv.URL, msrv.URL+"/logs"
	if opts.GitHub {
		if s.GitHub, err = s.startGitHub(ctx); err != nil {
			return nil, err
		}
	}

	// Gerrit.
	s.Gerrit, err = gerritsim.New(gerritsim.Options{Dir: sub("gerrit"), Git: opts.Git, WebhookRetryInterval: 20 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if err := s.Gerrit.Start(); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { s.Gerrit.Close() })
	if err := s.Gerrit.CreateProject(ctx, gerritsim.ProjectInput{Name: s.Project}); err != nil {
		return nil, err
	}
	mk := func(in gerritsim.AccountInput) int {
		if err != nil {
			return 0
		}
		var id int
		id, err = s.Gerrit.CreateAccount(in)
		return id
	}
	s.Owner = mk(gerritsim.AccountInput{Username: "owner", Name: "Olive Owner", Email: "owner@example.com", HTTPPassword: "owner-secret"})
	s.Reviewer = mk(gerritsim.AccountInput{Username: "reviewer", Name: "Rita Reviewer", Email: "reviewer@example.com", HTTPPassword: "reviewer-secret"})
	s.Bot = mk(gerritsim.AccountInput{Username: "bot", Name: "TryBot", Email: "bot@example.com", HTTPPassword: "bot-secret",
		Permissions: map[string]gerritsim.Range{"TryBot-Result": {Min: -1, Max: 1}}})
	if err != nil {
		return nil, err
	}
	s.ingGerrit, err = ingest.NewGerrit(ingest.GerritOptions{Corpus: s.Corpus, URL: s.Gerrit.URL(), Projects: []string{s.Project},
		Dir: sub("ingest-gerrit"), Git: opts.Git, Reconcile: time.Hour, Logger: opts.Log})
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.ingGerrit.Run(rctx) }()
	if s.GitHub != nil {
		if err := s.startGitHubIngest(); err != nil {
			return nil, err
		}
	}
	s.BotUser, s.BotPasswordFile = "bot", filepath.Join(opts.Dir, "gerrit-bot-password")
	if err := os.WriteFile(s.BotPasswordFile, []byte("bot-secret\n"), 0o600); err != nil {
		return nil, err
	}

	if opts.Tryd != "" {
		if err := s.startProcesses(ctx); err != nil {
			return nil, err
		}
		s.Gerrit.AddWebhook(s.MaintnerdURL + "/gerrit-webhook")
		if err := s.SyncGerrit(ctx); err != nil {
			return nil, err
		}
		return s, nil
	}

	// gitmirror.
	s.Mirror, err = gitmirror.New(gitmirror.Options{Dir: sub("gitmirror"), Git: opts.Git, Poll: -1, Log: opts.Log,
		Repos: s.mirrorRepos()})
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Mirror.Run(rctx) }()
	gsrv := httptest.NewServer(s.Mirror.Handler())
	s.closers = append(s.closers, gsrv.Close)
	s.GitmirrorURL = gsrv.URL

	// Coordinator.
	cdir := sub("coordinator")
	store, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(cdir, "state.db")})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { store.Close() })
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(cdir, "artifacts")})
	if err != nil {
		return nil, err
	}
	s.ClientToken = token()
	s.ClientTokenFile = filepath.Join(opts.Dir, "client-token")
	if err := os.WriteFile(s.ClientTokenFile, []byte(s.ClientToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	s.WorkerTokens = map[string]string{}
	for i := 1; i <= 4; i++ {
		s.WorkerTokens[fmt.Sprintf("w%d", i)] = token()
	}
	s.Coord, err = coordinator.New(ctx, coordinator.Options{Store: store, Artifacts: arts, Dir: cdir,
		WorkerTokens: s.WorkerTokens, ClientToken: s.ClientToken, HeartbeatTimeout: 5 * time.Second, Log: opts.Log})
	if err != nil {
		return nil, err
	}
	csrv := httptest.NewServer(s.Coord.Handler())
	s.closers = append(s.closers, csrv.Close, func() { s.Coord.Close() })
	s.CoordinatorURL = csrv.URL

	for i := 1; i <= opts.Workers && i <= 4; i++ {
		if err := s.StartWorker(fmt.Sprintf("w%d", i)); err != nil {
			return nil, err
		}
	}

	s.Gerrit.AddWebhook(s.MaintnerdURL + "/gerrit-webhook")
	if err := s.SyncGerrit(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) mirrorRepos() []gitmirror.Repo {
	repos := []gitmirror.Repo{{Name: s.Project, URL: s.Gerrit.GitURL(s.Project), GerritProject: s.Project}}
	if s.GitHub != nil {
		repos = append(repos, gitmirror.Repo{Name: "gh", URL: s.GitHub.Sim.GitURL(s.GitHub.Slug()), GitHubSlug: s.GitHub.Slug()})
	}
	return repos
}

// StartWorker starts an in-process worker with the token of name (w1..w4).
func (s *Stack) StartWorker(name string) error {
	cl, err := api.NewClient(s.CoordinatorURL, s.WorkerTokens[name], nil)
	if err != nil {
		return err
	}
	var env []string
	if s.opts.JobPath != "" {
		// The worker's default environment (PATH, HOME), the Go caches
		// (warm across jobs), and JobPath first on PATH.
		env = append(env, "PATH="+s.opts.JobPath+string(os.PathListSeparator)+os.Getenv("PATH"))
		for _, k := range []string{"HOME", "GOCACHE", "GOMODCACHE", "GOPATH"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	w, err := worker.New(worker.Options{Client: cl, Dir: filepath.Join(s.opts.Dir, "worker-"+name), Slots: s.opts.WorkerSlots,
		Labels: s.opts.WorkerLabels, Log: s.log, DrainTimeout: -1, MinBackoff: 20 * time.Millisecond, BaseEnv: env})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.closers = append(s.closers, cancel)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); w.Run(ctx) }()
	return nil
}

// Close stops everything.
func (s *Stack) Close() {
	s.cancel()
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.wg.Wait()
}

// Client returns a coordinator client with the client token.
func (s *Stack) Client() *api.Client {
	c, _ := api.NewClient(s.CoordinatorURL, s.ClientToken, nil)
	return c
}

// Config returns a tryd configuration for a trybot watching the stack's
// Gerrit project as repository "proj".
func (s *Stack) Config() *config.Config {
	return &config.Config{
		Gerrit:   []config.GerritServer{{Name: "sim", URL: s.Gerrit.URL(), User: s.BotUser, Password: config.FileSecret(s.BotPasswordFile)}},
		Repos:    []config.Repo{{Name: s.Project, Gerrit: "sim", Project: s.Project}},
		Builders: s.opts.Builders,
		Trybot:   config.Trybot{Aliases: s.opts.Aliases, PublicURL: s.opts.PublicURL},
	}
}

// TrybotOptions returns options for a trybot of the stack keeping its
// state in dir.
func (s *Stack) TrybotOptions(dir string) trybot.Options {
	gm, _ := gmclient.New(s.GitmirrorURL, nil)
	return trybot.Options{Config: s.Config(), LogsURL: s.LogsURL, Coordinator: s.Client(), Gitmirror: gm, Dir: dir,
		Log: s.log, RetryMin: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond}
}

// gerritWebhook receives the simulator's events: it nudges gitmirror and
// the corpus ingestion (as pubsubhelper's subscribers would) and answers
// at once.
func (s *Stack) gerritWebhook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if s.WebhookAt != nil {
		s.WebhookAt(body)
	}
	if s.Mirror != nil {
		s.Mirror.Nudge(s.Project)
	} else if gm, err := gmclient.New(s.GitmirrorURL, nil); err == nil {
		go gm.Nudge(context.Background(), s.Project)
	}
	var ev struct {
		Change struct {
			Number json.Number `json:"number"`
		} `json:"change"`
		RefUpdate struct {
			RefName string `json:"refName"`
		} `json:"refUpdate"`
	}
	n := 0
	if json.Unmarshal(body, &ev) == nil {
		n, _ = strconv.Atoi(ev.Change.Number.String())
		if parts := strings.Split(ev.RefUpdate.RefName, "/"); n == 0 && len(parts) == 5 && parts[1] == "changes" {
			n, _ = strconv.Atoi(parts[3])
		}
	}
	if err := s.ingGerrit.Nudge(s.Project, n); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// CorpusProject is the Gerrit project's name in the corpus.
func (s *Stack) CorpusProject() string { return s.ingGerrit.CorpusName(s.Project) }

// SyncGerrit brings the corpus up to date with the simulator's project.
func (s *Stack) SyncGerrit(ctx context.Context) error {
	return s.ingGerrit.Sync(ctx, s.Project, 0)
}
