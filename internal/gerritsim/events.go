package gerritsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one event the simulator emits, with its JSON body exactly as
// POSTed to webhooks.
type Event struct {
	// Type is the event type, e.g. "patchset-created".
	Type string
	// Change is the change number, or 0 for events without a change.
	Change  int
	Project string
	Body    []byte
}

// JSON shapes of the webhooks plugin's deliveries (GSON of Gerrit's event
// objects). Field order follows the recorded deliveries.
type accountAttr struct {
	Name     string `json:"name,omitempty"`
	Email    string `json:"email,omitempty"`
	Username string `json:"username,omitempty"`
}

type patchSetAttr struct {
	Number         int         `json:"number"`
	Revision       string      `json:"revision"`
	Parents        []string    `json:"parents"`
	Ref            string      `json:"ref"`
	Uploader       accountAttr `json:"uploader"`
	CreatedOn      int64       `json:"createdOn"`
	Author         accountAttr `json:"author"`
	Kind           string      `json:"kind"`
	SizeInsertions int         `json:"sizeInsertions"`
	SizeDeletions  int         `json:"sizeDeletions"`
}

type changeAttr struct {
	Project       string      `json:"project"`
	Branch        string      `json:"branch"`
	Topic         string      `json:"topic,omitempty"`
	ID            string      `json:"id"`
	Number        int         `json:"number"`
	Subject       string      `json:"subject"`
	Owner         accountAttr `json:"owner"`
	URL           string      `json:"url"`
	CommitMessage string      `json:"commitMessage"`
	Hashtags      []string    `json:"hashtags,omitempty"`
	CreatedOn     int64       `json:"createdOn"`
	Status        string      `json:"status"`
	WIP           bool        `json:"wip,omitempty"`
}

type approvalAttr struct {
	Type        string  `json:"type"`
	Description string  `json:"description"`
	Value       string  `json:"value"`
	OldValue    *string `json:"oldValue,omitempty"`
}

type projectName struct {
	Name string `json:"name"`
}

type changeKey struct {
	Key string `json:"key"`
}

// changeEvent holds the fields every change event ends with.
type changeEvent struct {
	PatchSet       *patchSetAttr `json:"patchSet,omitempty"`
	Change         changeAttr    `json:"change"`
	Project        projectName   `json:"project"`
	RefName        string        `json:"refName"`
	ChangeKey      changeKey     `json:"changeKey"`
	Type           string        `json:"type"`
	EventCreatedOn int64         `json:"eventCreatedOn"`
}

type refUpdateAttr struct {
	OldRev  string `json:"oldRev"`
	NewRev  string `json:"newRev"`
	RefName string `json:"refName"`
	Project string `json:"project"`
}

func (s *Sim) accountAttrLocked(id int) accountAttr {
	a, ok := s.accounts[id]
	if !ok {
		return accountAttr{}
	}
	return accountAttr{Name: a.Name, Email: a.Email, Username: a.Username}
}

func (s *Sim) patchSetAttr(c *change, ps *patchSet) *patchSetAttr {
	return &patchSetAttr{
		Number: ps.number, Revision: ps.sha, Parents: []string{ps.parent}, Ref: psRef(c.number, ps.number),
		Uploader: s.accountAttrLocked(ps.uploader), CreatedOn: ps.created.Unix(),
		Author: s.accountAttrLocked(ps.uploader), Kind: ps.kind,
		SizeInsertions: ps.ins, SizeDeletions: ps.del,
	}
}

func (s *Sim) changeAttr(c *change) changeAttr {
	cur := c.patchSets[c.notes.CurrentPatchSet()]
	return changeAttr{
		Project: c.project.Name, Branch: c.branch, Topic: c.notes.Topic, ID: c.changeID, Number: c.number,
		Subject: c.notes.Subject, Owner: s.accountAttrLocked(c.notes.Owner),
		URL:           fmt.Sprintf("%sc/%s/+/%d", s.baseURL, c.project.Name, c.number),
		CommitMessage: cur.message, Hashtags: c.notes.Hashtags, CreatedOn: c.notes.Created.Unix(),
		Status: strings.ToUpper(c.notes.Status), WIP: c.notes.WorkInProgress,
	}
}

func (s *Sim) changeEvent(c *change, ps *patchSet, typ string, now time.Time) changeEvent {
	ev := changeEvent{
		Change: s.changeAttr(c), Project: projectName{c.project.Name},
		RefName: "refs/heads/" + c.branch, ChangeKey: changeKey{c.changeID}, Type: typ, EventCreatedOn: now.Unix(),
	}
	if ps != nil {
		ev.PatchSet = s.patchSetAttr(c, ps)
	}
	return ev
}

