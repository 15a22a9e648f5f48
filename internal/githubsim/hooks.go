package githubsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Webhook deliveries, as GitHub's deliverer ("Hookshot") sends them:
//
//	POST <hook url>
//	Content-Type: application/json
//	User-Agent: GitHub-Hookshot/<hex>
//	X-GitHub-Event: <event>
//	X-GitHub-Delivery: <GUID>          (kept by redeliveries)
//	X-GitHub-Hook-ID: <hook id>
//	X-GitHub-Hook-Installation-Target-ID: <repository or app id>
//	X-GitHub-Hook-Installation-Target-Type: repository | integration
//	X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>       (only with a secret)
//	X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)> (only with a secret)

// hookshotVersion is the User-Agent suffix, a short hex build ID as
// GitHub sends.
const hookshotVersion = "7e1f0c3"

// Sign256 returns the X-Hub-Signature-256 value GitHub sends for body
// signed with secret: "sha256=" and the hex HMAC-SHA256.
func Sign256(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Sign1 returns the legacy X-Hub-Signature value: "sha1=" and the hex
// HMAC-SHA1.
func Sign1(secret, body []byte) string {
	m := hmac.New(sha1.New, secret)
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// Delivery is one attempt to deliver a webhook, as the delivery log
// records it.
type Delivery struct {
	// ID identifies this attempt (the REST delivery id); a redelivery
	// has a new ID and the same GUID.
	ID int64
	// GUID is the X-GitHub-Delivery header.
	GUID   string
	Event  string
	Action string
	HookID int64
	// Repo is "owner/name", or "" for a ping of an app hook.
	Repo       string
	Payload    []byte
	Redelivery bool
	// StatusCode is the receiver's answer, 0 if none (dropped or the
	// connection failed).
	StatusCode int
	// Dropped says the simulator dropped the attempt on purpose
	// (Options.Drop).
	Dropped bool
	// Err describes a failure to deliver.
	Err         string
	DeliveredAt time.Time
	Duration    time.Duration
	// Pending is true until the attempt has been made.
	Pending bool
}

type delivery struct {
	Delivery
	hook     *hook
	repoID   int64
	instID   int64 // the installation an app's delivery is for
	reqHdr   http.Header
	respHdr  http.Header
	respBody string
	done     chan struct{}
}

func (d *delivery) snapshot() Delivery {
	c := d.Delivery
	c.Payload = append([]byte(nil), d.Payload...)
	return c
}

// deliveryQueue is an unbounded FIFO feeding the single delivery
// goroutine, so deliveries leave in the order their events happened.
type deliveryQueue struct {
	mu     sync.Mutex
	items  []*delivery
	wake   chan struct{}
	closed bool
}

func (q *deliveryQueue) init() { q.wake = make(chan struct{}, 1) }

func (q *deliveryQueue) push(ds ...*delivery) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, ds...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *deliveryQueue) pop() (*delivery, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil, false
	}
	d := q.items[0]
	q.items = q.items[1:]
	return d, true
}

func (q *deliveryQueue) close() []*delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	left := q.items
	q.items = nil
	return left
}

func (s *Sim) deliverLoop(ctx context.Context) {
	for {
		for {
			d, ok := s.q.pop()
			if !ok {
				break
			}
			s.attempt(ctx, d)
		}
		select {
		case <-ctx.Done():
			for _, d := range s.q.close() {
				s.finish(d, 0, nil, "", "simulator closed", 0)
			}
			return
		case <-s.q.wake:
		}
	}
}

// attempt sends one delivery and records the result.
func (s *Sim) attempt(ctx context.Context, d *delivery) {
	if d.hook == nil { // a Flush marker
		close(d.done)
		return
	}
	s.mu.Lock()
	drop := s.drop
	snap := d.snapshot()
	s.mu.Unlock()
	if drop != nil && drop(snap) {
		s.mu.Lock()
		d.Dropped = true
		s.mu.Unlock()
		s.finish(d, 0, nil, "", "dropped by the simulator", 0)
		return
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.hook.url, bytes.NewReader(d.Payload))
	if err != nil {
		s.finish(d, 0, nil, "", err.Error(), 0)
		return
	}
	req.Header = d.reqHdr.Clone()
	resp, err := s.client.Do(req)
	dur := time.Since(start)
	if err != nil {
		s.log.WithError(err).WithField("guid", d.GUID).Debug("delivery failed")
		s.finish(d, 0, nil, "", err.Error(), dur)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	errText := ""
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		errText = "Invalid HTTP Response: " + strconv.Itoa(resp.StatusCode)
	}
	s.finish(d, resp.StatusCode, resp.Header, string(body), errText, dur)
}

