package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/bearer"
)

// admin checks the admin token and keeps signed-in sessions without
// server state: the session cookie is a random nonce and its HMAC under
// a key derived from the token, and a session's CSRF token is another
// HMAC of its nonce. Changing the token signs everybody out.
type admin struct {
	token *bearer.Set
	key   []byte
}

const sessionCookie = "tryd_admin"

// limitBody bounds the size of r's form and the time to read it. Not
// every ResponseWriter supports deadlines (httptest's does not); the
// limit is then the server's.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
}

// secureRequest reports whether the browser reached the dashboard over
// HTTPS, directly or through a TLS-terminating proxy that says so. The
// header is only used to mark cookies Secure, which can only make them
// stricter, so a forged one gains nothing.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// newAdmin returns the admin of token, which New has checked with
// bearer.Validate: /login takes guesses without limit, so a short token
// would be found.
func newAdmin(token string) *admin {
	k := sha256.Sum256([]byte("tryd dashboard admin v1\x00" + token))
	return &admin{token: bearer.NewUnchecked([]string{token}), key: k[:]}
}

func (a *admin) mac(kind, nonce string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(kind + "\x00" + nonce))
	return hex.EncodeToString(m.Sum(nil))
}

// session returns the nonce of a valid session cookie.
func (a *admin) session(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	nonce, mac, ok := strings.Cut(c.Value, ".")
	if !ok || len(nonce) != 32 || !hmac.Equal([]byte(mac), []byte(a.mac("session", nonce))) {
		return "", false
	}
	return nonce, true
}

func (a *admin) csrf(nonce string) string { return a.mac("csrf", nonce) }

// authorize accepts a request from the admin: either a bearer token
// (programs; browsers never send one on their own, so no CSRF risk), or
// a session cookie with the session's CSRF token in the form and, when
// the browser says where the request comes from, the same origin.
func (a *admin) authorize(r *http.Request) error {
	if a == nil {
		return fmt.Errorf("%w: force builds are not enabled (no admin token configured)", errForbidden)
	}
	if r.Header.Get("Authorization") != "" {
		if _, err := a.token.Check(r); err != nil {
			return fmt.Errorf("%w: bad admin token", errForbidden)
		}
		return nil
	}
	nonce, ok := a.session(r)
	if !ok {
		return fmt.Errorf("%w: sign in as admin first", errForbidden)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("%w: cross-site request", errForbidden)
	}
	if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(a.csrf(nonce))) {
		return fmt.Errorf("%w: bad or missing CSRF token (reload the page)", errForbidden)
	}
	return nil
}

// loginView is the login page.
type loginView struct {
	Enabled bool   `json:"enabled"`
	Error   string `json:"error,omitempty"`
	Next    string `json:"next,omitempty"`
}

func (s *Server) serveLoginForm(w http.ResponseWriter, r *http.Request) error {
	return s.show(w, r, "login", "Sign in", loginView{Enabled: s.admin != nil, Next: safeNext(r.URL.Query().Get("next"))})
}

// safeNext keeps redirect targets on this site.
func safeNext(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	return p
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) error {
	if s.admin == nil {
		return fmt.Errorf("%w: no admin token is configured", errForbidden)
	}
	s.limitBody(w, r)
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("%w: cross-site request", errForbidden)
	}
	next := safeNext(r.PostFormValue("next"))
	if _, ok := s.admin.token.Match(r.PostFormValue("token")); !ok {
		w.WriteHeader(http.StatusForbidden)
		s.render(w, r, http.StatusForbidden, "login", "Sign in", loginView{Enabled: true, Error: "wrong token", Next: next})
		return nil
	}
	var b [16]byte
	rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: nonce + "." + s.admin.mac("session", nonce), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: int((12 * time.Hour).Seconds()),
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureRequest(r)})
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// forceView answers a force build.
type forceView struct {
	From    int64  `json:"from"`
	BuildID int64  `json:"build_id"`
	Builder string `json:"builder"`
}

// serveForce rebuilds the builder of build {id} at the same source: the
// builder's graph is planned afresh and submitted with the build's
// labels plus forced=1. Cached job results are reused as always.
func (s *Server) serveForce(w http.ResponseWriter, r *http.Request) error {
	s.limitBody(w, r)
	if err := s.admin.authorize(r); err != nil {
		return err
	}
	if s.opts.Planner == nil {
		return fmt.Errorf("%w: force builds are not enabled (no builder configuration)", errForbidden)
	}
	id, err := buildID(r)
	if err != nil {
		return err
	}
	b, err := s.opts.Coordinator.Build(r.Context(), id)
	if err != nil {
		return err
	}
	builder := b.Labels["builder"]
	if builder == "" {
		return badRequest("build %d has no builder label: nothing to rebuild", id)
	}
	planner := s.opts.Planner
	if k := b.Labels["kind"]; (k == "try" || k == "base") && s.opts.TryPlanner != nil {
		planner = s.opts.TryPlanner
	}
	g, err := planner.Plan(builder, graph.Source{Repo: b.Source.Repo, Revision: b.Source.Revision})
	if err != nil {
		return badRequest("plan %s: %v", builder, err)
	}
	labels := map[string]string{}
	for k, v := range b.Labels {
		// A forced build is not part of the try run that started the
		// original: the trybot finds its builds by this label.
		if k != "trybot_run" {
			labels[k] = v
		}
	}
	labels["forced"] = "1"
	labels["forced_from"] = strconv.FormatInt(id, 10)
	sub, err := s.opts.Coordinator.Submit(r.Context(), api.SubmitRequest{Graph: *g, Priority: b.Priority, Labels: labels})
	if err != nil {
		return fmt.Errorf("dashboard: force build of %s: %w", builder, err)
	}
	s.log.WithFields(map[string]any{"from": id, "build": sub.BuildID, "builder": builder}).Info("dashboard: forced build")
	if wantJSON(r) || r.Header.Get("Authorization") != "" {
		writeJSON(w, http.StatusCreated, forceView{From: id, BuildID: sub.BuildID, Builder: builder})
		return nil
	}
	http.Redirect(w, r, "/builds/"+strconv.FormatInt(sub.BuildID, 10), http.StatusSeeOther)
	return nil
}

func buildID(r *http.Request) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: build %q", errNotFound, truncate(s, 40))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