// event is a stream event about change c; body embeds changeEvent, whose
// type it takes.
func (c *change) event(typ string, body any) Event {
	return Event{Type: typ, Change: c.number, Project: c.project.Name, Body: mustJSON(body)}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the simulator's own structs are marshalled here.
		panic(fmt.Sprintf("gerritsim: marshal event: %v", err))
	}
	return b
}

func (s *Sim) patchsetCreatedEvent(c *change, ps *patchSet, up *Account, now time.Time) Event {
	body := struct {
		Uploader accountAttr `json:"uploader"`
		changeEvent
	}{s.accountAttrLocked(up.ID), s.changeEvent(c, ps, "patchset-created", now)}
	return c.event(body.Type, body)
}

func (s *Sim) commentAddedEvent(c *change, ps *patchSet, author *Account, approvals []approvalAttr, comment string, now time.Time) Event {
	body := struct {
		Author    accountAttr    `json:"author"`
		Approvals []approvalAttr `json:"approvals,omitempty"`
		Comment   string         `json:"comment"`
		changeEvent
	}{s.accountAttrLocked(author.ID), approvals, comment, s.changeEvent(c, ps, "comment-added", now)}
	return c.event(body.Type, body)
}

func (s *Sim) changeMergedEvent(c *change, ps *patchSet, submitter *Account, newRev string, now time.Time) Event {
	body := struct {
		Submitter accountAttr `json:"submitter"`
		NewRev    string      `json:"newRev"`
		changeEvent
	}{s.accountAttrLocked(submitter.ID), newRev, s.changeEvent(c, ps, "change-merged", now)}
	return c.event(body.Type, body)
}

func (s *Sim) abandonedEvent(c *change, ps *patchSet, who *Account, reason string, now time.Time) Event {
	body := struct {
		Abandoner accountAttr `json:"abandoner"`
		Reason    string      `json:"reason"`
		changeEvent
	}{s.accountAttrLocked(who.ID), reason, s.changeEvent(c, ps, "change-abandoned", now)}
	return c.event(body.Type, body)
}

func (s *Sim) restoredEvent(c *change, ps *patchSet, who *Account, reason string, now time.Time) Event {
	body := struct {
		Restorer accountAttr `json:"restorer"`
		Reason   string      `json:"reason,omitempty"`
		changeEvent
	}{s.accountAttrLocked(who.ID), reason, s.changeEvent(c, ps, "change-restored", now)}
	return c.event(body.Type, body)
}

func (s *Sim) hashtagsEvent(c *change, editor *Account, added, removed, all []string, now time.Time) Event {
	ev := s.changeEvent(c, nil, "hashtags-changed", now)
	body := struct {
		Editor   accountAttr `json:"editor"`
		Added    []string    `json:"added,omitempty"`
		Removed  []string    `json:"removed,omitempty"`
		Hashtags []string    `json:"hashtags"`
		changeEvent
	}{s.accountAttrLocked(editor.ID), added, removed, all, ev}
	return c.event(body.Type, body)
}

func (s *Sim) refUpdatedEvent(project string, r refUpdate, submitter int, now time.Time) Event {
	old := r.Old
	if old == "" {
		old = zeroSHA
	}
	body := struct {
		Submitter *accountAttr  `json:"submitter,omitempty"`
		RefUpdate refUpdateAttr `json:"refUpdate"`
		Type      string        `json:"type"`
		Created   int64         `json:"eventCreatedOn"`
	}{nil, refUpdateAttr{old, r.New, r.Ref, project}, "ref-updated", now.Unix()}
	if _, ok := s.accounts[submitter]; ok {
		a := s.accountAttrLocked(submitter)
		body.Submitter = &a
	}
	return Event{Type: "ref-updated", Project: project, Body: mustJSON(body)}
}

// emit queues an event for every matching webhook, keyed by change so that
// one change's deliveries stay in order. Called with s.mu held.
func (s *Sim) emit(c *change, ev Event) {
	if ev.Change == 0 {
		ev.Change = c.number
	}
	s.emitKey("change:"+strconv.Itoa(c.number), ev)
}

