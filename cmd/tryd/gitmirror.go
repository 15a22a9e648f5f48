package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tryd-ci/tryd/gitmirror"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
)

func runGitmirror(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("gitmirror", "[flags]", `Gitmirror keeps bare mirrors of every configured repository and serves any
revision to workers as a tarball or over read-only git smart HTTP.

Endpoints: GET /<repo>.tar.gz?rev=<rev>, GET /<repo>/refs, POST /<repo>/nudge,
git smart HTTP at /<repo>.git, GET /debug. Mirrors live under
<data-dir>/gitmirror.

With gitmirror.token or gitmirror.tokens in the config (or --tokens-file),
every request but /healthz and /metrics must carry one of the tokens, as
"Authorization: Bearer TOKEN" or as the password of basic auth. Without a
token it serves anyone who can reach it: it listens on loopback by default;
set listen: ":8083" only behind a network boundary, with a token.`)
	listen := fs.String("listen", "", "address to serve HTTP on (default: gitmirror.listen from the config, else "+defaultGitmirrorListen+")")
	tokensFile := fs.String("tokens-file", "", "file of accepted tokens, one per line (default: gitmirror.tokens and gitmirror.token from the config)")
	pubsub := fs.String("pubsubhelper", "", "base URL of a pubsubhelper to follow for nudges (default: pubsubhelper.url from the config; \"off\" disables)")
	pubsubToken := fs.String("pubsubhelper-token", "", "subscriber token for --pubsubhelper, file:/path or env:NAME (default: pubsubhelper.subscriber_token from the config)")
	poll := fs.Duration("poll", 0, "period of safety-net fetches (default: gitmirror.poll from the config, else 5m; negative disables)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	gc := a.cfg.Gitmirror
	if *listen == "" {
		*listen = gc.Listen
	}
	if *listen == "" {
		*listen = defaultGitmirrorListen
	}
	if *pubsub == "" {
		*pubsub = a.cfg.Pubsubhelper.URL
	}
	if *pubsub == "off" {
		*pubsub = ""
	}
	if *poll == 0 {
		*poll = gc.Poll.Or(5 * time.Minute)
	}
	repos, err := gitmirrorRepos(a.cfg)
	if err != nil {
		return err
	}
	dir, err := a.subdir("gitmirror")
	if err != nil {
		return err
	}
	tokens, err := gitmirrorTokens(*tokensFile, gc)
	if err != nil {
		return err
	}
	// The subscription sends pubsubhelper's subscriber token, if any.
	var pubsubClient *http.Client
	if *pubsub != "" {
		token, err := pubsubhelperToken(*pubsubToken, a.cfg)
		if err != nil {
			return err
		}
		if token != "" {
			pubsubClient = &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}
		}
	}
	reg := httpserver.NewRegistry()
	log := logging.For(a.log, "gitmirror")
	m, err := gitmirror.New(gitmirror.Options{
		Dir:          dir,
		Repos:        repos,
		Poll:         *poll,
		CacheBytes:   gc.TarballCacheBytes,
		Pubsubhelper: *pubsub,
		HTTPClient:   pubsubClient,
		Tokens:       tokens,
		Log:          log,
		Registry:     reg,
	})
	if err != nil {
		return err
	}
	if len(tokens) == 0 && !loopbackListen(*listen) {
		log.WithField("listen", *listen).Warn("gitmirror serves without a token on a non-loopback address: anyone who can reach it can read the mirrors; set gitmirror.token")
	}
	srv, err := httpserver.New(httpserver.Options{
		Addr: *listen, Handler: m.Handler(), Component: "gitmirror",
		Log: a.log, Registry: reg, Health: m.Health,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx) })
	g.Go(func() error { return m.Run(ctx) })
	return g.Wait()
}

