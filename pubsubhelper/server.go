package pubsubhelper

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	// Aliased: the package's tests have a helper named bearer.
	tokens "github.com/tryd-ci/tryd/internal/bearer"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
	"github.com/tryd-ci/tryd/pubsubhelper/webhook"
)

// Secret is one accepted webhook secret. Several may be configured per
// server, so that a secret can be rotated without losing deliveries:
// add the new one, switch the sender, remove the old one.
type Secret struct {
	// Server names the configured GitHub or Gerrit server; events
	// authenticated by this secret carry it in Event.Server.
	Server string
	// Value is the secret itself. It never appears in logs or metrics.
	Value []byte
}

// Options configures a Server.
type Options struct {
	// Journal receives every accepted event before it is acknowledged
	// and serves subscribers. Required; the caller opens and closes it.
	Journal *journal.Journal
	// GitHubSecrets verify X-Hub-Signature-256. With none,
	// /github-webhook answers 404.
	GitHubSecrets []Secret
	// GerritSecrets are the shared secrets the Gerrit webhooks plugin
	// must present as a bearer token or basic-auth password. With none,
	// /gerrit-webhook answers 404.
	GerritSecrets []Secret
	// SubscriberTokens are the tokens /waitevent and /recent require
	// (as "Authorization: Bearer TOKEN"), several so that one can be
	// rotated. New refuses an empty list unless OpenSubscribers is set.
	SubscriberTokens []Secret
	// OpenSubscribers, without SubscriberTokens, serves /waitevent and
	// /recent to anyone, as x/build's pubsubhelper does, but no raw
	// payloads (?raw=1 answers 403), since payloads may hold private
	// repositories' content. Only for a server that nothing untrusted
	// can reach: tryd pubsubhelper sets it only when it listens on
	// loopback and no token is configured.
	OpenSubscribers bool
	// MaxBodyBytes bounds a webhook body (default 25 MiB, GitHub's own
	// limit); larger bodies get 413.
	MaxBodyBytes int64
	// BodyTimeout bounds reading a webhook body (default 30s; GitHub
	// gives up after 10s), so that a sender trickling bytes, who need
	// not know any secret since a GitHub body is read before its
	// signature can be checked, cannot hold connections open forever.
	BodyTimeout time.Duration
	// LongPollTimeout is how long /waitevent waits by default (default
	// 30s, as x/build); ?timeout= may ask for 1ms to MaxLongPollTimeout.
	LongPollTimeout time.Duration
	// MaxLongPollTimeout bounds ?timeout= (default 5 minutes).
	MaxLongPollTimeout time.Duration
	// Log receives request problems (never secrets or bodies); nil
	// discards.
	Log logrus.FieldLogger
	// Registry, if set, receives the server's metrics.
	Registry *prometheus.Registry
}

// Server is pubsubhelper's HTTP handler. It does not listen by itself;
// serve Handler with internal/httpserver.
type Server struct {
	opts    Options
	j       *journal.Journal
	log     logrus.FieldLogger
	intake  *prometheus.CounterVec
	handler http.Handler
	// The Gerrit shared secrets (gerritServers[i] names the server of
	// the i-th) and the subscriber tokens, kept as digests by
	// internal/bearer.
	gerrit, subscribers *tokens.Set
	gerritServers       []string
	// bodies recycles webhook body buffers (*bytes.Buffer): a body is
	// garbage once journaled (Append copies it), and at thousands of
	// deliveries a second, 10-30 KB each, bodies would be most of what
	// the server allocates, and so most of its garbage collection.
	bodies sync.Pool
}

// Result labels of tryd_pubsubhelper_webhooks_total.
const (
	resultOK           = "ok"
	resultDuplicate    = "duplicate"
	resultUnauthorized = "unauthorized"
	resultMalformed    = "malformed"
	resultTooLarge     = "too_large"
	resultUnsupported  = "unsupported"
	resultError        = "error"
)

// ErrNoSubscriberToken is returned by New for Options with neither
// SubscriberTokens nor OpenSubscribers.
var ErrNoSubscriberToken = errors.New("pubsubhelper: no subscriber token: /waitevent and /recent would be open to anyone (set Options.SubscriberTokens, or OpenSubscribers for a server only trusted hosts reach)")

