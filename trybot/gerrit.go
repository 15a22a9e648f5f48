package trybot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	gerrit "github.com/andygrunwald/go-gerrit"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/trybot/client"
)

// gerritServer is a configured Gerrit server and its REST client.
type gerritServer struct {
	name string
	url  string // with a trailing slash
	c    *gerrit.Client
}

func newGerritServer(ctx context.Context, s config.GerritServer, hc *http.Client) (*gerritServer, error) {
	u := strings.TrimSuffix(s.URL, "/") + "/"
	if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil {
		return nil, fmt.Errorf("trybot: gerrit server %s: bad URL %q (want http(s)://host/ without credentials)", s.Name, s.URL)
	}
	c, err := gerrit.NewClient(ctx, u, hc)
	if err != nil {
		return nil, fmt.Errorf("trybot: gerrit server %s: %w", s.Name, err)
	}
	if s.User != "" || s.Password.IsSet() {
		pw, err := s.Password.Value()
		if err != nil {
			return nil, fmt.Errorf("trybot: gerrit server %s: password: %w", s.Name, err)
		}
		c.Authentication.SetBasicAuth(s.User, pw)
	}
	return &gerritServer{name: s.Name, url: u, c: c}, nil
}

// gerritWants appends the try runs a Gerrit project asks for and records
// where each change stands. The caller holds the corpus's read lock.
func (t *Trybot) gerritWants(c *maintner.Corpus, ri *repoInfo, wants []want, cur map[string]current) []want {
	p := c.GerritProject(ri.corpusName)
	if p == nil {
		return wants
	}
	for _, ch := range p.Changes() {
		if ch.Err != "" || ch.CurrentPatchSet == 0 {
			continue
		}
		ps := ch.PatchSet(ch.CurrentPatchSet)
		if ps == nil {
			continue
		}
		ck := changeKey(ri.cfg.Name, ch.Number)
		cur[ck] = current{revision: ps.Commit.String(), open: ch.Status == "new", order: int64(ch.CurrentPatchSet)}
		if ch.Status != "new" {
			continue
		}
		var trig *maintner.GerritVote
		resulted := false
		for _, v := range ch.VotesOn(ch.CurrentPatchSet) {
			switch {
			case v.Label == t.result:
				resulted = true
			case v.Label == t.trigger && v.Value >= 1:
				if trig == nil || v.Granted < trig.Granted {
					v := v
					trig = &v
				}
			}
		}
		if trig == nil || resulted {
			continue
		}
		// The latest TRY= line, on any patch set, is the SlowBot
		// request in force.
		var terms []string
		for _, m := range ch.Messages {
			if s, ok := TryLine(m.Body); ok {
				terms = ParseTerms(s)
			}
		}
		builders, unknown := t.builders.Select(ri.cfg.Name, ch.Branch, terms)
		// The base is the patch set's first parent, when the corpus
		// has the commit (else the reporter asks Gerrit).
		base := ""
		if gc := p.Commit(ps.Commit); gc != nil && len(gc.Parents) > 0 {
			base = gc.Parents[0].String()
		}
		wants = append(wants, want{
			repo: ri,
			key:  fmt.Sprintf("gerrit/%s/%d/%d/%d", ri.cfg.Name, ch.Number, ch.CurrentPatchSet, int64(trig.Granted)),
			run: client.Run{
				Review: client.ReviewGerrit, Server: ri.gerrit.name, Repo: ri.cfg.Name, Project: ri.cfg.Project,
				Change: ch.Number, PatchSet: ch.CurrentPatchSet, Revision: ps.Commit.String(), Branch: ch.Branch, Base: base,
				ChangeURL: ri.gerrit.url + "c/" + ri.cfg.Project + "/+/" + strconv.Itoa(int(ch.Number)),
				Trigger:   "vote", RequestedBy: strconv.Itoa(int(trig.Account)),
				Builders: builders, Unknown: unknown,
			},
		})
	}
	return wants
}

// gerritReporter posts patch-set-level review messages.
type gerritReporter struct {
	t  *Trybot
	ri *repoInfo
}

func runMarker(id int64) string { return fmt.Sprintf("(try run #%d)", id) }