func (s *Sim) finish(d *delivery, code int, hdr http.Header, body, errText string, dur time.Duration) {
	s.mu.Lock()
	d.StatusCode, d.respHdr, d.respBody, d.Err, d.Duration = code, hdr, body, errText, dur
	d.DeliveredAt = s.opts.Now()
	d.Pending = false
	if d.hook != nil {
		d.hook.lastRC = code
		if errText == "" {
			d.hook.lastSt = "active"
		} else {
			d.hook.lastSt = "failed"
		}
	}
	s.mu.Unlock()
	close(d.done)
}

// newDeliveryLocked records a delivery of body to h and returns it (not
// yet queued).
func (s *Sim) newDeliveryLocked(h *hook, r *repo, event, action, guid string, body []byte, redelivery bool) *delivery {
	d := &delivery{
		Delivery: Delivery{ID: s.newID(), GUID: guid, Event: event, Action: action, HookID: h.id,
			Payload: body, Redelivery: redelivery, Pending: true},
		hook: h, done: make(chan struct{}),
	}
	if r != nil {
		d.Repo = r.fullName()
		d.repoID = r.id
		if h.app != nil {
			d.instID = s.instLocked(h.app, r).id
		}
	}
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("User-Agent", "GitHub-Hookshot/"+hookshotVersion)
	hdr.Set("X-GitHub-Event", event)
	hdr.Set("X-GitHub-Delivery", guid)
	hdr.Set("X-GitHub-Hook-ID", strconv.FormatInt(h.id, 10))
	if h.app != nil {
		hdr.Set("X-GitHub-Hook-Installation-Target-ID", strconv.FormatInt(h.app.id, 10))
		hdr.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
	} else {
		hdr.Set("X-GitHub-Hook-Installation-Target-ID", strconv.FormatInt(h.repo.id, 10))
		hdr.Set("X-GitHub-Hook-Installation-Target-Type", "repository")
	}
	if len(h.secret) > 0 {
		hdr.Set("X-Hub-Signature", Sign1(h.secret, body))
		hdr.Set("X-Hub-Signature-256", Sign256(h.secret, body))
	}
	d.reqHdr = hdr
	s.delivery = append(s.delivery, d)
	return d
}

func newGUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

type wInstallation struct {
	ID     int64  `json:"id"`
	NodeID string `json:"node_id"`
}

// emitLocked queues event for every hook that should see it: r's
// repository hooks subscribed to it and the subscribed apps' hooks (for
// check_run and check_suite only the app that owns the run, as on
// GitHub). mk renders the payload; inst is non-nil for app deliveries.
func (s *Sim) emitLocked(r *repo, event, action string, owner *app, onlyApp bool, mk func(inst *wInstallation) any) []*delivery {
	var targets []*hook
	if !onlyApp {
		for _, h := range r.hooks {
			if h.wants(event) {
				targets = append(targets, h)
			}
		}
	}
	for _, a := range s.sortedApps() {
		if a.hook == nil || !a.hook.wants(event) {
			continue
		}
		if (event == "check_run" || event == "check_suite") && a != owner {
			continue
		}
		if onlyApp && a != owner {
			continue
		}
		if in := s.instLocked(a, r); in.excluded[r] || in.uninstalled || !in.suspended.IsZero() {
			continue // outside the installation, or none: its events are not the app's
		}
		targets = append(targets, a.hook)
	}
	var out []*delivery
	for _, h := range targets {
		var inst *wInstallation
		if h.app != nil {
			id := s.instLocked(h.app, r).id
			inst = &wInstallation{ID: id, NodeID: nodeID("Installation", id)}
		}
		body, err := json.Marshal(mk(inst))
		if err != nil {
			// The payload types are the simulator's own; failing to
			// marshal them is a bug, reported loudly in the log.
			s.log.WithError(err).Error("marshal webhook payload")
			continue
		}
		out = append(out, s.newDeliveryLocked(h, r, event, action, newGUID(), body, false))
	}
	return out
}

func (s *Sim) sortedApps() []*app {
	var as []*app
	for _, a := range s.apps {
		as = append(as, a)
	}
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].id < as[j-1].id; j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
	return as
}

// send queues deliveries and, unless Options.AsyncDelivery, waits for
// them.
func (s *Sim) send(ctx context.Context, ds []*delivery) error {
	if len(ds) == 0 {
		return nil
	}
	if !s.q.push(ds...) {
		return ErrClosed
	}
	if s.opts.AsyncDelivery {
		return nil
	}
	return waitAll(ctx, ds)
}