// emitKey queues an event for the webhooks; events with the same key are
// delivered in order. Called with s.mu held.
func (s *Sim) emitKey(key string, ev Event) {
	s.events = append(s.events, ev)
	if len(s.events) > maxEvents {
		s.events = append(s.events[:0:0], s.events[len(s.events)-maxEvents/2:]...)
	}
	if s.closed {
		return
	}
	for _, h := range s.hooks {
		if h.wants(ev.Type) {
			h.enqueue(s, key, ev)
		}
	}
}

// maxEvents bounds the event history kept for Events; the older half is
// dropped when it fills.
const maxEvents = 10000

// Events returns the events emitted so far (at most the latest maxEvents), oldest first, whether or not
// a webhook wanted it.
func (s *Sim) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Webhook is a remote that receives events, like a webhooks plugin
// remote.<name> section.
type Webhook struct {
	url           string
	events        map[string]bool
	maxTries      int
	retryInterval time.Duration

	mu      sync.Mutex
	drop    func(Event) bool
	queues  map[string][]Event
	running map[string]bool
	stats   WebhookStats
}

// WebhookStats counts a webhook's deliveries.
type WebhookStats struct {
	// Delivered events got a 2xx answer.
	Delivered int
	// Attempts counts every POST, retries included.
	Attempts int
	// Failed events were given up after MaxTries attempts.
	Failed int
	// Dropped events were discarded on purpose by the drop function.
	Dropped int
}

// AddWebhook registers url to receive the given event types (all when
// none are given). Deliveries retry WebhookMaxTries times,
// WebhookRetryInterval apart.
func (s *Sim) AddWebhook(url string, events ...string) *Webhook {
	h := &Webhook{url: url, events: map[string]bool{}, maxTries: s.opts.WebhookMaxTries, retryInterval: s.opts.WebhookRetryInterval,
		queues: map[string][]Event{}, running: map[string]bool{}}
	for _, e := range events {
		h.events[e] = true
	}
	s.mu.Lock()
	s.hooks = append(s.hooks, h)
	s.mu.Unlock()
	return h
}

// SetDrop installs a function that decides which events to discard
// instead of delivering (to simulate lost webhooks); nil delivers all.
func (h *Webhook) SetDrop(drop func(Event) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop = drop
}

// Stats returns the delivery counters.
func (h *Webhook) Stats() WebhookStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

func (h *Webhook) wants(typ string) bool { return len(h.events) == 0 || h.events[typ] }

func (h *Webhook) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.running) == 0
}

func (h *Webhook) enqueue(s *Sim, key string, ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queues[key] = append(h.queues[key], ev)
	if !h.running[key] {
		h.running[key] = true
		s.wg.Add(1)
		go h.run(s, key)
	}
}

func (h *Webhook) run(s *Sim, key string) {
	defer s.wg.Done()
	for {
		h.mu.Lock()
		q := h.queues[key]
		if len(q) == 0 {
			delete(h.queues, key)
			delete(h.running, key)
			h.mu.Unlock()
			return
		}
		ev := q[0]
		h.queues[key] = q[1:]
		drop := h.drop != nil && h.drop(ev)
		if drop {
			h.stats.Dropped++
		}
		h.mu.Unlock()
		if !drop {
			h.deliver(s, ev)
		}
	}
}

// deliver POSTs one event, retrying like the webhooks plugin.
func (h *Webhook) deliver(s *Sim, ev Event) {
	ctx := s.stopCtx
	origin := strings.TrimSuffix(s.URL(), "/")
	for try := 1; try <= h.maxTries; try++ {
		if try > 1 {
			t := time.NewTimer(h.retryInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		h.mu.Lock()
		h.stats.Attempts++
		h.mu.Unlock()
		err := post(ctx, s.opts.HTTPClient, h.url, origin, ev.Body)
		if err == nil {
			h.mu.Lock()
			h.stats.Delivered++
			h.mu.Unlock()
			return
		}
		s.log.WithError(err).WithField("event", ev.Type).WithField("try", try).Warn("gerritsim: webhook delivery failed")
		if ctx.Err() != nil {
			return
		}
	}
	h.mu.Lock()
	h.stats.Failed++
	h.mu.Unlock()
}

func post(ctx context.Context, client *http.Client, url, origin string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("X-Origin-Url", origin)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// Flush waits until every webhook has finished its queued deliveries
// (delivered, dropped or given up).
func (s *Sim) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		hooks := append([]*Webhook(nil), s.hooks...)
		s.mu.Unlock()
		idle := true
		for _, h := range hooks {
			if !h.idle() {
				idle = false
			}
		}
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gerritsim: flush webhooks: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
