package gitmirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxEventBody bounds one /waitevent response.
const maxEventBody = 1 << 20

// event is the part of pubsubhelper's x/build-compatible event JSON that
// gitmirror reads (see golang.org/x/build/cmd/pubsubhelper/pubsubtypes).
type event struct {
	// Time is when the event was received, or of the long-poll timeout;
	// it is the "after" of the next poll.
	Time            time.Time
	LongPollTimeout bool
	Gerrit          *gerritEvent
	GitHub          *gitHubEvent
}

type gerritEvent struct {
	URL          string
	Project      string
	CommitHash   string
	ChangeNumber int
}

type gitHubEvent struct {
	Action            string
	RepoOwner         string
	Repo              string
	IssueNumber       int
	PullRequestNumber int
}

// parseEvent decodes one event. A missing time is an error because the
// next poll could not continue from it.
func parseEvent(data []byte) (event, error) {
	var ev event
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&ev); err != nil {
		return event{}, fmt.Errorf("gitmirror: decode event: %w", err)
	}
	if ev.Time.IsZero() {
		return event{}, errors.New("gitmirror: decode event: no Time")
	}
	return ev, nil
}

// reposFor returns the repositories an event concerns: by GerritProject
// or GitHubSlug, or, for a repository with neither, by its Name (equal to
// the Gerrit project, to "owner/repo" or to "github.com/owner/repo").
func (m *Mirror) reposFor(ev event) []*repo {
	var out []*repo
	for _, r := range m.order {
		switch {
		case ev.Gerrit != nil && ev.Gerrit.Project != "":
			want := r.cfg.GerritProject
			if want == "" && r.cfg.GitHubSlug == "" {
				want = r.cfg.Name
			}
			if want == ev.Gerrit.Project {
				out = append(out, r)
			}
		case ev.GitHub != nil && ev.GitHub.RepoOwner != "" && ev.GitHub.Repo != "":
			slug := ev.GitHub.RepoOwner + "/" + ev.GitHub.Repo
			switch {
			case r.cfg.GitHubSlug != "":
				if strings.EqualFold(r.cfg.GitHubSlug, slug) {
					out = append(out, r)
				}
			case r.cfg.GerritProject == "":
				if strings.EqualFold(r.cfg.Name, slug) || strings.EqualFold(r.cfg.Name, "github.com/"+slug) {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// subscribe long-polls the pubsubhelper's GET /waitevent and nudges the
// repositories each event names, until ctx is cancelled. Errors back off
// exponentially between BackoffMin and BackoffMax.
func (m *Mirror) subscribe(ctx context.Context) {
	log := m.log.WithField("pubsubhelper", m.opts.Pubsubhelper)
	after := m.clock.Now()
	failures := 0
	for ctx.Err() == nil {
		ev, err := m.waitEvent(ctx, after)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := m.opts.BackoffMin
			for i := 1; i < failures && d < m.opts.BackoffMax; i++ {
				d *= 2
			}
			d = min(d, m.opts.BackoffMax)
			log.WithError(err).WithField("retry_in", d.String()).Warn("waitevent failed")
			select {
			case <-ctx.Done():
				return
			case <-m.clock.After(d):
			}
			continue
		}
		failures = 0
		after = ev.Time
		if ev.LongPollTimeout {
			continue
		}
		for _, r := range m.reposFor(ev) {
			r.log.Debug("nudged by pubsubhelper event")
			r.request()
		}
	}
}

func (m *Mirror) waitEvent(ctx context.Context, after time.Time) (event, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.LongPollTimeout)
	defer cancel()
	u := strings.TrimSuffix(m.opts.Pubsubhelper, "/") + "/waitevent?" + url.Values{"after": {after.UTC().Format(time.RFC3339Nano)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return event{}, fmt.Errorf("gitmirror: waitevent: %w", err)
	}
	resp, err := m.opts.HTTPClient.Do(req)
	if err != nil {
		return event{}, fmt.Errorf("gitmirror: waitevent: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBody))
	if err != nil {
		return event{}, fmt.Errorf("gitmirror: waitevent: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return event{}, fmt.Errorf("gitmirror: waitevent: %s", resp.Status)
	}
	return parseEvent(body)
}
