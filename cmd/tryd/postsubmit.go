package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/trybot"
	"github.com/tryd-ci/tryd/trybot/goplan"
	"github.com/tryd-ci/tryd/trybot/postsubmit"
)

// postsubmitFlags are the connection flags of "tryd postsubmit" and
// "tryd force".
type postsubmitFlags struct {
	coord, tokenFile, gitmirror *string
	gmTokenFile                 *string
	poll                        time.Duration
}

// newPostsubmit builds a postsubmit.Builder from the configuration: the
// configured repositories (sources and history from gitmirror), builders
// and their planners.
func newPostsubmit(a *app, f postsubmitFlags) (*postsubmit.Builder, *api.Client, error) {
	if *f.coord == "" {
		*f.coord = a.cfg.Coordinator.URL
	}
	if *f.gitmirror == "" {
		*f.gitmirror = a.cfg.Gitmirror.URL
	}
	switch {
	case *f.coord == "":
		return nil, nil, errors.New("no coordinator URL (--coordinator or coordinator.url)")
	case *f.gitmirror == "":
		return nil, nil, errors.New("no gitmirror URL (--gitmirror or gitmirror.url)")
	}
	token, err := secretOrFile(*f.tokenFile, a.cfg.Coordinator.ClientToken)
	if err != nil {
		return nil, nil, err
	}
	cc, err := api.NewClient(*f.coord, token, nil)
	if err != nil {
		return nil, nil, err
	}
	gm, err := gmclient.New(*f.gitmirror, nil)
	if err != nil {
		return nil, nil, err
	}
	// Post-submit builds run trusted code in their own trust domain:
	// on workers with trybot.postsubmit_labels.
	builders := trybot.WithLabels(a.cfg.Builders, a.cfg.Trybot.PostSubmitLabels)
	plain, err := trybot.NewBuilders(builders, a.cfg.Trybot.Aliases)
	if err != nil {
		return nil, nil, err
	}
	// Builders with planner "go" get the per-package Go planner.
	planner := goplan.WithGoPlanner(builders, plain)
	var repos []postsubmit.Repo
	for _, r := range a.cfg.Repos {
		repos = append(repos, postsubmit.Repo{Name: r.Name, URL: gm.RepoURL(r.Name), Branches: r.Branches})
	}
	dir, err := a.subdir("postsubmit")
	if err != nil {
		return nil, nil, err
	}
	creds, err := gitmirrorCredentials(*f.gitmirror, *f.gmTokenFile, a.cfg)
	if err != nil {
		return nil, nil, err
	}
	b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: planner, Repos: repos, Builders: builders,
		Dir: dir, Credentials: creds, PollInterval: f.poll, Log: logging.For(a.log, "postsubmit")})
	return b, cc, err
}

