package trystack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/go-github/v60/github"
	"golang.org/x/build/maintner/maintpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/githubsim"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/trydpb"
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

	feeder *github.Client
	labels map[int32][]int64 // label ids the log has per issue
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
	g := &GitHub{Sim: sim, Owner: "org", Repo: "repo", Maintainer: "maintainer", Stranger: "stranger", labels: map[int32][]int64{}}
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
	hc := &http.Client{Transport: &tokenTransport{tok: tok}}
	if g.feeder, err = github.NewClient(hc).WithEnterpriseURLs(sim.APIURL(), sim.APIURL()); err != nil {
		return nil, err
	}
	m := &maintner.Mutation{Base: &maintpb.Mutation{Github: &maintpb.GithubMutation{Owner: g.Owner, Repo: g.Repo}},
		Ext: &trydpb.Ext{GithubRepo: &trydpb.GithubRepo{Owner: g.Owner, Repo: g.Repo, Id: 1, DefaultBranch: "main"}}}
	if err := s.Corpus.LogBatch(ctx, m); err != nil {
		return nil, err
	}
	s.github = g
	if _, err := sim.AddHook(ctx, g.Slug(), githubsim.HookOptions{URL: s.MaintnerdURL + "/github-webhook", Events: []string{"*"}}); err != nil {
		return nil, err
	}
	return g, nil
}

type tokenTransport struct{ tok string }

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "token "+t.tok)
	return http.DefaultTransport.RoundTrip(r)
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
	io.Copy(io.Discard, io.LimitReader(r.Body, 25<<20))
	if s.github == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if s.Mirror != nil {
		s.Mirror.Nudge("gh")
	}
	if err := s.SyncGitHub(r.Context()); err != nil {
		s.log.WithError(err).Warn("trystack: github corpus sync failed")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func ts(t github.Timestamp) *timestamppb.Timestamp { return timestamppb.New(t.Time) }

func ghUser(u *github.User) *maintpb.GithubUser {
	if u == nil {
		return nil
	}
	return &maintpb.GithubUser{Id: u.GetID(), Login: u.GetLogin()}
}

// SyncGitHub appends the current state of every pull request of the
// simulator's repository to the log (issue fields, labels, comments,
// events, head and base).
func (s *Stack) SyncGitHub(ctx context.Context) error {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	g := s.github
	c := g.feeder
	issues, _, err := c.Issues.ListByRepo(ctx, g.Owner, g.Repo, &github.IssueListByRepoOptions{State: "all", ListOptions: github.ListOptions{PerPage: 100}})
	if err != nil {
		return fmt.Errorf("list issues: %w", err)
	}
	var muts []*maintner.Mutation
	for _, is := range issues {
		if !is.IsPullRequest() {
			continue
		}
		n := is.GetNumber()
		pr, _, err := c.PullRequests.Get(ctx, g.Owner, g.Repo, n)
		if err != nil {
			return fmt.Errorf("get pull %d: %w", n, err)
		}
		comments, _, err := c.Issues.ListComments(ctx, g.Owner, g.Repo, n, &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}})
		if err != nil {
			return fmt.Errorf("comments of %d: %w", n, err)
		}
		events, _, err := c.Issues.ListIssueEvents(ctx, g.Owner, g.Repo, n, &github.ListOptions{PerPage: 100})
		if err != nil {
			return fmt.Errorf("events of %d: %w", n, err)
		}
		m := &maintpb.GithubIssueMutation{Owner: g.Owner, Repo: g.Repo, Number: int32(n), Id: is.GetID(), User: ghUser(is.User),
			Created: ts(is.GetCreatedAt()), Updated: ts(is.GetUpdatedAt()), Title: is.GetTitle(), PullRequest: true,
			Closed: &maintpb.BoolChange{Val: is.GetState() == "closed"}}
		var now []int64
		for _, l := range is.Labels {
			m.AddLabel = append(m.AddLabel, &maintpb.GithubLabel{Id: l.GetID(), Name: l.GetName()})
			now = append(now, l.GetID())
		}
		for _, id := range g.labels[int32(n)] {
			keep := false
			for _, x := range now {
				keep = keep || x == id
			}
			if !keep {
				m.RemoveLabel = append(m.RemoveLabel, id)
			}
		}
		g.labels[int32(n)] = now
		for _, cm := range comments {
			m.Comment = append(m.Comment, &maintpb.GithubIssueCommentMutation{Id: cm.GetID(), User: ghUser(cm.User), Body: cm.GetBody(),
				Created: ts(cm.GetCreatedAt()), Updated: ts(cm.GetUpdatedAt())})
		}
		for _, ev := range events {
			e := &maintpb.GithubIssueEvent{Id: ev.GetID(), EventType: ev.GetEvent(), ActorId: ev.GetActor().GetID(), Created: ts(ev.GetCreatedAt())}
			if ev.Label != nil {
				e.Label = &maintpb.GithubLabel{Name: ev.Label.GetName()}
			}
			m.Event = append(m.Event, e)
		}
		ext := &trydpb.Ext{GithubPullRequest: &trydpb.GithubPullRequest{Owner: g.Owner, Repo: g.Repo, Number: int32(n),
			HeadSha: pr.GetHead().GetSHA(), HeadRef: pr.GetHead().GetRef(), HeadRepo: g.Slug(), BaseSha: pr.GetBase().GetSHA(), BaseRef: pr.GetBase().GetRef(),
			Merged: &trydpb.BoolWrap{Val: pr.GetMerged()}, Draft: &trydpb.BoolWrap{Val: pr.GetDraft()}, Updated: ts(pr.GetUpdatedAt())}}
		muts = append(muts, &maintner.Mutation{Base: &maintpb.Mutation{GithubIssue: m}, Ext: ext})
	}
	if len(muts) == 0 {
		return nil
	}
	return s.Corpus.LogBatch(ctx, muts...)
}