func (g *gerritReporter) changeID(r *client.Run) string {
	return url.PathEscape(r.Project) + "~" + strconv.Itoa(int(r.Change))
}

// find reports whether the change already has the trybot's message for
// run r whose first line starts with prefix.
func (g *gerritReporter) find(ctx context.Context, r *client.Run, prefix string) (bool, error) {
	info, resp, err := g.ri.gerrit.c.Changes.GetChangeDetail(ctx, g.changeID(r), nil)
	if err != nil {
		return false, fmt.Errorf("gerrit: get change %d: %w", r.Change, withStatus(err, gerritHTTP(resp)))
	}
	marker := runMarker(r.ID)
	for _, m := range info.Messages {
		if m.Tag != MessageTag || m.RevisionNumber != int(r.PatchSet) {
			continue
		}
		// Gerrit prefixes "Patch Set N:" (and the votes) to the message.
		body := m.Message
		if i := strings.Index(body, "\n\n"); i >= 0 && strings.HasPrefix(body, "Patch Set") {
			body = body[i+2:]
		}
		first, _, _ := strings.Cut(body, "\n")
		if strings.Contains(first, marker) && strings.HasPrefix(first, prefix) {
			return true, nil
		}
	}
	return false, nil
}

// gerritHTTP returns the HTTP response of a go-gerrit call, or nil.
func gerritHTTP(resp *gerrit.Response) *http.Response {
	if resp == nil {
		return nil
	}
	return resp.Response
}

func (g *gerritReporter) post(ctx context.Context, r *client.Run, prefix, msg string, labels map[string]int) error {
	found, err := g.find(ctx, r, prefix)
	if err != nil || found {
		return err
	}
	_, resp, err := g.ri.gerrit.c.Changes.SetReview(ctx, g.changeID(r), strconv.Itoa(int(r.PatchSet)), &gerrit.ReviewInput{
		Message: msg, Tag: MessageTag, Labels: labels,
	})
	if err != nil {
		return fmt.Errorf("gerrit: review change %d patch set %d: %w", r.Change, r.PatchSet, withStatus(err, gerritHTTP(resp)))
	}
	return nil
}

const beginPrefix = "TryBots beginning"

func (g *gerritReporter) begin(ctx context.Context, r *client.Run) (string, error) {
	msg := g.t.beginMessage(r)
	msg = strings.Replace(msg, beginPrefix+".", beginPrefix+" "+runMarker(r.ID)+".", 1)
	return "", g.post(ctx, r, beginPrefix, msg, nil)
}

func (g *gerritReporter) builderStarted(context.Context, *client.Run, int) (string, error) {
	return "", nil
}

func (g *gerritReporter) builderDone(context.Context, *client.Run, int) (string, error) {
	return "", nil
}

func (g *gerritReporter) result(ctx context.Context, r *client.Run) (string, error) {
	if r.Summary == "" {
		return "", errors.New("trybot: result without summary")
	}
	first, rest, _ := strings.Cut(r.Summary, "\n")
	msg := first + " " + runMarker(r.ID)
	if rest != "" {
		msg += "\n" + rest
	}
	// No vote for infrastructure failures, nor for pre-existing
	// failures only when trybot.preexisting_vote is 0.
	var labels map[string]int
	if v := g.t.vote(r); v != 0 {
		labels = map[string]int{g.t.result: v}
	}
	prefix, _, _ := strings.Cut(first, ":")
	prefix, _, _ = strings.Cut(prefix, ".")
	return "", g.post(ctx, r, prefix, msg, labels)
}

// base returns the patch set commit's first parent, from Gerrit.
func (g *gerritReporter) base(ctx context.Context, r *client.Run) (string, error) {
	ci, _, err := g.ri.gerrit.c.Changes.GetCommit(ctx, g.changeID(r), strconv.Itoa(int(r.PatchSet)), nil)
	if err != nil {
		return "", fmt.Errorf("gerrit: get commit of change %d patch set %d: %w", r.Change, r.PatchSet, err)
	}
	if len(ci.Parents) == 0 {
		return "", fmt.Errorf("%w: change %d patch set %d is a root commit", errNoBase, r.Change, r.PatchSet)
	}
	return ci.Parents[0].Commit, nil
}
