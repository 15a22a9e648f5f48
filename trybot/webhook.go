package trybot

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"strings"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/trybot/client"
)

// A re-requested check run (or check suite) is known only to the GitHub
// App that created it, through the App's webhook: nothing of it reaches
// the corpus. The trybot therefore serves the App's webhook itself:
//
//	POST /github-app-webhook   X-Hub-Signature-256 verified with the
//	    webhook_secret of a configured GitHub server; check_run and
//	    check_suite "rerequested" start a run of the builders concerned
//	    on that head; every other event is acknowledged and ignored.
//
// The run is recorded before the 2xx, so an acknowledged request is
// never lost; a redelivery (same X-GitHub-Delivery) starts nothing more.

// maxWebhookBytes bounds a delivery (GitHub's limit is 25 MB).
const maxWebhookBytes = 25 << 20

func (t *Trybot) serveAppWebhook(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxWebhookBytes)
	var payload []byte
	var err error
	verified := false
	for _, s := range t.opts.Config.GitHub {
		secret, serr := webhookSecret(s)
		if serr != nil || secret == "" {
			continue
		}
		if payload == nil {
			payload, err = github.ValidatePayload(r, []byte(secret))
		} else {
			err = github.ValidateSignature(r.Header.Get(github.SHA256SignatureHeader), payload, []byte(secret))
		}
		if err == nil {
			verified = true
			break
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
	}
	if !verified {
		http.Error(w, "bad or missing signature", http.StatusUnauthorized)
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
	default:
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := t.rerequest(r.Context(), repo.GetFullName(), sender.GetLogin(), sha, builders, delivery); err != nil {
		t.log.WithError(err).Warn("trybot: re-request")
		code := http.StatusServiceUnavailable
		if errors.Is(err, client.ErrBadRequest) {
			code = http.StatusUnprocessableEntity
		}
		http.Error(w, err.Error(), code)
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
