package trybot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot/client"
)

// A re-requested check run (or check suite) is known only to the GitHub
// App that created it, through the App's webhook: nothing of it reaches
// the corpus. The trybot therefore serves the App's webhook itself:
//
//	POST /github-app-webhook   X-Hub-Signature-256 (required; the
//	    older SHA-1 X-Hub-Signature alone is refused) verified with the
//	    webhook_secret of any configured GitHub server; check_run and
//	    check_suite "rerequested" start a run of the builders concerned
//	    on that head; installation_repositories "added" makes the posts
//	    not reported for want of access to those repositories again
//	    (access.go), and so do installation "created" (using the new
//	    installation's ID from then on) and "unsuspend", while
//	    "deleted" and "suspend" mark the account's repositories out of
//	    reach; every other event is acknowledged and ignored.
//
// The run is recorded before the 2xx, so an acknowledged request is
// never lost; a redelivery (same X-GitHub-Delivery) starts nothing more.

// maxWebhookBytes bounds a delivery (GitHub's limit is 25 MB).
const maxWebhookBytes = 25 << 20

// DefaultWebhookBodyTimeout is how long a delivery's body may take to
// arrive when Options.WebhookBodyTimeout is zero. GitHub gives up on a
// delivery after 10 s; a sender trickling bytes must not hold a
// connection and a 25 MiB buffer for longer than that by much.
const DefaultWebhookBodyTimeout = 30 * time.Second

// webhookPreallocBytes bounds the buffer allocated from a delivery's
// declared Content-Length before any of it arrives: enough for the usual
// check_run event in one allocation, while a sender declaring 25 MiB and
// sending nothing costs little.
const webhookPreallocBytes = 256 << 10