// tokenSet returns secrets as a Set of internal/bearer, which compares
// a presented secret with every one of them in constant time, and the
// server of each. Secrets are taken as they are (New only refuses
// empty ones): a Gerrit webhook secret is the Gerrit administrator's
// choice, and subscriber tokens have never had rules of length.
func tokenSet(secrets []Secret) (*tokens.Set, []string) {
	values, servers := make([]string, len(secrets)), make([]string, len(secrets))
	for i, s := range secrets {
		values[i], servers[i] = string(s.Value), s.Server
	}
	return tokens.NewUnchecked(values), servers
}

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Journal == nil {
		return nil, errors.New("pubsubhelper: Options.Journal is nil")
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 25 << 20
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if opts.LongPollTimeout == 0 {
		opts.LongPollTimeout = 30 * time.Second
	}
	if opts.MaxLongPollTimeout == 0 {
		opts.MaxLongPollTimeout = 5 * time.Minute
	}
	if opts.MaxBodyBytes < 0 || opts.BodyTimeout < 0 || opts.LongPollTimeout < 0 || opts.MaxLongPollTimeout < opts.LongPollTimeout {
		return nil, errors.New("pubsubhelper: bad options: MaxBodyBytes, BodyTimeout and LongPollTimeout must be positive, MaxLongPollTimeout at least LongPollTimeout")
	}
	for _, list := range [][]Secret{opts.GitHubSecrets, opts.GerritSecrets, opts.SubscriberTokens} {
		for _, s := range list {
			if len(s.Value) == 0 {
				return nil, fmt.Errorf("pubsubhelper: empty secret for server %q", s.Server)
			}
		}
	}
	if len(opts.SubscriberTokens) == 0 && !opts.OpenSubscribers {
		return nil, ErrNoSubscriberToken
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	s := &Server{opts: opts, j: opts.Journal, log: log}
	s.gerrit, s.gerritServers = tokenSet(opts.GerritSecrets)
	s.subscribers, _ = tokenSet(opts.SubscriberTokens)
	s.intake = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tryd_pubsubhelper_webhooks_total",
		Help: "Webhook deliveries, by source (github, gerrit) and result (ok, duplicate, unauthorized, malformed, too_large, unsupported, error).",
	}, []string{"source", "result"})
	if opts.Registry != nil {
		if err := opts.Registry.Register(s.intake); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("pubsubhelper: register metrics: %w", err)
			}
			s.intake = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /github-webhook", s.serveGitHub)
	mux.HandleFunc("POST /gerrit-webhook", s.serveGerrit)
	mux.HandleFunc("GET /waitevent", s.serveWaitEvent)
	mux.HandleFunc("GET /recent", s.serveRecent)
	mux.HandleFunc("GET /{$}", s.serveIndex)
	s.handler = mux
	return s, nil
}

// Handler returns the HTTP handler: POST /github-webhook, POST
// /gerrit-webhook, GET /waitevent, GET /recent and an index at GET /.
func (s *Server) Handler() http.Handler { return s.handler }

// Health reports whether the journal accepts events (for /healthz).
func (s *Server) Health(context.Context) error { return s.j.Err() }

// reject answers a delivery with an error, logs why (never the body or
// a secret) and counts it.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, source, result string, code int, msg string) {
	s.intake.WithLabelValues(source, result).Inc()
	s.log.WithFields(logrus.Fields{"source": source, "result": result, "code": code, "remote": r.RemoteAddr}).Info("webhook rejected: " + msg)
	http.Error(w, msg, code)
}

// bodyDeadline bounds the reading of r's body, by the handler or, when
// the handler refuses the request without reading it, by net/http,
// which drains an unread body before it answers. Not every
// ResponseWriter supports deadlines (httptest's does not); the limit is
// then the server's.
func (s *Server) bodyDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
}

// preallocBytes bounds the buffer allocated from a body's declared
// Content-Length before any of it arrives: enough for the usual webhook
// in one allocation, while a sender declaring 25 MiB and sending nothing
// costs little.
const preallocBytes = 256 << 10

// maxPooledBody bounds the body buffers kept for reuse.
const maxPooledBody = 1 << 20

// readBody reads a webhook body within the size limit and BodyTimeout;
// it answers 413 or 400 itself and returns false when it did. The body
// lives in buf, which the caller hands back to putBody once nothing
// refers to the body any more.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, source string) (body []byte, buf *bytes.Buffer, ok bool) {
	if r.ContentLength > s.opts.MaxBodyBytes {
		s.reject(w, r, source, resultTooLarge, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.opts.MaxBodyBytes))
		return nil, nil, false
	}
	buf, _ = s.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, preallocBytes)) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	body = buf.Bytes()
	if err != nil {
		s.putBody(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.reject(w, r, source, resultTooLarge, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.opts.MaxBodyBytes))
		} else {
			s.reject(w, r, source, resultMalformed, http.StatusBadRequest, "reading body: "+err.Error())
		}
		return nil, nil, false
	}
	return body, buf, true
}

