package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/ingest"
	"github.com/tryd-ci/tryd/pubsubhelper/client"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// ingestion is maintnerd's ingestion: a GitHub syncer per configured
// GitHub server and a Gerrit syncer per Gerrit server, for the repos of
// tryd.yaml, fed by nudges (pubsubhelper events, or in-process calls in
// tryd dev) and by their own reconciliation passes.
type ingestion struct {
	log    logrus.FieldLogger
	github map[string]*ingest.GitHub // by server name
	gerrit map[string]*ingest.Gerrit // by server name
}

// newIngestion builds the syncers from a.cfg; it reads their secrets. A
// configuration without repos gives an ingestion with nothing to do.
func newIngestion(a *app, c *maintner.Corpus, reg *prometheus.Registry, log logrus.FieldLogger) (*ingestion, error) {
	in := &ingestion{log: log, github: map[string]*ingest.GitHub{}, gerrit: map[string]*ingest.Gerrit{}}
	ghRepos := map[string][]string{}
	gerritProjects := map[string][]string{}
	for _, r := range a.cfg.Repos {
		switch {
		case r.GitHub != "":
			ghRepos[r.GitHub] = append(ghRepos[r.GitHub], r.Slug)
		case r.Gerrit != "":
			gerritProjects[r.Gerrit] = append(gerritProjects[r.Gerrit], r.Project)
		}
	}
	for _, s := range a.cfg.GitHub {
		repos := ghRepos[s.Name]
		if len(repos) == 0 {
			continue
		}
		opts := ingest.GitHubOptions{Corpus: c, APIURL: s.APIURL, Repos: repos,
			Reconcile: a.cfg.Maintnerd.GitHubReconcile.Or(0), Logger: log.WithField("github", s.Name), Registry: reg}
		switch {
		case s.Token.IsSet():
			tok, err := s.Token.Value()
			if err != nil {
				return nil, fmt.Errorf("maintnerd: github %s token: %w", s.Name, err)
			}
			opts.Token = tok
		case s.AppKey.IsSet():
			key, err := s.AppKey.Value()
			if err != nil {
				return nil, fmt.Errorf("maintnerd: github %s app_key: %w", s.Name, err)
			}
			opts.App = &ingest.GitHubApp{AppID: s.AppID, InstallationID: s.InstallationID, KeyPEM: []byte(key)}
		default:
			log.WithField("github", s.Name).Warn("no token or app key: anonymous GitHub requests (60 an hour)")
		}
		g, err := ingest.NewGitHub(opts)
		if err != nil {
			return nil, fmt.Errorf("maintnerd: github %s: %w", s.Name, err)
		}
		in.github[s.Name] = g
	}
	for _, s := range a.cfg.Gerrit {
		projects := gerritProjects[s.Name]
		if len(projects) == 0 {
			continue
		}
		dir, err := a.subdir(filepath.Join("maintner", "gerrit", s.Name))
		if err != nil {
			return nil, err
		}
		opts := ingest.GerritOptions{Corpus: c, URL: s.URL, User: s.User, Projects: projects, Dir: dir,
			Reconcile: a.cfg.Maintnerd.GerritReconcile.Or(0), Logger: log.WithField("gerrit", s.Name), Registry: reg}
		if s.Password.IsSet() {
			pw, err := s.Password.Value()
			if err != nil {
				return nil, fmt.Errorf("maintnerd: gerrit %s password: %w", s.Name, err)
			}
			opts.Password = pw
		}
		g, err := ingest.NewGerrit(opts)
		if err != nil {
			return nil, fmt.Errorf("maintnerd: gerrit %s: %w", s.Name, err)
		}
		in.gerrit[s.Name] = g
	}
	return in, nil
}

// Run runs every syncer until ctx is done.
func (in *ingestion) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, g := range in.github {
		wg.Add(1)
		go func() { defer wg.Done(); g.Run(ctx) }()
	}
	for _, g := range in.gerrit {
		wg.Add(1)
		go func() { defer wg.Done(); g.Run(ctx) }()
	}
	wg.Wait()
}