// serveAppWebhook verifies, then handles, a delivery of the GitHub App's
// webhook. Everything that can be refused without the body (no signature,
// no secret configured, a declared size over the limit, a content type
// GitHub does not send) is refused before a byte of it is read, under a
// read deadline so that a stalled sender cannot hold the connection. The
// body is then read once and its signature checked against the webhook
// secret of every configured GitHub server, since several servers (or
// Apps) may send here.
func (t *Trybot) serveAppWebhook(w http.ResponseWriter, r *http.Request) {
	// Set before anything else: when the handler refuses a request
	// without reading it, net/http drains a small unread body before it
	// answers, and that drain must be bounded too. Not every
	// ResponseWriter supports deadlines (httptest's recorder does not);
	// the limit is then the server's.
	timeout := t.opts.WebhookBodyTimeout
	if timeout <= 0 {
		timeout = DefaultWebhookBodyTimeout
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	sig := r.Header.Get(github.SHA256SignatureHeader)
	if sig == "" {
		http.Error(w, "missing "+github.SHA256SignatureHeader, http.StatusUnauthorized)
		return
	}
	var secrets [][]byte
	for _, s := range t.opts.Config.GitHub {
		secret, err := webhookSecret(s)
		if err != nil {
			// A configured secret that cannot be read is the
			// operator's problem; log which server, never the value.
			t.log.WithError(err).WithField("github", s.Name).Warn("trybot: cannot read webhook secret")
			continue
		}
		if secret != "" {
			secrets = append(secrets, []byte(secret))
		}
	}
	if len(secrets) == 0 {
		http.Error(w, "no GitHub webhook secret is configured", http.StatusUnauthorized)
		return
	}
	if r.ContentLength > maxWebhookBytes {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	contentType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (contentType != "application/json" && contentType != "application/x-www-form-urlencoded") {
		http.Error(w, "unsupported Content-Type (want application/json or application/x-www-form-urlencoded)", http.StatusUnsupportedMediaType)
		return
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, webhookPreallocBytes)) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxWebhookBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	body := buf.Bytes()
	var secret []byte
	for _, s := range secrets {
		if github.ValidateSignature(sig, body, s) == nil {
			secret = s
			break
		}
	}
	if secret == nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	// The signature covers the raw body; the JSON payload is the body,
	// or its payload form field for a form-encoded delivery.
	payload, err := github.ValidatePayloadFromBody(contentType, bytes.NewReader(body), sig, secret)
	if err != nil {
		http.Error(w, "bad payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	delivery := r.Header.Get("X-GitHub-Delivery")
	ev, err := github.ParseWebHook(github.WebHookType(r), payload)
	if err != nil || delivery == "" {
		http.Error(w, "bad delivery: missing X-GitHub-Delivery or bad payload", http.StatusBadRequest)
		return
	}
	var repo *github.Repository
	var sender *github.User
	var sha string
	var builders []string
	switch e := ev.(type) {
	case *github.CheckRunEvent:
		if e.GetAction() != "rerequested" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		repo, sender, sha = e.GetRepo(), e.GetSender(), e.GetCheckRun().GetHeadSHA()
		b, ok := strings.CutPrefix(e.GetCheckRun().GetName(), "tryd/")
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		builders = []string{b}
	case *github.CheckSuiteEvent:
		if e.GetAction() != "rerequested" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		repo, sender, sha = e.GetRepo(), e.GetSender(), e.GetCheckSuite().GetHeadSHA()
	case *github.InstallationRepositoriesEvent:
		// The App was given access to repositories (again): report
		// what could not be reported there (see access.go).
		if e.GetAction() == "added" {
			for _, added := range e.RepositoriesAdded {
				for _, ri := range t.repos {
					if ri.review == client.ReviewGitHub && strings.EqualFold(ri.cfg.Slug, added.GetFullName()) {
						t.accessBack(ri, "installation_repositories added")
					}
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return
	case *github.InstallationEvent:
		t.installationEvent(e)
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := t.rerequest(r.Context(), repo.GetFullName(), sender.GetLogin(), sha, builders, delivery); err != nil {
		if errors.Is(err, client.ErrBadRequest) {
			t.log.WithError(err).Info("trybot: re-request refused")
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		// GitHub redelivers on 5xx. The cause (store, coordinator)
		// is logged, not shown.
		rid := newRequestID()
		w.Header().Set("X-Request-Id", rid)
		t.log.WithError(err).WithField("request_id", rid).Warn("trybot: re-request failed")
		http.Error(w, "the re-request could not be handled now; the trybot's log has the cause under request ID "+rid, http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func webhookSecret(s config.GitHubServer) (string, error) {
	if !s.WebhookSecret.IsSet() {
		return "", nil
	}
	return s.WebhookSecret.Value()
}

// rerequest starts a run on the open pull request whose head is sha, of
// builders (all of the latest request's when empty).
func (t *Trybot) rerequest(ctx context.Context, slug, login, sha string, builders []string, delivery string) error {
	t.mu.Lock()
	running := t.runCtx != nil && t.runCtx.Err() == nil
	t.mu.Unlock()
	if !running {
		return errors.New("trybot is not running")
	}
	var ri *repoInfo
	for _, x := range t.repos {
		if x.review == client.ReviewGitHub && strings.EqualFold(x.cfg.Slug, slug) {
			ri = x
		}
	}
	if ri == nil {
		return fmt.Errorf("repository %q is not configured: %w", slug, client.ErrBadRequest)
	}
	// The pull request is the one whose runs tested sha.
	runs, err := t.store.list(ctx, client.ListOptions{Review: client.ReviewGitHub, Repo: ri.cfg.Name, Limit: client.MaxLimit})
	if err != nil {
		return err
	}
	var last *client.Run
	for i := range runs {
		if runs[i].Revision == sha {
			last = &runs[i]
			break
		}
	}
	if last == nil {
		return fmt.Errorf("no try run of %s tested %s: %w", slug, sha, client.ErrBadRequest)
	}
	if len(builders) == 0 {
		builders = last.Builders
	}
	var unknown []string
	known := builders[:0:0]
	for _, b := range builders {
		if _, ok := t.builders.byName[b]; ok {
			known = append(known, b)
		} else {
			unknown = append(unknown, b)
		}
	}
	w := want{repo: ri, key: fmt.Sprintf("github/%s/%d/rerequest/%s", ri.cfg.Name, last.Change, delivery), perm: login,
		refusalKey: fmt.Sprintf("github/%s/%d/rerequest/%s/refused", ri.cfg.Name, last.Change, delivery), replyTo: last.Change,
		run: client.Run{Review: client.ReviewGitHub, Server: ri.github.name, Repo: ri.cfg.Name, Project: ri.cfg.Slug,
			Change: last.Change, Revision: sha, Branch: last.Branch, ChangeURL: last.ChangeURL,
			Trigger: "rerequest", RequestedBy: login, Builders: sortedTerms(known), Unknown: unknown}}
	return t.consider(ctx, w)
}

// installationEvent follows the App's installation on the account of
// the configured repositories (see access.go): a new installation's ID
// is used from now on for the account's repositories and, like an
// unsuspended one, makes the posts not reported for want of access again;
// a deleted or suspended one marks the account's repositories out of
// reach, so that their posts are not retried one by one. Installations
// on other accounts leave them alone.
func (t *Trybot) installationEvent(e *github.InstallationEvent) {
	inst := e.GetInstallation()
	action := e.GetAction()
	for _, ri := range t.repos {
		g := ri.github
		if ri.review != client.ReviewGitHub || g.insts == nil || (g.appID != 0 && inst.GetAppID() != 0 && inst.GetAppID() != g.appID) {
			continue
		}
		it := g.insts.Account(ri.owner)
		// The installation is the repository's when it is on its
		// owner's account, is the one found there, or lists it.
		ours := strings.EqualFold(ri.owner, inst.GetAccount().GetLogin()) || it.Found(inst.GetID()) ||
			slices.ContainsFunc(e.Repositories, func(r *github.Repository) bool { return strings.EqualFold(r.GetFullName(), ri.cfg.Slug) })
		if !ours {
			continue
		}
		log := t.log.WithFields(map[string]any{"repo": ri.cfg.Slug, "installation": inst.GetID(), "account": inst.GetAccount().GetLogin(), "action": action})
		switch action {
		case "created", "unsuspend", "new_permissions_accepted":
			if action == "created" && it.Use(inst.GetID()) {
				log.Warn("trybot: the GitHub App was installed again; using the new installation")
			}
			t.accessBack(ri, "installation "+action)
		case "deleted", "suspend":
			log.Warn("trybot: the GitHub App's installation was " + map[string]string{"deleted": "deleted", "suspend": "suspended"}[action] +
				"; results are not reported there until it is back")
			t.mu.Lock()
			t.noAccess[ri.cfg.Name] = "installation " + action
			t.mu.Unlock()
		}
	}
}