// gitmirrorRepos turns the configured repositories into gitmirror's,
// deriving clone URLs (and fetch credentials: a Gerrit account's HTTP
// password under /a/, a GitHub token) from their review servers. Secrets
// are read lazily, at each fetch or push, so rotated files are picked up.
func gitmirrorRepos(cfg *config.Config) ([]gitmirror.Repo, error) {
	if len(cfg.Repos) == 0 {
		return nil, errors.New("no repositories configured (repos: in tryd.yaml)")
	}
	gerrit := map[string]config.GerritServer{}
	for _, s := range cfg.Gerrit {
		gerrit[s.Name] = s
	}
	github := map[string]config.GitHubServer{}
	for _, s := range cfg.GitHub {
		github[s.Name] = s
	}
	var out []gitmirror.Repo
	for _, r := range cfg.Repos {
		gr := gitmirror.Repo{Name: r.Name, URL: r.URL, GerritProject: r.Project, GitHubSlug: r.Slug}
		// Credentials go only to URLs derived from the review server
		// they belong to, never to an explicitly configured URL.
		if gr.URL == "" {
			switch {
			case r.Gerrit != "":
				srv := gerrit[r.Gerrit]
				base := strings.TrimSuffix(srv.URL, "/")
				if srv.User != "" && srv.Password.IsSet() {
					// Gerrit serves authenticated git under /a/.
					base += "/a"
					user, pw := srv.User, srv.Password
					gr.FetchAuth = func() (string, string, error) {
						v, err := pw.Value()
						return user, v, err
					}
				}
				gr.URL = base + "/" + r.Project
			case r.GitHub != "":
				srv := github[r.GitHub]
				web, err := githubWebURL(srv.APIURL)
				if err != nil {
					return nil, fmt.Errorf("repo %s: %w", r.Name, err)
				}
				gr.URL = web + "/" + r.Slug + ".git"
				if srv.Token.IsSet() {
					tok := srv.Token
					gr.FetchAuth = func() (string, string, error) {
						v, err := tok.Value()
						return "x-access-token", v, err
					}
				}
			}
		}
		if pm := r.PushMirror; pm != nil {
			gr.Push = &gitmirror.PushMirror{URL: pm.URL, KnownHosts: pm.KnownHosts}
			if pm.Credentials.IsSet() {
				secret := pm.Credentials
				gr.Push.Credentials = secret.Value
			}
		}
		out = append(out, gr)
	}
	return out, nil
}

// githubWebURL derives the git host from a GitHub REST base URL:
// api.github.com serves github.com; GitHub Enterprise serves its API
// under /api/v3 on the git host.
func githubWebURL(api string) (string, error) {
	if api == "" {
		return "https://github.com", nil
	}
	u, err := url.Parse(api)
	if err != nil {
		return "", fmt.Errorf("github api_url: %w", err)
	}
	if u.Host == "api.github.com" {
		return "https://github.com", nil
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v3")
	u.RawQuery = ""
	return strings.TrimSuffix(u.String(), "/"), nil
}

// defaultGitmirrorListen is loopback: without a token the mirrors are
// open to whoever reaches the port.
const defaultGitmirrorListen = "127.0.0.1:8083"

// gitmirrorTokens returns the tokens gitmirror accepts: those of
// tokensFile (one per line) when given, else gitmirror.tokens and
// gitmirror.token of the config. None means no authentication.
func gitmirrorTokens(tokensFile string, gc config.Gitmirror) ([]string, error) {
	var tokens []string
	if tokensFile != "" {
		t, err := config.FileSecret(tokensFile).Lines()
		if err != nil {
			return nil, fmt.Errorf("gitmirror tokens: %w", err)
		}
		return t, nil
	}
	if gc.Tokens.IsSet() {
		t, err := gc.Tokens.Lines()
		if err != nil {
			return nil, fmt.Errorf("gitmirror.tokens: %w", err)
		}
		tokens = append(tokens, t...)
	}
	if gc.Token.IsSet() {
		t, err := gc.Token.Value()
		if err != nil {
			return nil, fmt.Errorf("gitmirror.token: %w", err)
		}
		tokens = append(tokens, t)
	}
	return tokens, nil
}

// gitmirrorClientToken returns the token a client of gitmirror sends:
// the content of tokenFile when given, else gitmirror.token; "" when
// neither is set.
func gitmirrorClientToken(tokenFile string, cfg *config.Config) (string, error) {
	t, err := secretOrFile(tokenFile, cfg.Gitmirror.Token)
	if err != nil {
		return "", fmt.Errorf("gitmirror token: %w", err)
	}
	return t, nil
}

// loopbackListen reports whether a listen address binds only loopback.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// gitmirrorCredentials returns the credential git needs to fetch from
// gitmirror at gmURL (postsubmit's history clones): the client token of
// tokenFile or gitmirror.token for URLs under gmURL; none when no token
// is configured.
func gitmirrorCredentials(gmURL, tokenFile string, cfg *config.Config) ([]gitexec.Credential, error) {
	token, err := gitmirrorClientToken(tokenFile, cfg)
	if err != nil || token == "" {
		return nil, err
	}
	return []gitexec.Credential{{URLPrefix: strings.TrimSuffix(gmURL, "/") + "/", Token: token}}, nil
}