// putBody recycles a body buffer from readBody.
func (s *Server) putBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		s.bodies.Put(buf)
	}
}

// ack is the JSON answer to an accepted delivery.
type ack struct {
	Seq       int64
	JournalID string
	Duplicate bool `json:",omitempty"`
}

func (s *Server) journal(w http.ResponseWriter, r *http.Request, ev *pubsubtypes.Event, raw []byte, key string) {
	out, dup, err := s.j.Append(r.Context(), ev, raw, key)
	if err != nil {
		if r.Context().Err() != nil {
			return // the sender is gone; it will retry
		}
		s.intake.WithLabelValues(ev.Source, resultError).Inc()
		s.log.WithError(err).WithField("source", ev.Source).Error("cannot journal event")
		http.Error(w, "cannot journal the event; retry later", http.StatusServiceUnavailable)
		return
	}
	result := resultOK
	if dup {
		result = resultDuplicate
	}
	s.intake.WithLabelValues(ev.Source, result).Inc()
	w.Header().Set("Content-Type", "application/json")
	var b [128]byte
	w.Write(appendAck(b[:0], ack{Seq: out.Seq, JournalID: out.JournalID, Duplicate: dup}))
}

// appendAck encodes a as encoding/json does (a test checks), without
// its reflection on every delivery.
func appendAck(b []byte, a ack) []byte {
	b = append(b, `{"Seq":`...)
	b = strconv.AppendInt(b, a.Seq, 10)
	b = append(b, `,"JournalID":`...)
	b = strconv.AppendQuote(b, a.JournalID) // hex digits: quoted alike
	if a.Duplicate {
		b = append(b, `,"Duplicate":true`...)
	}
	return append(b, "}\n"...)
}

// validDeliveryID accepts GitHub's GUIDs and anything similarly tame.
func validDeliveryID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// serveGitHub handles POST /github-webhook: 401 without an
// X-Hub-Signature-256 header (before the body is read), 413 over the size
// limit, 401 without a valid X-Hub-Signature-256 (HMAC-SHA256 of the body, checked
// in constant time by go-github against every configured secret), 400
// without X-GitHub-Event / X-GitHub-Delivery or with a malformed body,
// 415 for a content type other than JSON or form-encoded, 503 if the
// journal fails, else 200 with {"Seq", "JournalID", "Duplicate"} once the
// event is durable. A repeated X-GitHub-Delivery is answered 200 and
// recorded once.
func (s *Server) serveGitHub(w http.ResponseWriter, r *http.Request) {
	const src = pubsubtypes.SourceGitHub
	s.bodyDeadline(w)
	if len(s.opts.GitHubSecrets) == 0 {
		s.reject(w, r, src, resultUnauthorized, http.StatusNotFound, "GitHub webhooks are not configured")
		return
	}
	// A request without a signature is refused before its body is read.
	sig := r.Header.Get(github.SHA256SignatureHeader)
	if sig == "" {
		s.reject(w, r, src, resultUnauthorized, http.StatusUnauthorized, "missing "+github.SHA256SignatureHeader)
		return
	}
	if !strings.HasPrefix(sig, "sha256=") {
		s.reject(w, r, src, resultUnauthorized, http.StatusUnauthorized, "bad "+github.SHA256SignatureHeader)
		return
	}
	body, buf, ok := s.readBody(w, r, src)
	if !ok {
		return
	}
	defer s.putBody(buf)
	server, verified := "", false
	for _, sec := range s.opts.GitHubSecrets {
		if github.ValidateSignature(sig, body, sec.Value) == nil {
			server, verified = sec.Server, true
			break
		}
	}
	if !verified {
		s.reject(w, r, src, resultUnauthorized, http.StatusUnauthorized, "bad "+github.SHA256SignatureHeader)
		return
	}
	typ, id := github.WebHookType(r), github.DeliveryID(r)
	if typ == "" || id == "" {
		s.reject(w, r, src, resultMalformed, http.StatusBadRequest, "missing X-GitHub-Event or X-GitHub-Delivery")
		return
	}
	if !validDeliveryID(id) {
		s.reject(w, r, src, resultMalformed, http.StatusBadRequest, "bad X-GitHub-Delivery")
		return
	}
	payload := body
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case ct == "" || err == nil && mt == "application/json":
	case err == nil && mt == "application/x-www-form-urlencoded":
		// The signature covers the form body; the event is its
		// "payload" field.
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.reject(w, r, src, resultMalformed, http.StatusBadRequest, "bad form body")
			return
		}
		payload = []byte(form.Get("payload"))
	default:
		s.reject(w, r, src, resultUnsupported, http.StatusUnsupportedMediaType, "Content-Type must be application/json or application/x-www-form-urlencoded")
		return
	}
	ev, err := webhook.ParseGitHub(typ, payload)
	if err != nil {
		s.reject(w, r, src, resultMalformed, http.StatusBadRequest, err.Error())
		return
	}
	ev.DeliveryID, ev.Server = id, server
	s.journal(w, r, ev, payload, "github:"+id)
}