// NudgeGitHub nudges the syncer that tracks repo "owner/name" (on the
// named server, or any when server is ""): issue in full, or with 0
// what changed in the repository.
func (in *ingestion) NudgeGitHub(server, repo string, issue int) error {
	err := fmt.Errorf("%w: GitHub %s", ingest.ErrUnknownTarget, repo)
	for name, g := range in.github {
		if server != "" && name != server {
			continue
		}
		if e := g.Nudge(repo, issue); e == nil {
			return nil
		}
	}
	return err
}

// NudgeGerrit nudges the syncer that tracks project (on the named
// server, or any): change, or with 0 its branches and tags.
func (in *ingestion) NudgeGerrit(server, project string, change int) error {
	err := fmt.Errorf("%w: Gerrit %s", ingest.ErrUnknownTarget, project)
	for name, g := range in.gerrit {
		if server != "" && name != server {
			continue
		}
		if e := g.Nudge(project, change); e == nil {
			return nil
		}
	}
	return err
}

// NudgeEvent turns a pubsubhelper event into a nudge: the GitHub issue
// or pull request it is about (the repository for pushes and other
// repository-wide events), or the Gerrit change (the project for ref
// updates of branches). Events for untracked repositories are ignored.
func (in *ingestion) NudgeEvent(ev *pubsubtypes.Event) {
	var err error
	switch {
	case ev.GitHub != nil:
		if ev.Type == "ping" || ev.GitHub.RepoOwner == "" || ev.GitHub.Repo == "" {
			return
		}
		n := ev.GitHub.PullRequestNumber
		if n == 0 {
			n = ev.GitHub.IssueNumber
		}
		err = in.NudgeGitHub(ev.Server, ev.GitHub.RepoOwner+"/"+ev.GitHub.Repo, n)
	case ev.Gerrit != nil:
		if ev.Gerrit.Project == "" {
			return
		}
		err = in.NudgeGerrit(ev.Server, ev.Gerrit.Project, ev.Gerrit.ChangeNumber)
	default:
		return
	}
	if err != nil {
		in.log.WithError(err).WithField("type", ev.Type).Debug("event for an untracked repository ignored")
	}
}

// Subscribe follows pubsubhelper at baseURL (with the subscriber token,
// if the server requires one) and nudges for every event, resuming after
// the last event handled (its cursor is kept in cursorPath), until ctx is
// done. Without a saved cursor it starts at the server's end: the
// syncers' first reconciliation covers the past.
func (in *ingestion) Subscribe(ctx context.Context, baseURL, token, cursorPath string) error {
	cl, err := client.New(baseURL, client.Options{Token: token})
	if err != nil {
		return err
	}
	cur := readCursor(cursorPath, in.log)
	var lastSave time.Time
	return cl.Subscribe(ctx, cur, pubsubtypes.Filter{}, client.SubscribeOptions{Log: in.log}, func(_ context.Context, ev *pubsubtypes.Event) error {
		in.NudgeEvent(ev)
		// The cursor is a hint (reconciliation repairs what a lost one
		// skips), so it is saved at most once a second, without fsync.
		if now := time.Now(); now.Sub(lastSave) >= time.Second {
			lastSave = now
			if err := writeCursor(cursorPath, ev.Cursor()); err != nil {
				in.log.WithError(err).Warn("cannot save the pubsubhelper cursor")
			}
		}
		return nil
	})
}

func readCursor(path string, log logrus.FieldLogger) pubsubtypes.Cursor {
	var cur pubsubtypes.Cursor
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.WithError(err).Warn("cannot read the pubsubhelper cursor; starting from new events")
		}
		return cur
	}
	if err := json.Unmarshal(b, &cur); err != nil {
		log.WithError(err).Warn("bad pubsubhelper cursor file; starting from new events")
		return pubsubtypes.Cursor{}
	}
	return cur
}

func writeCursor(path string, cur pubsubtypes.Cursor) error {
	b, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// trackedSummary describes what the ingestion tracks, for the log.
func (in *ingestion) trackedSummary() string {
	var parts []string
	for name := range in.github {
		parts = append(parts, "github:"+name)
	}
	for name := range in.gerrit {
		parts = append(parts, "gerrit:"+name)
	}
	if len(parts) == 0 {
		return "nothing (no repos in the config)"
	}
	return strings.Join(parts, ", ")
}