func runPostsubmit(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("postsubmit", "[flags]", `Postsubmit builds every new commit of the configured repositories' watched
branches with their post_submit builders (oldest first, below try runs), runs
each builder's periodic builds on its cron schedule, and serves the force API
(POST /api/force with the dashboard's admin token) on --listen. Builds carry
the labels the dashboard's grid reads.`)
	f := postsubmitFlags{
		coord:       fs.String("coordinator", "", "coordinator URL (default: coordinator.url from the config)"),
		tokenFile:   fs.String("coordinator-token-file", "", "file holding the coordinator's client token (default: coordinator.client_token from the config)"),
		gitmirror:   fs.String("gitmirror", "", "gitmirror URL (default: gitmirror.url from the config)"),
		gmTokenFile: fs.String("gitmirror-token-file", "", "file holding the token gitmirror requires (default: gitmirror.token from the config)"),
	}
	listen := fs.String("listen", "127.0.0.1:8087", "address to serve the force API, /healthz and /metrics on (loopback by default)")
	adminFile := fs.String("admin-token-file", "", "file holding the admin token for force builds (default: dashboard.admin_token from the config)")
	poll := fs.Duration("poll", 5*time.Minute, "how often every watched branch is checked without an event")
	maintnerd := fs.String("maintnerd", "", "maintnerd's base URL: every batch of new corpus records (ref updates, pushes) triggers a check of the watched branches (default: maintnerd.url from the config; none: poll only)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	f.poll = *poll
	b, _, err := newPostsubmit(a, f)
	if err != nil {
		return err
	}
	admin, err := secretOrFile(*adminFile, a.cfg.Dashboard.AdminToken)
	if err != nil {
		return err
	}
	if admin == "" {
		a.log.Info("postsubmit: no admin token configured: the force API refuses every request")
	}
	reg := httpserver.NewRegistry()
	srv, err := httpserver.New(httpserver.Options{Addr: *listen, Handler: b.Handler(admin), Component: "postsubmit", Log: a.log, Registry: reg})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *maintnerd == "" {
		*maintnerd = a.cfg.Maintnerd.URL
	}
	if *maintnerd != "" {
		dir, err := a.subdir("postsubmit")
		if err != nil {
			return err
		}
		go followCorpus(ctx, a, strings.TrimSuffix(*maintnerd, "/")+"/logs", filepath.Join(dir, "logcache"), b.Nudge)
	}
	errc := make(chan error, 1)
	go func() {
		errc <- b.Run(ctx)
		cancel()
	}()
	serr := srv.Serve(ctx)
	cancel()
	return errors.Join(serr, <-errc)
}

// followCorpus follows maintnerd's log and calls nudge whenever it has
// caught up with new records: a ref update or push is in the corpus, and
// the watched branches are worth a look. It retries with backoff until ctx
// ends.
func followCorpus(ctx context.Context, a *app, logsURL, cacheDir string, nudge func()) {
	log := logging.For(a.log, "postsubmit")
	for delay := time.Second; ctx.Err() == nil; delay = min(2*delay, time.Minute) {
		f, err := logsync.NewFollower(logsync.FollowerOptions{URL: logsURL, CacheDir: cacheDir, Log: log,
			CaughtUp: func(mutlog.Position) { nudge() }})
		if err == nil {
			err = f.Run(ctx, mutlog.Position{}, func(mutlog.Position, []byte) error { return nil })
			f.Close()
		}
		if ctx.Err() != nil {
			return
		}
		log.WithError(err).Warn("following the corpus failed; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

func runForce(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("force", "--repo R --commit C --builder B [flags]", `Force builds one commit × builder again (post-submit priority, labelled
forced=1, shown in the dashboard's grid), reusing cached results of jobs that
passed, and by default waits for it.`)
	f := postsubmitFlags{
		coord:       fs.String("coordinator", "", "coordinator URL (default: coordinator.url from the config)"),
		tokenFile:   fs.String("coordinator-token-file", "", "file holding the coordinator's client token (default: coordinator.client_token from the config)"),
		gitmirror:   fs.String("gitmirror", "", "gitmirror URL (default: gitmirror.url from the config)"),
		gmTokenFile: fs.String("gitmirror-token-file", "", "file holding the token gitmirror requires (default: gitmirror.token from the config)"),
	}
	repo := fs.String("repo", "", "repository name (as configured)")
	commit := fs.String("commit", "", "full commit hash")
	builder := fs.String("builder", "", "builder name")
	branch := fs.String("branch", "", "branch whose grid shows the result (default: the commit's earlier builds', else the first watched branch)")
	wait := fs.Bool("wait", true, "wait for the build and fail when it fails")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *repo == "" || *commit == "" || *builder == "" {
		fmt.Fprintln(a.stderr, "tryd force: --repo, --commit and --builder are required")
		return errUsage
	}
	b, cc, err := newPostsubmit(a, f)
	if err != nil {
		return err
	}
	id, err := b.Force(ctx, postsubmit.ForceRequest{Repo: *repo, Revision: *commit, Builder: *builder, Branch: *branch})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "build %d\n", id)
	if !*wait {
		return nil
	}
	bl, err := cc.Wait(ctx, id, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "build %d %s\n", id, bl.State)
	if bl.State != api.BuildSucceeded {
		return fmt.Errorf("build %d %s", id, bl.State)
	}
	return nil
}