// gerritAuth checks the shared secret, sent as "Authorization: Bearer
// SECRET" or as the password of basic auth (any user name), against
// every configured secret, and returns the server it names.
func (s *Server) gerritAuth(r *http.Request) (server string, ok bool) {
	i, err := s.gerrit.CheckBasic(r)
	if err != nil {
		return "", false
	}
	return s.gerritServers[i], true
}

// serveGerrit handles POST /gerrit-webhook: 401 (with a Basic challenge)
// without the shared secret, 413 over the size limit, 400 for a body that
// is not a Gerrit event, 503 if the journal fails, else 200 once the event
// is durable. The plugin has no delivery ID, so a byte-identical body
// (the plugin's retry of an event) is recorded once.
func (s *Server) serveGerrit(w http.ResponseWriter, r *http.Request) {
	const src = pubsubtypes.SourceGerrit
	s.bodyDeadline(w)
	if len(s.opts.GerritSecrets) == 0 {
		s.reject(w, r, src, resultUnauthorized, http.StatusNotFound, "Gerrit webhooks are not configured")
		return
	}
	server, ok := s.gerritAuth(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="tryd pubsubhelper", charset="UTF-8"`)
		s.reject(w, r, src, resultUnauthorized, http.StatusUnauthorized, "missing or bad shared secret (bearer token or basic-auth password)")
		return
	}
	body, buf, ok := s.readBody(w, r, src)
	if !ok {
		return
	}
	defer s.putBody(buf)
	ev, err := webhook.ParseGerrit(body)
	if err != nil {
		s.reject(w, r, src, resultMalformed, http.StatusBadRequest, err.Error())
		return
	}
	ev.Server = server
	if o := r.Header.Get("X-Origin-Url"); o != "" && len(o) <= 1024 {
		ev.Gerrit.Origin = o
	}
	sum := sha256.Sum256(body)
	s.journal(w, r, ev, body, "gerrit:"+server+":"+hex.EncodeToString(sum[:]))
}

// subscription is a parsed /waitevent or /recent query.
type subscription struct {
	cur     pubsubtypes.Cursor
	filter  pubsubtypes.Filter
	raw     bool
	timeout time.Duration
	limit   int
}

// subscriberAuth checks the subscriber token, or, on a server with
// OpenSubscribers and no tokens, refuses raw payloads. It answers
// 401/403 itself and returns false when it did.
func (s *Server) subscriberAuth(w http.ResponseWriter, r *http.Request, raw bool) bool {
	if s.subscribers.Len() == 0 {
		if raw {
			http.Error(w, "raw payloads need a subscriber token (configure one on the server)", http.StatusForbidden)
			return false
		}
		return true
	}
	if _, err := s.subscribers.Check(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tryd pubsubhelper"`)
		http.Error(w, "missing or bad subscriber token", http.StatusUnauthorized)
		return false
	}
	return true
}

