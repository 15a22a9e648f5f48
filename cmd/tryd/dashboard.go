package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/dashboard"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/maintner/query"
	"github.com/tryd-ci/tryd/trybot"
	tbclient "github.com/tryd-ci/tryd/trybot/client"
)

func runDashboard(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("dashboard", "[flags]", `Dashboard serves the web UI: the build grid, try runs, builds, live logs
and workers, each also as JSON (?format=json).

It reads builds, logs and workers from the coordinator (--coordinator, with
the client token), try runs from the trybot (--trybot or trybot.url,
optional) and the corpus's repositories from maintnerd (--maintnerd or
maintnerd.url, optional), sending their API tokens when configured
(trybot.api_token, maintnerd.api_token).
With an admin token (dashboard.admin_token or --admin-token-file) and
builders in the config, signed-in admins can force builds.`)
	listen := fs.String("listen", "", "address to serve HTTP on (default: dashboard.listen from the config, else 127.0.0.1:8080; set listen: \":8080\" to serve every interface)")
	coord := fs.String("coordinator", "", "coordinator URL (default: coordinator.url from the config)")
	tokenFile := fs.String("coordinator-token-file", "", "file holding the coordinator's client token (default: coordinator.client_token from the config)")
	tb := fs.String("trybot", "", "trybot URL for try runs (default: trybot.url from the config; optional)")
	trybotTokenFile := fs.String("trybot-token-file", "", "file holding the trybot's try run API token (default: trybot.api_token from the config)")
	maintnerd := fs.String("maintnerd", "", "maintnerd URL for the corpus's repositories (default: maintnerd.url from the config; optional)")
	adminFile := fs.String("admin-token-file", "", "file holding the admin token that allows force builds (default: dashboard.admin_token from the config)")
	maintnerdTokenFile := fs.String("maintnerd-token-file", "", "file holding maintnerd's query API token (default: maintnerd.api_token from the config)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *listen == "" {
		*listen = a.cfg.Dashboard.Listen
	}
	if *listen == "" {
		*listen = "127.0.0.1:8080"
	}
	if *coord == "" {
		*coord = a.cfg.Coordinator.URL
	}
	if *coord == "" {
		return errors.New("dashboard: no coordinator URL (--coordinator or coordinator.url)")
	}
	if *maintnerd == "" {
		*maintnerd = a.cfg.Maintnerd.URL
	}
	if *tb == "" {
		*tb = a.cfg.Trybot.URL
	}
	token, err := secretOrFile(*tokenFile, a.cfg.Coordinator.ClientToken)
	if err != nil {
		return fmt.Errorf("dashboard: coordinator token: %w", err)
	}
	adminToken, err := secretOrFile(*adminFile, a.cfg.Dashboard.AdminToken)
	if err != nil {
		return fmt.Errorf("dashboard: admin token: %w", err)
	}
	opts := dashboard.Options{AdminToken: adminToken, Log: logging.For(a.log, "dashboard")}
	if opts.Coordinator, err = api.NewClient(*coord, token, nil); err != nil {
		return err
	}
	if *tb != "" {
		if opts.Trybot, err = tbclient.New(*tb, nil); err != nil {
			return err
		}
		tt, err := trybotAPIToken(*trybotTokenFile, a.cfg)
		if err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
		opts.Trybot = opts.Trybot.WithToken(tt)
	}
	if *maintnerd != "" {
		if opts.Query, err = query.NewClient(*maintnerd, nil); err != nil {
			return err
		}
		qt, err := maintnerdAPIToken(*maintnerdTokenFile, a.cfg)
		if err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
		opts.Query = opts.Query.WithToken(qt)
	}
	for _, r := range a.cfg.Repos {
		opts.Repos = append(opts.Repos, dashboard.Repo{Name: r.Name, Branches: r.Branches})
	}
	if len(a.cfg.Builders) > 0 {
		// Force builds stay in their trust domain: post-submit
		// labels, try labels for rebuilt try builds.
		b, err := trybot.NewBuilders(trybot.WithLabels(a.cfg.Builders, a.cfg.Trybot.PostSubmitLabels), a.cfg.Trybot.Aliases)
		if err != nil {
			return err
		}
		opts.Planner = b
		tb, err := trybot.NewBuilders(trybot.WithLabels(a.cfg.Builders, a.cfg.Trybot.TryLabels), a.cfg.Trybot.Aliases)
		if err != nil {
			return err
		}
		opts.TryPlanner = tb
	}
	if adminToken == "" {
		a.log.Info("dashboard: no admin token configured: force builds are off")
	}
	reg := httpserver.NewRegistry()
	opts.Registry = reg
	d, err := dashboard.New(opts)
	if err != nil {
		return err
	}
	srv, err := httpserver.New(httpserver.Options{Addr: *listen, Handler: d.Handler(), Component: "dashboard", Log: a.log, Registry: reg})
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}