func waitAll(ctx context.Context, ds []*delivery) error {
	for _, d := range ds {
		select {
		case <-d.done:
		case <-ctx.Done():
			return fmt.Errorf("githubsim: wait for delivery %s: %w", d.GUID, ctx.Err())
		}
	}
	return nil
}

// Flush waits until every delivery queued so far has been attempted.
func (s *Sim) Flush(ctx context.Context) error {
	m := &delivery{done: make(chan struct{})}
	if !s.q.push(m) {
		return ErrClosed
	}
	return waitAll(ctx, []*delivery{m})
}

// SetDrop replaces Options.Drop: deliveries for which drop returns true
// are dropped (nil delivers everything).
func (s *Sim) SetDrop(drop func(Delivery) bool) {
	s.mu.Lock()
	s.drop = drop
	s.mu.Unlock()
}

// Deliveries returns the delivery log of the repository's hooks and of
// the apps' hooks for that repository ("" for all), oldest first.
func (s *Sim) Deliveries(fullName string) []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Delivery
	for _, d := range s.delivery {
		if fullName == "" || d.Repo == fullName {
			out = append(out, d.snapshot())
		}
	}
	return out
}

// Redeliver sends the delivery with the given GUID again to the same hook,
// with the same GUID, event and body (and so the same signature), as
// GitHub's "Redeliver" button, and waits for the attempt unless
// Options.AsyncDelivery. The new attempt is logged with Redelivery set.
func (s *Sim) Redeliver(ctx context.Context, guid string) error {
	s.mu.Lock()
	var orig *delivery
	for i := len(s.delivery) - 1; i >= 0; i-- {
		if s.delivery[i].GUID == guid {
			orig = s.delivery[i]
			break
		}
	}
	if orig == nil {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: redeliver %s: %w: delivery", guid, ErrNotFound)
	}
	d := s.redeliverLocked(orig)
	s.mu.Unlock()
	return s.send(ctx, []*delivery{d})
}

func (s *Sim) redeliverLocked(orig *delivery) *delivery {
	var r *repo
	if orig.Repo != "" {
		r = s.repos[orig.Repo]
	}
	d := s.newDeliveryLocked(orig.hook, r, orig.Event, orig.Action, orig.GUID, orig.Payload, true)
	d.instID = orig.instID // the installation the payload names
	return d
}

// HookOptions describes a repository webhook.
type HookOptions struct {
	// URL receives the POSTs.
	URL string
	// Secret signs deliveries (X-Hub-Signature-256); empty sends none.
	Secret string
	// Events to subscribe to; "*" is every event. Default ["push"], as
	// GitHub.
	Events []string
}

type wPing struct {
	Zen    string `json:"zen"`
	HookID int64  `json:"hook_id"`
	Hook   *wHook `json:"hook"`
	wEnvelope
}

// AddHook adds a webhook to a repository and sends it a ping, as GitHub
// does on creation. It returns the hook's ID.
func (s *Sim) AddHook(ctx context.Context, fullName string, o HookOptions) (int64, error) {
	id, d, err := s.addHook(fullName, o)
	if err != nil {
		return 0, err
	}
	return id, s.send(ctx, []*delivery{d})
}

// addHook creates the hook and its ping delivery (not yet queued).
func (s *Sim) addHook(fullName string, o HookOptions) (int64, *delivery, error) {
	if err := checkHookURL(o.URL); err != nil {
		return 0, nil, fmt.Errorf("githubsim: add hook to %s: %w", fullName, err)
	}
	if len(o.Events) == 0 {
		o.Events = []string{"push"}
	}
	s.mu.Lock()
	r, err := s.repoLocked(fullName)
	if err != nil {
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("githubsim: add hook: %w", err)
	}
	h := &hook{id: s.newID(), repo: r, url: o.URL, secret: []byte(o.Secret), events: append([]string{}, o.Events...), created: s.opts.Now(), lastSt: "unused"}
	r.hooks = append(r.hooks, h)
	s.hooks[h.id] = h
	body, err := json.Marshal(&wPing{Zen: "Keep it logically awesome.", HookID: h.id, Hook: s.wHookOf(h), wEnvelope: s.envelope(r, s.users[r.owner], nil)})
	if err != nil {
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("githubsim: add hook: %w", err)
	}
	d := s.newDeliveryLocked(h, r, "ping", "", newGUID(), body, false)
	s.mu.Unlock()
	return h.id, d, nil
}

// checkHookURL accepts absolute http(s) URLs, as GitHub does.
func checkHookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: hook url %q: want an absolute http or https URL", ErrInvalid, raw)
	}
	return nil
}
