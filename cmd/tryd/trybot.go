package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	gmclient "github.com/tryd-ci/tryd/gitmirror/client"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/trybot"
)

func runTrybot(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("trybot", "[flags]", `Trybot follows the corpus, starts try runs for Gerrit changes voted
Run-TryBot+1 and GitHub pull requests asked to run, and posts the results.

It follows maintnerd's log (--maintnerd), submits one graph per builder to
the coordinator (--coordinator, with the client token) for sources served
by gitmirror (--gitmirror), and serves the try run API (/api/runs) on
--listen, with the GitHub App's webhook (re-requested check runs) at
/github-app-webhook. Its state (runs and what was posted, the log cache)
lives under <data-dir>/trybot.

A failed build's jobs are run again (trybot.flaky_retries, default 1) and
compared with the change's base revision: each failure is reported as new,
pre-existing or flaky, and a run whose only failures are pre-existing votes
trybot.preexisting_vote (default 0: no vote).

The try run API (/api/runs) requires a bearer token when trybot.api_token
(or --api-token-file) is set; on a non-loopback address the trybot
refuses to start without one unless trybot.public_api (or --public-api)
says the API is meant to be public: runs name changes, repositories and
failure text, of private repositories too. The App webhook authenticates
by its signature; /healthz and /metrics stay open.`)
	listen := fs.String("listen", "127.0.0.1:8085", "address to serve HTTP on (loopback by default; \":8085\" to serve the App webhook and /api/runs on every interface)")
	maintnerd := fs.String("maintnerd", "", "maintnerd's base URL to follow (default: maintnerd.url from the config)")
	coord := fs.String("coordinator", "", "coordinator URL (default: coordinator.url from the config)")
	tokenFile := fs.String("coordinator-token-file", "", "file holding the coordinator's client token (default: coordinator.client_token from the config)")
	gitmirror := fs.String("gitmirror", "", "gitmirror URL (default: gitmirror.url from the config)")
	gmTokenFile := fs.String("gitmirror-token-file", "", "file holding the token gitmirror requires (default: gitmirror.token from the config)")
	apiTokenFile := fs.String("api-token-file", "", "file holding the bearer token the try run API (/api/runs) requires (default: trybot.api_token from the config)")
	publicAPI := fs.Bool("public-api", false, "serve the try run API without a token on a non-loopback address (default: trybot.public_api from the config)")
	poll := fs.Duration("poll", 0, "scan the corpus every interval instead of after each change (for comparison benchmarks only)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *maintnerd == "" {
		*maintnerd = a.cfg.Maintnerd.URL
	}
	if *coord == "" {
		*coord = a.cfg.Coordinator.URL
	}
	if *gitmirror == "" {
		*gitmirror = a.cfg.Gitmirror.URL
	}
	switch {
	case *maintnerd == "":
		return errors.New("no maintnerd URL (--maintnerd or maintnerd.url)")
	case *coord == "":
		return errors.New("no coordinator URL (--coordinator or coordinator.url)")
	case *gitmirror == "":
		return errors.New("no gitmirror URL (--gitmirror or gitmirror.url)")
	}
	apiToken, err := trybotAPIToken(*apiTokenFile, a.cfg)
	if err != nil {
		return err
	}
	if apiToken == "" && !*publicAPI && !a.cfg.Trybot.PublicAPI && !loopbackListen(*listen) {
		return fmt.Errorf("trybot: the try run API would be open to anyone on %s: set trybot.api_token (or --api-token-file), or trybot.public_api: true (or --public-api) if it is meant to be public", *listen)
	}
	var apiTokens []string
	if apiToken != "" {
		apiTokens = []string{apiToken}
	}
	token, err := secretOrFile(*tokenFile, a.cfg.Coordinator.ClientToken)
	if err != nil {
		return err
	}
	cc, err := api.NewClient(*coord, token, nil)
	if err != nil {
		return err
	}
	gm, err := gmclient.New(*gitmirror, nil)
	if err != nil {
		return err
	}
	if gmToken, err := gitmirrorClientToken(*gmTokenFile, a.cfg); err != nil {
		return err
	} else if gmToken != "" {
		gm = gm.WithToken(gmToken)
	}
	dir, err := a.subdir("trybot")
	if err != nil {
		return err
	}
	log := logging.For(a.log, "trybot")
	reg := httpserver.NewRegistry()
	tb, err := trybot.New(ctx, trybot.Options{
		Config: a.cfg, LogsURL: strings.TrimSuffix(*maintnerd, "/") + "/logs",
		Coordinator: cc, Gitmirror: gm, Dir: dir, PollInterval: *poll, APITokens: apiTokens,
		Log: log, Registry: reg, Now: time.Now,
	})
	if err != nil {
		return err
	}
	defer tb.Close()
	srv, err := httpserver.New(httpserver.Options{Addr: *listen, Handler: tb.Handler(), Component: "trybot", Log: a.log, Registry: reg})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- tb.Run(ctx)
		cancel() // a trybot that stopped must not keep serving
	}()
	serr := srv.Serve(ctx)
	cancel()
	rerr := <-errc
	return errors.Join(serr, rerr)
}

// trybotAPIToken returns the try run API's token, for the trybot and for
// its clients (dashboard): the content of tokenFile when given, else
// trybot.api_token; "" when neither is set.
func trybotAPIToken(tokenFile string, cfg *config.Config) (string, error) {
	t, err := secretOrFile(tokenFile, cfg.Trybot.APIToken)
	if err != nil {
		return "", fmt.Errorf("trybot api token: %w", err)
	}
	return t, nil
}
