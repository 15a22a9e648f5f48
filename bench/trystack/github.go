package trystack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/maintner/ingest"
)

// GitHub is the GitHub half of a stack: a simulator with repository
// Owner/Repo, a maintainer (write), a stranger (read) and the trybot's
// GitHub App.
type GitHub struct {
	Sim         *githubsim.Sim
	Owner, Repo string
	// Maintainer may start TryBots; Stranger may not.
	Maintainer, Stranger string
	// AppKeyFile holds the app's private key; AppID and InstallationID
	// identify it. TokenFile holds a user token (for commit statuses).
	AppKeyFile            string
	AppID, InstallationID int64
	TokenFile             string
	// WebhookSecretFile holds the secret of the App's webhook, whose
	// deliveries the stack passes to Stack.AppWebhook.
	WebhookSecretFile string

	feederToken string
	ing         *ingest.GitHub
}

// Slug is "owner/repo".
func (g *GitHub) Slug() string { return g.Owner + "/" + g.Repo }

// startGitHub starts the GitHub simulator with repository "org/repo"
// (mirrored by gitmirror as "gh") fed into the corpus on every webhook.
func (s *Stack) startGitHub(ctx context.Context) (*GitHub, error) {
	dir := filepath.Join(s.opts.Dir, "github")
	sim, err := githubsim.New(githubsim.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	if err := sim.Start(s.rctx, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { sim.Close() })
	g := &GitHub{Sim: sim, Owner: "org", Repo: "repo", Maintainer: "maintainer", Stranger: "stranger"}
	if err := sim.CreateRepo(ctx, g.Slug()); err != nil {
		return nil, err
	}
	if _, err := sim.Push(ctx, g.Slug(), "main", map[string]string{"README": "hello\n"}); err != nil {
		return nil, err
	}
	if _, err := sim.AddUser(g.Maintainer, githubsim.PermWrite); err != nil {
		return nil, err
	}
	if _, err := sim.AddUser(g.Stranger, githubsim.PermRead); err != nil {
		return nil, err
	}
	tok, err := sim.AddUser("feeder", githubsim.PermRead)
	if err != nil {
		return nil, err
	}
	botTok, err := sim.AddUser("statusbot", githubsim.PermWrite)
	if err != nil {
		return nil, err
	}
	g.TokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(g.TokenFile, []byte(botTok+"\n"), 0o600); err != nil {
		return nil, err
	}
	g.WebhookSecretFile = filepath.Join(dir, "app-webhook-secret")
	secret := token()
	if err := os.WriteFile(g.WebhookSecretFile, []byte(secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	if _, err := sim.AddApp(githubsim.AppOptions{Slug: "tryd", WebhookURL: s.MaintnerdURL + "/github-app-webhook", WebhookSecret: secret,
		Events: []string{"check_run", "check_suite"}}); err != nil {
		return nil, err
	}
	creds, err := sim.AppCredentials("tryd")
	if err != nil {
		return nil, err
	}
	g.AppID, g.InstallationID = creds.ID, creds.InstallationID
	g.AppKeyFile = filepath.Join(dir, "app.pem")
	if err := os.WriteFile(g.AppKeyFile, creds.PrivateKeyPEM, 0o600); err != nil {
		return nil, err
	}
	g.feederToken = tok
	s.github = g
	if _, err := sim.AddHook(ctx, g.Slug(), githubsim.HookOptions{URL: s.MaintnerdURL + "/github-webhook", Events: []string{"*"}}); err != nil {
		return nil, err
	}
	return g, nil
}

// GitHubConfig adds the GitHub server and repository "gh" to cfg; with
// app set the trybot authenticates as the App (check runs), else with a
// user token (commit statuses).
func (s *Stack) GitHubConfig(cfg *config.Config, app bool) {
	g := s.github
	srv := config.GitHubServer{Name: "ghsim", APIURL: g.Sim.APIURL(), WebhookSecret: config.FileSecret(g.WebhookSecretFile)}
	if app {
		srv.AppID, srv.InstallationID, srv.AppKey = g.AppID, g.InstallationID, config.FileSecret(g.AppKeyFile)
	} else {
		srv.Token = config.FileSecret(g.TokenFile)
	}
	cfg.GitHub = append(cfg.GitHub, srv)
	cfg.Repos = append(cfg.Repos, config.Repo{Name: "gh", GitHub: "ghsim", Slug: g.Slug()})
}

// appWebhook passes the App's deliveries to AppWebhook (the trybot).
func (s *Stack) appWebhook(w http.ResponseWriter, r *http.Request) {
	s.appMu.Lock()
	h := s.appHook
	s.appMu.Unlock()
	if h == nil {
		http.Error(w, "no app webhook receiver", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

// SetAppWebhook sets the receiver of the App's webhook deliveries.
func (s *Stack) SetAppWebhook(h http.Handler) {
	s.appMu.Lock()
	s.appHook = h
	s.appMu.Unlock()
}

func (s *Stack) githubWebhook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 25<<20))
	g := s.github
	if g == nil || g.ing == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if s.Mirror != nil {
		s.Mirror.Nudge("gh")
	}
	var ev struct {
		Number int `json:"number"`
		Issue  struct {
			Number int `json:"number"`
		} `json:"issue"`
	}
	json.Unmarshal(body, &ev)
	n := max(ev.Number, ev.Issue.Number)
	if err := g.ing.Nudge(g.Slug(), n); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Stack) startGitHubIngest() error {
	g := s.GitHub
	var err error
	g.ing, err = ingest.NewGitHub(ingest.GitHubOptions{Corpus: s.Corpus, APIURL: g.Sim.APIURL(), Token: g.feederToken,
		Repos: []string{g.Slug()}, Reconcile: time.Hour, Logger: s.log})
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); g.ing.Run(s.rctx) }()
	return nil
}

// SyncGitHub brings the corpus up to date with the simulator's repository.
func (s *Stack) SyncGitHub(ctx context.Context) error {
	return s.GitHub.ing.Sync(ctx, s.GitHub.Slug(), 0)
}
