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
	"strconv"
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
	// Seq and JournalID are tryd's exact cursor (absent from x/build's
	// pubsubhelper): when both are known, the next poll also sends
	// afterseq and journal, so that events sharing a timestamp are not
	// skipped.
	Seq       int64
	JournalID string
}

// cursor is where the next /waitevent continues from.
type cursor struct {
	after     time.Time
	seq       int64
	journalID string
}

func (c cursor) query() url.Values {
	q := url.Values{"after": {c.after.UTC().Format(time.RFC3339Nano)}}
	if c.seq > 0 && c.journalID != "" {
		q.Set("afterseq", strconv.FormatInt(c.seq, 10))
		q.Set("journal", c.journalID)
	}
	return q
}

func (c *cursor) advance(ev event) {
	c.after = ev.Time
	c.seq, c.journalID = ev.Seq, ev.JournalID
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
	cur := cursor{after: m.clock.Now()}
	failures := 0
	for ctx.Err() == nil {
		ev, err := m.waitEvent(ctx, cur)
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
		cur.advance(ev)
		if ev.LongPollTimeout {
			continue
		}
		for _, r := range m.reposFor(ev) {
			r.log.Debug("nudged by pubsubhelper event")
			r.request()
		}
	}
}

func (m *Mirror) waitEvent(ctx context.Context, cur cursor) (event, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.LongPollTimeout)
	defer cancel()
	u := strings.TrimSuffix(m.opts.Pubsubhelper, "/") + "/waitevent?" + cur.query().Encode()
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