func (s *Server) parseQuery(r *http.Request) (subscription, error) {
	q := r.URL.Query()
	var sub subscription
	var err error
	if sub.cur, err = pubsubtypes.ParseCursor(q); err != nil {
		return sub, err
	}
	if sub.filter, err = pubsubtypes.ParseFilter(q); err != nil {
		return sub, err
	}
	switch q.Get("raw") {
	case "", "0", "false":
	case "1", "true":
		sub.raw = true
	default:
		return sub, fmt.Errorf("%w: raw must be 0 or 1", pubsubtypes.ErrBadQuery)
	}
	sub.timeout = s.opts.LongPollTimeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > s.opts.MaxLongPollTimeout {
			return sub, fmt.Errorf("%w: timeout must be a duration from 1ms to %v", pubsubtypes.ErrBadQuery, s.opts.MaxLongPollTimeout)
		}
		sub.timeout = d
	}
	sub.limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return sub, fmt.Errorf("%w: limit must be 1 to 10000", pubsubtypes.ErrBadQuery)
		}
		sub.limit = n
	}
	return sub, nil
}

// encodeEvent writes ev as indented JSON (as x/build does), splicing in
// the raw payload byte for byte when asked for.
func (s *Server) encodeEvent(buf *bytes.Buffer, ev *pubsubtypes.Event, raw bool) error {
	ev.Raw = nil
	b, err := json.MarshalIndent(ev, "", "\t")
	if err != nil {
		return fmt.Errorf("pubsubhelper: encode event %d: %w", ev.Seq, err)
	}
	if raw && ev.Seq > 0 && !ev.LongPollTimeout {
		if payload, err := s.j.Raw(ev.Seq); err == nil && json.Valid(payload) {
			buf.Write(b[:len(b)-2]) // drop "\n}"
			buf.WriteString(",\n\t\"Raw\": ")
			buf.Write(payload)
			buf.WriteString("\n}")
			return nil
		}
	}
	buf.Write(b)
	return nil
}

// serveWaitEvent handles GET /waitevent: it returns the first event after
// the cursor (?after=RFC3339Nano as x/build, or tryd's exact
// ?afterseq=N&journal=ID) that passes the filters (?source= ?type= ?repo=
// ?project= ?branch= ?topic= ?server=), waiting up to ?timeout= (default
// 30s) for one; if none comes it returns {"LongPollTimeout": true} with
// the cursor to resume from. ?raw=1 adds the payload as received (only
// with a subscriber token).
func (s *Server) serveWaitEvent(w http.ResponseWriter, r *http.Request) {
	sub, err := s.parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !s.subscriberAuth(w, r, sub.raw) {
		return
	}
	ev, head, err := s.j.Wait(r.Context(), sub.cur, sub.filter, sub.timeout)
	if err != nil {
		if errors.Is(err, journal.ErrClosed) {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		}
		return // the subscriber went away
	}
	if ev == nil {
		ev = &pubsubtypes.Event{Time: head.Time, LongPollTimeout: true, Seq: head.Seq, JournalID: head.JournalID}
	}
	var buf bytes.Buffer
	if err := s.encodeEvent(&buf, ev, sub.raw); err != nil {
		s.log.WithError(err).Error("waitevent")
		http.Error(w, "cannot encode event", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(buf.Bytes())
}

// serveRecent handles GET /recent: a JSON array of the most recent events
// (newest first, at most ?limit=, default 100), optionally only those
// after a cursor and passing the filters of /waitevent.
func (s *Server) serveRecent(w http.ResponseWriter, r *http.Request) {
	sub, err := s.parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !s.subscriberAuth(w, r, sub.raw) {
		return
	}
	evs := s.j.Recent(sub.cur, sub.filter, sub.limit)
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i := range evs {
		if i > 0 {
			buf.WriteString(",\n")
		}
		if err := s.encodeEvent(&buf, &evs[i], sub.raw); err != nil {
			s.log.WithError(err).Error("recent")
			http.Error(w, "cannot encode event", http.StatusInternalServerError)
			return
		}
	}
	buf.WriteString("\n]\n")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(buf.Bytes())
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	st := s.j.Stats()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, `tryd pubsubhelper

POST /github-webhook   GitHub webhook deliveries (X-Hub-Signature-256)
POST /gerrit-webhook   Gerrit webhooks-plugin events (shared secret as bearer token or basic-auth password)
GET  /waitevent        long-poll the next event: ?after=RFC3339Nano or ?afterseq=N&journal=ID,
                       filters ?source= ?type= ?repo=owner/name ?project= ?branch= ?topic= ?server=,
                       ?timeout=30s, ?raw=1 for the payload
GET  /recent           recent events, newest first (?limit=, same filters)

journal %s: %d events (seq %d to %d), %d bytes in %d segments
`, s.j.ID(), st.Events, st.FirstSeq, st.LastSeq, st.Bytes, st.Segments)
}
