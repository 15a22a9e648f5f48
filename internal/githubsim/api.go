package githubsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	docsURL      = "https://docs.github.com/rest"
	maxBodyBytes = 1 << 20
)

// Handler serves the whole simulator: the REST API under /api/v3/, git
// smart HTTP under /<owner>/<repo>.git/, and a JSON 404 elsewhere.
func (s *Sim) Handler() http.Handler {
	api := http.StripPrefix("/api/v3", s.apiMux())
	git := gitHandler(s.gitPath, s.opts.Dir, s.log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/api/v3/") && path.Clean(p) != strings.TrimSuffix(p, "/"):
			// Dot segments or empty ones: not an endpoint (ServeMux
			// would redirect to the cleaned path instead).
			writeJSON(w, http.StatusNotFound, errBody("Not Found"))
		case strings.HasPrefix(p, "/api/v3/"):
			api.ServeHTTP(w, r)
		case isGitPath(p):
			if r.URL.Query().Get("service") == "git-receive-pack" {
				// Pushes go through the Go API, which sends the events.
				http.Error(w, "Pushing over HTTP is not supported by the simulator", http.StatusForbidden)
				return
			}
			git.ServeHTTP(w, r)
		default:
			writeJSON(w, http.StatusNotFound, errBody("Not Found"))
		}
	})
}

// isGitPath accepts /<owner>/<repo>.git/<smart HTTP path> only, so that
// http-backend never sees paths outside a repository.
func isGitPath(p string) bool {
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 3)
	if len(parts) < 3 || !strings.HasSuffix(parts[1], ".git") || strings.Contains(p, "..") {
		return false
	}
	switch parts[2] {
	case "info/refs", "git-upload-pack", "HEAD":
		return true
	}
	return false
}

type errorBody struct {
	Message          string     `json:"message"`
	Errors           []apiError `json:"errors,omitempty"`
	DocumentationURL string     `json:"documentation_url"`
	Status           string     `json:"status,omitempty"`
}

type apiError struct {
	Resource string `json:"resource,omitempty"`
	Field    string `json:"field,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message,omitempty"`
	Value    any    `json:"value,omitempty"`
}

func errBody(msg string) *errorBody { return &errorBody{Message: msg, DocumentationURL: docsURL} }

func validation(resource, field, code, msg string) (int, any) {
	return http.StatusUnprocessableEntity, &errorBody{Message: "Validation Failed", DocumentationURL: docsURL,
		Status: "422", Errors: []apiError{{Resource: resource, Field: field, Code: code, Message: msg}}}
}

func notFound() (int, any) { return http.StatusNotFound, errBody("Not Found") }

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b)
}

// call is one REST request being served.
type call struct {
	s   *Sim
	r   *http.Request
	u   *user // nil when anonymous
	app *app  // set when authenticated with an app's JWT (u is its bot)
	// inst is the installation of the caller's installation token (nil
	// for any other caller, and for AddApp's token).
	inst *installation
	hdr  http.Header
	repo *repo
}

type apiFunc func(c *call) (int, any)

// route wraps an endpoint with authentication, rate limiting, JSON
// encoding, ETags and conditional requests.
func (s *Sim) route(f apiFunc) http.Handler { return s.serve(f, false) }

// routeApp wraps an endpoint that only a GitHub App's JWT may call.
func (s *Sim) routeApp(f apiFunc) http.Handler { return s.serve(f, true) }

func (s *Sim) serve(f apiFunc, appOnly bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-GitHub-Media-Type", "github.v3; format=json")
		w.Header().Set("X-GitHub-Api-Version-Selected", "2022-11-28")
		w.Header().Set("X-GitHub-Request-Id", strings.ToUpper(randomHex(8)))
		u, ti, jwtApp, msg := s.authenticate(r)
		switch {
		case msg != "":
		case appOnly && jwtApp == nil:
			msg = "A JSON web token could not be decoded"
		case !appOnly && jwtApp != nil:
			// A JWT only authenticates the /app endpoints; everything
			// else needs an installation token.
			msg = "Bad credentials"
		}
		if msg != "" {
			writeJSON(w, http.StatusUnauthorized, &errorBody{Message: msg, DocumentationURL: docsURL, Status: "401"})
			return
		}
		key := "" // anonymous
		if u != nil {
			key = u.login
		}
		if jwtApp != nil {
			u, key = jwtApp.bot, "app:"+jwtApp.slug
		}
		if rs := s.rateCheck(key, u); rs.remaining <= 0 {
			rs.setHeaders(w.Header())
			id := "anonymous"
			if u != nil {
				id = strconv.FormatInt(u.id, 10)
			}
			writeJSON(w, s.opts.RateLimitStatus, &errorBody{
				Message:          fmt.Sprintf("API rate limit exceeded for user ID %s. If you reach out to GitHub Support for help, please include the request ID %s.", id, w.Header().Get("X-GitHub-Request-Id")),
				DocumentationURL: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
			})
			return
		}
		if s.throttle(r.Method, w.Header()) {
			s.rateCount(key, u).setHeaders(w.Header())
			writeJSON(w, http.StatusForbidden, &errorBody{
				Message:          "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID " + w.Header().Get("X-GitHub-Request-Id") + ".",
				DocumentationURL: "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
			})
			return
		}
		c := &call{s: s, r: r, u: u, app: jwtApp, inst: ti, hdr: w.Header()}
		owner, name := r.PathValue("owner"), r.PathValue("repo")
		s.mu.Lock()
		if owner != "" {
			c.repo = s.repos[owner+"/"+name]
		}
		code, deny := http.StatusNotFound, errBody("Not Found")
		if c.repo != nil || owner == "" {
			// What the installation lets the caller do (install.go).
			code, deny = s.installGateLocked(u, ti, jwtApp, c.repo, r.Method)
		}
		s.mu.Unlock()
		if deny != nil {
			s.rateCount(key, u).setHeaders(w.Header())
			writeJSON(w, code, deny)
			return
		}
		code, v := f(c)
		var body []byte
		if v != nil {
			var err error
			if body, err = json.Marshal(v); err != nil {
				code, body = http.StatusInternalServerError, []byte(`{"message":"Server Error"}`)
			}
		}
		if r.Method == http.MethodGet && code == http.StatusOK {
			sum := sha256.Sum256(body)
			etag := `W/"` + hex.EncodeToString(sum[:16]) + `"`
			w.Header().Set("ETag", etag)
			w.Header().Set("Cache-Control", "private, max-age=60, s-maxage=60")
			w.Header().Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
			if etagMatch(r.Header.Get("If-None-Match"), etag) {
				// Conditional hits are free on GitHub.
				s.rateCheck(key, u).setHeaders(w.Header())
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		if r.URL.Path != "/rate_limit" {
			s.rateCount(key, u).setHeaders(w.Header())
		} else {
			s.rateCheck(key, u).setHeaders(w.Header())
		}
		if body == nil {
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		w.Write(body)
	})
}

func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	strip := func(t string) string { return strings.TrimPrefix(strings.TrimSpace(t), "W/") }
	for _, t := range strings.Split(header, ",") {
		if strings.TrimSpace(t) == "*" || strip(t) == strip(etag) {
			return true
		}
	}
	return false
}

// authenticate maps the Authorization header (token, Bearer, or Basic with
// the token as password) to a user, or to an app for a JWT. msg is the
// 401 message for bad credentials; no header means anonymous.
func (s *Sim) authenticate(r *http.Request) (u *user, ti *installation, jwtApp *app, msg string) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, nil, nil, ""
	}
	scheme, cred, _ := strings.Cut(h, " ")
	var tok string
	switch strings.ToLower(scheme) {
	case "token", "bearer":
		tok = strings.TrimSpace(cred)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return nil, nil, nil, "Bad credentials"
		}
		_, tok, _ = strings.Cut(string(raw), ":")
	default:
		return nil, nil, nil, "Bad credentials"
	}
	if strings.Count(tok, ".") == 2 {
		a, msg := s.verifyAppJWT(tok)
		return nil, nil, a, msg
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.tokens[tok]
	if !ok || tok == "" {
		return nil, nil, nil, "Bad credentials"
	}
	if exp, ok := s.tokenExp[tok]; ok && !s.opts.Now().Before(exp) {
		return nil, nil, nil, "Bad credentials"
	}
	return u, s.tokenInst[tok], nil, ""
}

// rateState is one user's core rate-limit window.
type rateState struct {
	limit, remaining, used int
	reset                  time.Time
}

func (rs rateState) setHeaders(h http.Header) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(rs.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(rs.remaining, 0)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(rs.reset.Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(rs.used))
	h.Set("X-RateLimit-Resource", "core")
}

// rateLocked returns key's window, starting a new one when the old one
// has passed.
func (s *Sim) rateLocked(key string, u *user) *rateState {
	now := s.opts.Now()
	rs := s.rates[key]
	if rs == nil || !now.Before(rs.reset) {
		limit := s.opts.RateLimit
		if u == nil {
			limit = 60
		}
		rs = &rateState{limit: limit, remaining: limit, reset: now.Add(time.Hour).Truncate(time.Second)}
		s.rates[key] = rs
	}
	return rs
}

func (s *Sim) rateCheck(key string, u *user) rateState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.rateLocked(key, u)
}

func (s *Sim) rateCount(key string, u *user) rateState {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.rateLocked(key, u)
	if rs.remaining > 0 {
		rs.remaining--
		rs.used++
	}
	return *rs
}

// SetRateLimitRemaining sets how many requests login ("" for anonymous
// clients) has left in the current window; 0 exhausts the limit so that
// the next request is refused with 403 (or 429) until the window resets.
func (s *Sim) SetRateLimitRemaining(login string, remaining int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var u *user
	if login != "" {
		var err error
		if u, err = s.knownUserLocked(login); err != nil {
			return fmt.Errorf("githubsim: set rate limit: %w", err)
		}
	}
	rs := s.rateLocked(login, u)
	rs.remaining = max(0, min(remaining, rs.limit))
	rs.used = rs.limit - rs.remaining
	return nil
}

// ExhaustRateLimit is SetRateLimitRemaining(login, 0).
func (s *Sim) ExhaustRateLimit(login string) error { return s.SetRateLimitRemaining(login, 0) }

// decode reads a JSON request body into v: malformed JSON is 400 "Problems
// parsing JSON", JSON of the wrong types 422, as GitHub answers.
func (c *call) decode(v any) (int, any) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, c.r.Body, maxBodyBytes))
	if err != nil {
		return http.StatusRequestEntityTooLarge, errBody("Request body too large")
	}
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		return http.StatusBadRequest, errBody("Problems parsing JSON")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return http.StatusUnprocessableEntity, errBody(fmt.Sprintf("Invalid request.\n\nFor 'properties/%s', %s is not a %s.", te.Field, te.Value, te.Type.Kind()))
		}
		return http.StatusUnprocessableEntity, errBody("Invalid request.\n\n" + err.Error())
	}
	return 0, nil
}

func (c *call) needAuth() (int, any) {
	if c.u == nil {
		return http.StatusUnauthorized, &errorBody{Message: "Requires authentication", DocumentationURL: docsURL, Status: "401"}
	}
	return 0, nil
}

func (c *call) needWrite() (int, any) {
	if code, v := c.needAuth(); code != 0 {
		return code, v
	}
	c.s.mu.Lock()
	p := c.s.permLocked(c.repo, c.u)
	c.s.mu.Unlock()
	if !p.canWrite() {
		return http.StatusForbidden, errBody("Must have push access to repository")
	}
	return 0, nil
}

func (c *call) query(name string) string { return c.r.URL.Query().Get(name) }

// param returns query parameter name, or def when it is absent or empty.
// ok reports whether the value is def or one of others: the values GitHub
// accepts, whose refusal is invalidParam.
func (c *call) param(name, def string, others ...string) (v string, ok bool) {
	if v = c.query(name); v == "" {
		v = def
	}
	return v, v == def || slices.Contains(others, v)
}

// perPage returns the per_page parameter: 30 when absent or bad, at most
// 100, as GitHub.
func (c *call) perPage() int {
	per, err := strconv.Atoi(c.query("per_page"))
	if err != nil || per <= 0 {
		return 30
	}
	return min(per, 100)
}

// page applies per_page/page to n items, sets the Link header (first,
// prev, next, last as GitHub) and returns the slice bounds.
func (c *call) page(n int) (lo, hi int) {
	per := c.perPage()
	pg, err := strconv.Atoi(c.query("page"))
	if err != nil || pg <= 0 {
		pg = 1
	}
	last := max(1, (n+per-1)/per)
	link := func(p int, rel string) string {
		q := c.r.URL.Query()
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(per))
		return fmt.Sprintf(`<%s%s?%s>; rel="%s"`, c.s.api(), c.r.URL.Path, q.Encode(), rel)
	}
	var links []string
	if pg < last {
		links = append(links, link(pg+1, "next"), link(last, "last"))
	}
	if pg > 1 {
		links = append(links, link(1, "first"), link(min(pg-1, last), "prev"))
	}
	if len(links) > 0 {
		c.hdr.Set("Link", strings.Join(links, ", "))
	}
	lo = min((pg-1)*per, n)
	return lo, min(lo+per, n)
}

// pageOf returns the page of list the request asks for (see page), each
// item in its wire form.
func pageOf[T, W any](c *call, list []T, wire func(T) W) []W {
	lo, hi := c.page(len(list))
	return wireAll(list[lo:hi], wire)
}

// wireAll returns items in their wire form: never nil, as GitHub sends []
// for an empty list.
func wireAll[T, W any](items []T, wire func(T) W) []W {
	out := make([]W, 0, len(items))
	for _, x := range items {
		out = append(out, wire(x))
	}
	return out
}

func (c *call) number() (int, bool) {
	n, err := strconv.Atoi(c.r.PathValue("number"))
	return n, err == nil && n > 0
}

// with wraps endpoint f with the permission check need, which answers in
// its stead when it fails.
func with(need func(*call) (int, any), f apiFunc) apiFunc {
	return func(c *call) (int, any) {
		if code, v := need(c); code != 0 {
			return code, v
		}
		return f(c)
	}
}

func (s *Sim) apiMux() *http.ServeMux {
	m := http.NewServeMux()
	h := func(pattern string, f apiFunc) { m.Handle(pattern, s.route(f)) }
	// What an endpoint requires of the caller, checked before it runs.
	auth, write, admin, app := (*call).needAuth, (*call).needWrite, (*call).needAdmin, (*call).needApp
	h("GET /user", with(auth, s.getUser))
	m.Handle("GET /app", s.routeApp(s.getApp))
	m.Handle("GET /app/installations", s.routeApp(s.listInstallations))
	m.Handle("GET /app/installations/{id}", s.routeApp(s.getInstallation))
	m.Handle("POST /app/installations/{id}/access_tokens", s.routeApp(s.createInstallationToken))
	m.Handle("GET /repos/{owner}/{repo}/installation", s.routeApp(s.getRepoInstallation))
	h("GET /installation/repositories", s.listInstallationRepos)
	h("GET /rate_limit", s.getRateLimit)
	h("GET /repos/{owner}/{repo}", s.getRepo)
	h("GET /repos/{owner}/{repo}/issues", s.listIssues)
	h("GET /repos/{owner}/{repo}/issues/{number}", s.getIssue)
	h("GET /repos/{owner}/{repo}/issues/comments", s.listRepoComments)
	h("GET /repos/{owner}/{repo}/issues/{number}/comments", s.listIssueComments)
	h("POST /repos/{owner}/{repo}/issues/{number}/comments", with(auth, s.createComment))
	h("GET /repos/{owner}/{repo}/issues/events", s.listRepoEvents)
	h("GET /repos/{owner}/{repo}/issues/{number}/events", s.listIssueEvents)
	h("GET /repos/{owner}/{repo}/issues/{number}/labels", s.listIssueLabels)
	h("POST /repos/{owner}/{repo}/issues/{number}/labels", with(write, s.addIssueLabels))
	h("DELETE /repos/{owner}/{repo}/issues/{number}/labels/{name}", with(write, s.removeIssueLabel))
	h("GET /repos/{owner}/{repo}/labels", s.listLabels)
	h("GET /repos/{owner}/{repo}/milestones", s.listMilestones)
	h("GET /repos/{owner}/{repo}/pulls", s.listPulls)
	h("GET /repos/{owner}/{repo}/pulls/{number}", s.getPull)
	h("GET /repos/{owner}/{repo}/pulls/{number}/reviews", s.listReviews)
	h("POST /repos/{owner}/{repo}/check-runs", with(app, s.createCheckRun))
	h("PATCH /repos/{owner}/{repo}/check-runs/{id}", with(app, s.updateCheckRun))
	h("GET /repos/{owner}/{repo}/check-runs/{id}", s.getCheckRun)
	h("GET /repos/{owner}/{repo}/commits/{rest...}", s.commitSub)
	h("POST /repos/{owner}/{repo}/statuses/{sha}", with(write, s.createStatus))
	h("GET /repos/{owner}/{repo}/collaborators/{user}/permission", with(auth, s.getPermission))
	h("GET /repos/{owner}/{repo}/hooks", with(admin, s.listHooks))
	h("POST /repos/{owner}/{repo}/hooks", with(admin, s.createHook))
	h("GET /repos/{owner}/{repo}/hooks/{id}/deliveries", with(admin, s.listDeliveries))
	h("GET /repos/{owner}/{repo}/hooks/{id}/deliveries/{delivery}", with(admin, s.getDelivery))
	h("POST /repos/{owner}/{repo}/hooks/{id}/deliveries/{delivery}/attempts", with(admin, s.redeliverREST))
	m.Handle("/", s.route(func(*call) (int, any) { return notFound() }))
	return m
}

func (s *Sim) getUser(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type fullUser struct {
		*wUser
		Name        *string `json:"name"`
		Company     *string `json:"company"`
		Blog        string  `json:"blog"`
		Location    *string `json:"location"`
		Email       *string `json:"email"`
		Hireable    *bool   `json:"hireable"`
		Bio         *string `json:"bio"`
		PublicRepos int     `json:"public_repos"`
		PublicGists int     `json:"public_gists"`
		Followers   int     `json:"followers"`
		Following   int     `json:"following"`
		CreatedAt   ghTime  `json:"created_at"`
		UpdatedAt   ghTime  `json:"updated_at"`
	}
	n := 0
	for _, r := range s.repos {
		if r.owner == c.u.login {
			n++
		}
	}
	return http.StatusOK, &fullUser{wUser: s.wUserOf(c.u), PublicRepos: n, CreatedAt: ghTime(c.u.joined), UpdatedAt: ghTime(c.u.joined)}
}

func (s *Sim) getRateLimit(c *call) (int, any) {
	key := ""
	if c.u != nil {
		key = c.u.login
	}
	rs := s.rateCheck(key, c.u)
	type rate struct {
		Limit     int    `json:"limit"`
		Used      int    `json:"used"`
		Remaining int    `json:"remaining"`
		Reset     int64  `json:"reset"`
		Resource  string `json:"resource,omitempty"`
	}
	core := rate{Limit: rs.limit, Used: rs.used, Remaining: rs.remaining, Reset: rs.reset.Unix()}
	return http.StatusOK, map[string]any{"resources": map[string]rate{"core": core}, "rate": core}
}

func (s *Sim) getRepo(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type repoWithPerms struct {
		*wRepo
		Permissions map[string]bool `json:"permissions,omitempty"`
	}
	out := &repoWithPerms{wRepo: s.wRepoOf(c.repo)}
	if c.u != nil {
		p := s.permLocked(c.repo, c.u)
		out.Permissions = map[string]bool{"admin": p == PermAdmin, "maintain": p == PermAdmin, "push": p.canWrite(), "triage": p.canWrite(), "pull": p != PermNone}
	}
	return http.StatusOK, out
}

// parseSince parses the since parameter (ISO 8601).
func (c *call) since() (time.Time, bool) {
	v := c.query("since")
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

func invalidParam(resource, field, value string) (int, any) {
	return http.StatusUnprocessableEntity, &errorBody{Message: "Validation Failed", DocumentationURL: docsURL, Status: "422",
		Errors: []apiError{{Resource: resource, Field: field, Code: "invalid", Value: value}}}
}

func (s *Sim) listIssues(c *call) (int, any) {
	state, ok := c.param("state", "open", "closed", "all")
	if !ok {
		return invalidParam("Issue", "state", state)
	}
	sortBy, ok := c.param("sort", "created", "updated", "comments")
	if !ok {
		return invalidParam("Issue", "sort", sortBy)
	}
	dir, ok := c.param("direction", "desc", "asc")
	if !ok {
		return invalidParam("Issue", "direction", dir)
	}
	since, ok := c.since()
	if !ok {
		return invalidParam("Issue", "since", c.query("since"))
	}
	var want []string
	if l := c.query("labels"); l != "" {
		for _, n := range strings.Split(l, ",") {
			want = append(want, strings.TrimSpace(n))
		}
	}
	creator := c.query("creator")
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*issue
	for _, is := range c.repo.issues {
		if state != "all" && is.state != state || is.updated.Before(since) || creator != "" && is.author.login != creator {
			continue
		}
		if !hasLabels(is, want) {
			continue
		}
		list = append(list, is)
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		var less bool
		switch sortBy {
		case "updated":
			less = a.updated.Before(b.updated) || a.updated.Equal(b.updated) && a.number < b.number
		case "comments":
			less = a.comments < b.comments || a.comments == b.comments && a.number < b.number
		default:
			less = a.number < b.number
		}
		if dir == "desc" {
			return !less
		}
		return less
	})
	return http.StatusOK, pageOf(c, list, func(is *issue) *wIssue { return s.wIssueOf(c.repo, is) })
}

func hasLabels(is *issue, want []string) bool {
	for _, w := range want {
		found := false
		for _, l := range is.labels {
			found = found || strings.EqualFold(l.name, w)
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *Sim) getIssue(c *call) (int, any) {
	n, ok := c.number()
	if !ok {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	is, err := s.issueLocked(c.repo, n)
	if err != nil {
		return notFound()
	}
	return http.StatusOK, s.wIssueOf(c.repo, is)
}

func (s *Sim) listComments(c *call, is *issue) (int, any) {
	since, ok := c.since()
	if !ok {
		return invalidParam("IssueComment", "since", c.query("since"))
	}
	dir := c.query("direction")
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*comment
	for _, cm := range c.repo.comments {
		if (is == nil || cm.issue == is) && !cm.updated.Before(since) {
			list = append(list, cm)
		}
	}
	if is == nil && c.query("sort") == "updated" {
		sort.SliceStable(list, func(i, j int) bool { return list[i].updated.Before(list[j].updated) })
	}
	if is == nil && dir == "desc" {
		slices.Reverse(list)
	}
	return http.StatusOK, pageOf(c, list, func(cm *comment) *wComment { return s.wCommentOf(c.repo, cm) })
}

func (s *Sim) listRepoComments(c *call) (int, any) { return s.listComments(c, nil) }

func (s *Sim) issueFromPath(c *call) (*issue, bool) {
	n, ok := c.number()
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	is, err := s.issueLocked(c.repo, n)
	return is, err == nil
}

func (s *Sim) listIssueComments(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok {
		return notFound()
	}
	return s.listComments(c, is)
}

func (s *Sim) createComment(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok {
		return notFound()
	}
	var in struct {
		Body *string `json:"body"`
	}
	if code, v := c.decode(&in); code != 0 {
		return code, v
	}
	if in.Body == nil || strings.TrimSpace(*in.Body) == "" {
		return validation("IssueComment", "body", "missing_field", "")
	}
	s.mu.Lock()
	cm, ds := s.commentLocked(c.repo, is, c.u, *in.Body)
	out := s.wCommentOf(c.repo, cm)
	s.mu.Unlock()
	s.q.push(ds...)
	c.hdr.Set("Location", out.URL)
	return http.StatusCreated, out
}

func (s *Sim) listEvents(c *call, is *issue) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*issueEvent
	for _, e := range c.repo.events {
		if is == nil || e.issue == is {
			list = append(list, e)
		}
	}
	if is == nil { // the repository-wide list is newest first
		slices.Reverse(list)
	}
	return http.StatusOK, pageOf(c, list, func(e *issueEvent) *wIssueEvent { return s.wEventOf(c.repo, e, is == nil) })
}

func (s *Sim) listRepoEvents(c *call) (int, any) { return s.listEvents(c, nil) }

func (s *Sim) listIssueEvents(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok {
		return notFound()
	}
	return s.listEvents(c, is)
}

func (s *Sim) listIssueLabels(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, pageOf(c, is.labels, func(l *label) *wLabel { return s.wLabelOf(c.repo, l) })
}

func (s *Sim) addIssueLabels(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok {
		return notFound()
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, c.r.Body, maxBodyBytes))
	if err != nil {
		return http.StatusRequestEntityTooLarge, errBody("Request body too large")
	}
	// GitHub accepts {"labels": [...]} and a bare array of names.
	var names []string
	var obj struct {
		Labels []string `json:"labels"`
	}
	trim := bytes.TrimSpace(b)
	var raw any
	switch {
	case json.Unmarshal(trim, &raw) != nil:
		return http.StatusBadRequest, errBody("Problems parsing JSON")
	case len(trim) > 0 && trim[0] == '[':
		if json.Unmarshal(trim, &names) != nil {
			return validation("Label", "labels", "invalid", "labels must be strings")
		}
	default:
		if json.Unmarshal(trim, &obj) != nil || obj.Labels == nil {
			return validation("Label", "labels", "missing_field", "")
		}
		names = obj.Labels
	}
	for _, n := range names {
		if strings.TrimSpace(n) == "" || len(n) > 50 {
			return validation("Label", "name", "invalid", "")
		}
	}
	s.mu.Lock()
	ds := s.addLabelsLocked(c.repo, is, c.u, names)
	out := s.wLabelsOf(c.repo, is.labels)
	s.mu.Unlock()
	s.q.push(ds...)
	return http.StatusOK, out
}

func (s *Sim) removeIssueLabel(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok {
		return notFound()
	}
	s.mu.Lock()
	ds, removed := s.removeLabelLocked(c.repo, is, c.u, c.r.PathValue("name"))
	out := s.wLabelsOf(c.repo, is.labels)
	s.mu.Unlock()
	if !removed {
		return http.StatusNotFound, errBody("Label does not exist")
	}
	s.q.push(ds...)
	return http.StatusOK, out
}

func (s *Sim) listLabels(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, pageOf(c, c.repo.labels, func(l *label) *wLabel { return s.wLabelOf(c.repo, l) })
}

func (s *Sim) listMilestones(c *call) (int, any) {
	state, _ := c.param("state", "open") // "closed" and "all" work too; GitHub refuses nothing here
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*wMilestone
	for _, m := range c.repo.milestones {
		if state == "all" || m.state == state {
			list = append(list, s.wMilestoneOf(c.repo, m))
		}
	}
	lo, hi := c.page(len(list))
	return http.StatusOK, append([]*wMilestone{}, list[lo:hi]...)
}

func (s *Sim) listPulls(c *call) (int, any) {
	state, ok := c.param("state", "open", "closed", "all")
	if !ok {
		return invalidParam("PullRequest", "state", state)
	}
	sortBy, ok := c.param("sort", "created", "updated", "popularity", "long-running")
	if !ok {
		return invalidParam("PullRequest", "sort", sortBy)
	}
	dir, _ := c.param("direction", "desc") // any other value sorts ascending
	head, base := c.query("head"), c.query("base")
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*issue
	for _, is := range c.repo.issues {
		if is.pr == nil || state != "all" && is.state != state || base != "" && is.pr.baseRef != base ||
			head != "" && head != c.repo.owner+":"+is.pr.headRef {
			continue
		}
		list = append(list, is)
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		less := a.number < b.number
		if sortBy == "updated" {
			less = a.updated.Before(b.updated) || a.updated.Equal(b.updated) && a.number < b.number
		}
		if dir == "desc" {
			return !less
		}
		return less
	})
	return http.StatusOK, pageOf(c, list, func(is *issue) *wPull { return s.wPullOf(c.repo, is) })
}

func (s *Sim) getPull(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok || is.pr == nil {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wPullOf(c.repo, is)
}

func (s *Sim) listReviews(c *call) (int, any) {
	is, ok := s.issueFromPath(c)
	if !ok || is.pr == nil {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*review
	for _, rv := range c.repo.reviews {
		if rv.issue == is {
			list = append(list, rv)
		}
	}
	return http.StatusOK, pageOf(c, list, func(rv *review) *wReview { return s.wReviewOf(c.repo, rv) })
}

func (s *Sim) getPermission(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.knownUserLocked(c.r.PathValue("user"))
	if err != nil {
		return notFound()
	}
	p := s.permLocked(c.repo, u)
	return http.StatusOK, &wPermission{Permission: string(p), RoleName: string(p), User: s.wUserOf(u)}
}

// resolveRef resolves a ref from the URL (SHA, branch, tag, or
// heads/<branch>) in the repository.
func (s *Sim) resolveRef(c *call, ref string) (string, bool) {
	if ref == "" || strings.Contains(ref, "..") || strings.ContainsAny(ref, "~^:@{}\\ ") {
		return "", false
	}
	for _, cand := range []string{ref, "refs/heads/" + ref, "refs/tags/" + ref, "refs/" + ref} {
		if sha, err := resolve(c.r.Context(), s.gitPath, c.repo.dir, cand); err == nil && sha != "" {
			s.mu.Lock()
			gone := c.repo.forgotten[sha]
			s.mu.Unlock()
			return sha, !gone
		}
	}
	return "", false
}

// ForgetCommit makes the simulator answer for sha as GitHub does for a
// commit it does not have (a repository deleted and created again, a
// force-pushed commit garbage-collected, a simulator restarted without
// its state): creating a check run or a status on it, and listing its
// check runs, check suites or statuses, fail with "No commit found for
// SHA". Pull requests and branches that point at it keep doing so.
func (s *Sim) ForgetCommit(fullName, sha string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[fullName]
	if r == nil {
		return fmt.Errorf("githubsim: forget commit: no repository %q", fullName)
	}
	if len(sha) != 40 {
		return fmt.Errorf("githubsim: forget commit: %q is not a full commit hash", sha)
	}
	if r.forgotten == nil {
		r.forgotten = map[string]bool{}
	}
	r.forgotten[strings.ToLower(sha)] = true
	return nil
}

// noCommit is GitHub's answer for a commit it does not have, e.g.
//
//	{"message": "No commit found for SHA: 0123…", "documentation_url":
//	 "https://docs.github.com/rest/…", "status": "422"}
func noCommit(ref string) (int, any) {
	b := errBody("No commit found for SHA: " + ref)
	b.Status = "422"
	return http.StatusUnprocessableEntity, b
}

// commitSub serves GET /repos/{o}/{r}/commits/{ref}/{status,statuses,
// check-runs,check-suites}; refs may contain slashes.
func (s *Sim) commitSub(c *call) (int, any) {
	rest := c.r.PathValue("rest")
	for _, sub := range []string{"/status", "/statuses", "/check-runs", "/check-suites"} {
		ref, ok := strings.CutSuffix(rest, sub)
		if !ok || ref == "" {
			continue
		}
		sha, found := s.resolveRef(c, ref)
		if !found {
			if sub == "/status" || sub == "/statuses" {
				return http.StatusNotFound, errBody("No commit found for SHA: " + ref)
			}
			return noCommit(ref)
		}
		switch sub {
		case "/status":
			return s.combinedStatus(c, sha)
		case "/statuses":
			return s.listStatuses(c, sha)
		case "/check-runs":
			return s.listCheckRuns(c, sha)
		default:
			return s.listCheckSuites(c, sha)
		}
	}
	return notFound()
}

func (s *Sim) createStatus(c *call) (int, any) {
	var in struct {
		State       string  `json:"state"`
		TargetURL   *string `json:"target_url"`
		Description *string `json:"description"`
		Context     *string `json:"context"`
	}
	if code, v := c.decode(&in); code != 0 {
		return code, v
	}
	switch in.State {
	case "error", "failure", "pending", "success":
	default:
		return validation("Status", "state", "custom", "state is not included in the list")
	}
	sha := c.r.PathValue("sha")
	full, ok := s.resolveRef(c, sha)
	if !ok {
		return noCommit(sha)
	}
	st := &status{state: in.State, sha: full, context: "default", creator: c.u}
	if in.Context != nil && *in.Context != "" {
		st.context = *in.Context
	}
	if in.TargetURL != nil {
		st.targetURL = *in.TargetURL
	}
	if in.Description != nil {
		if len(*in.Description) > 140 {
			return validation("Status", "description", "custom", "description is too long (maximum is 140 characters)")
		}
		st.description = *in.Description
	}
	ci, err := commitInfo(c.r.Context(), s.gitPath, c.repo.dir, full)
	if err != nil {
		return http.StatusInternalServerError, errBody("Server Error")
	}
	branches, err := branchesContaining(c.r.Context(), s.gitPath, c.repo.dir, full)
	if err != nil {
		return http.StatusInternalServerError, errBody("Server Error")
	}
	s.mu.Lock()
	st.id = s.newID()
	st.created = s.opts.Now()
	st.updated = st.created
	c.repo.statuses = append(c.repo.statuses, st)
	out := s.wStatusOf(c.repo, st, true)
	ds := s.emitLocked(c.repo, "status", "", nil, false, func(inst *wInstallation) any {
		return s.statusEventLocked(c.repo, st, ci, branches, inst)
	})
	s.mu.Unlock()
	s.q.push(ds...)
	return http.StatusCreated, out
}

// statusEventLocked renders the status webhook: the status, the commit
// (as the commits API shows it) and the branches containing it.
func (s *Sim) statusEventLocked(r *repo, st *status, ci gitCommitInfo, branches [][2]string, inst *wInstallation) *wStatusEvent {
	api := s.api() + "/repos/" + r.fullName()
	web := s.base + "/" + r.fullName()
	c := &wStatusCommit{SHA: ci.sha, NodeID: base64.StdEncoding.EncodeToString([]byte("06:Commit" + r.fullName() + ci.sha)), URL: api + "/commits/" + ci.sha,
		HTMLURL: web + "/commit/" + ci.sha, CommentsURL: api + "/commits/" + ci.sha + "/comments", Parents: []wParent{}}
	c.Commit.Author = wGitActor{Name: ci.name, Email: ci.email, Date: ci.when.Format(time.RFC3339)}
	c.Commit.Committer = wGitActor{Name: ci.cname, Email: ci.cemail, Date: ci.cwhen.Format(time.RFC3339)}
	c.Commit.Message = ci.message
	c.Commit.Tree = wSHAURL{SHA: ci.tree, URL: api + "/git/trees/" + ci.tree}
	c.Commit.URL = api + "/git/commits/" + ci.sha
	c.Commit.Verification.Reason = "unsigned"
	// The author and committer users are those whose noreply address
	// wrote the commit, as GitHub matches commit emails to accounts.
	for _, u := range s.users {
		if s.ident(u.login).email == ci.email {
			c.Author = s.wUserOf(u)
		}
		if s.ident(u.login).email == ci.cemail {
			c.Committer = s.wUserOf(u)
		}
	}
	for _, p := range ci.parents {
		c.Parents = append(c.Parents, wParent{SHA: p, URL: api + "/commits/" + p, HTMLURL: web + "/commit/" + p})
	}
	ev := &wStatusEvent{ID: st.id, SHA: st.sha, Name: r.fullName(), TargetURL: sp(st.targetURL),
		AvatarURL: fmt.Sprintf("%s/avatars/u/%d?v=4", s.base, st.creator.id), Context: st.context,
		Description: sp(st.description), State: st.state, Commit: c, Branches: []wBranch{},
		CreatedAt: ghTime(st.created), UpdatedAt: ghTime(st.updated), wEnvelope: s.envelope(r, st.creator, inst)}
	for _, b := range branches {
		ev.Branches = append(ev.Branches, wBranch{Name: b[0], Commit: wSHAURL{SHA: b[1], URL: api + "/commits/" + b[1]}})
	}
	return ev
}

func (s *Sim) statusesFor(r *repo, sha string) []*status {
	var list []*status
	for i := len(r.statuses) - 1; i >= 0; i-- { // newest first
		if r.statuses[i].sha == sha {
			list = append(list, r.statuses[i])
		}
	}
	return list
}

func (s *Sim) combinedStatus(c *call, sha string) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var latest []*wStatus
	state := "success"
	for _, st := range s.statusesFor(c.repo, sha) {
		if seen[st.context] {
			continue
		}
		seen[st.context] = true
		latest = append(latest, s.wStatusOf(c.repo, st, false))
		switch {
		case st.state == "error" || st.state == "failure":
			state = "failure"
		case st.state == "pending" && state != "failure":
			state = "pending"
		}
	}
	if len(latest) == 0 {
		state = "pending"
		latest = []*wStatus{}
	}
	sort.Slice(latest, func(i, j int) bool { return latest[i].Context < latest[j].Context })
	api := s.api() + "/repos/" + c.repo.fullName()
	return http.StatusOK, &wCombinedStatus{State: state, Statuses: latest, SHA: sha, TotalCount: len(latest),
		Repository: s.wRepoOf(c.repo), CommitURL: api + "/commits/" + sha, URL: api + "/commits/" + sha + "/status"}
}

func (s *Sim) listStatuses(c *call, sha string) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.statusesFor(c.repo, sha)
	return http.StatusOK, pageOf(c, list, func(st *status) *wStatus { return s.wStatusOf(c.repo, st, true) })
}

func (s *Sim) listHooks(c *call) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, wireAll(c.repo.hooks, s.wHookOf)
}

// needAdmin guards hook endpoints; GitHub answers 404 to non-admins.
func (c *call) needAdmin() (int, any) {
	if code, v := c.needAuth(); code != 0 {
		return code, v
	}
	c.s.mu.Lock()
	p := c.s.permLocked(c.repo, c.u)
	c.s.mu.Unlock()
	if p != PermAdmin {
		return notFound()
	}
	return 0, nil
}

func (s *Sim) hookFromPath(c *call) *hook {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hooks[id]
	if h == nil || h.repo != c.repo {
		return nil
	}
	return h
}

func (s *Sim) wDeliveryOf(d *delivery, full bool) *wHookDelivery {
	w := &wHookDelivery{ID: d.ID, GUID: d.GUID, DeliveredAt: ghTime(d.DeliveredAt), Redelivery: d.Redelivery,
		Duration: d.Duration.Seconds(), StatusCode: d.StatusCode, Event: d.Event, Action: sp(d.Action), RepositoryID: d.repoID}
	switch {
	case d.Pending:
		w.Status = "pending"
	case d.Err != "":
		w.Status = d.Err
	default:
		w.Status = "OK"
	}
	if d.hook.app != nil {
		id := d.instID
		w.InstallationID = &id
	}
	if full {
		w.URL = fmt.Sprintf("%s/repos/%s/hooks/%d/deliveries/%d", s.api(), d.Repo, d.hook.id, d.ID)
		w.Request = &struct {
			Headers map[string]string `json:"headers"`
			Payload any               `json:"payload"`
		}{Headers: flatten(d.reqHdr), Payload: json.RawMessage(d.Payload)}
		w.Response = &struct {
			Headers map[string]string `json:"headers"`
			Payload *string           `json:"payload"`
		}{Headers: flatten(d.respHdr), Payload: sp(d.respBody)}
	}
	return w
}

func flatten(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = strings.Join(v, ", ")
	}
	return out
}

// listDeliveries serves the hook's delivery log, newest first, with
// GitHub's cursor pagination (cursor = the last ID seen).
func (s *Sim) listDeliveries(c *call) (int, any) {
	h := s.hookFromPath(c)
	if h == nil {
		return notFound()
	}
	per := c.perPage()
	cursor, _ := strconv.ParseInt(c.query("cursor"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*wHookDelivery{}
	more := false
	for i := len(s.delivery) - 1; i >= 0; i-- {
		d := s.delivery[i]
		if d.hook != h || cursor > 0 && d.ID >= cursor {
			continue
		}
		if len(out) == per {
			more = true
			break
		}
		out = append(out, s.wDeliveryOf(d, false))
	}
	if more {
		q := url.Values{"per_page": {strconv.Itoa(per)}, "cursor": {strconv.FormatInt(out[len(out)-1].ID, 10)}}
		c.hdr.Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.api(), c.r.URL.Path, q.Encode()))
	}
	return http.StatusOK, out
}

func (s *Sim) deliveryFromPath(c *call) *delivery {
	h := s.hookFromPath(c)
	id, err := strconv.ParseInt(c.r.PathValue("delivery"), 10, 64)
	if h == nil || err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.delivery {
		if d.ID == id && d.hook == h {
			return d
		}
	}
	return nil
}

func (s *Sim) getDelivery(c *call) (int, any) {
	d := s.deliveryFromPath(c)
	if d == nil {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.wDeliveryOf(d, true)
}

// redeliverREST is POST …/deliveries/{id}/attempts: 202 Accepted and an
// asynchronous redelivery with the same GUID and body.
func (s *Sim) redeliverREST(c *call) (int, any) {
	d := s.deliveryFromPath(c)
	if d == nil {
		return notFound()
	}
	s.mu.Lock()
	nd := s.redeliverLocked(d)
	s.mu.Unlock()
	s.q.push(nd)
	return http.StatusAccepted, map[string]any{}
}

// createHook is POST /repos/{o}/{r}/hooks: a "web" hook with a JSON
// content type, answered 201 with the hook and followed by a ping.
func (s *Sim) createHook(c *call) (int, any) {
	var in struct {
		Name   *string  `json:"name"`
		Active *bool    `json:"active"`
		Events []string `json:"events"`
		Config *struct {
			URL         string `json:"url"`
			ContentType string `json:"content_type"`
			Secret      string `json:"secret"`
		} `json:"config"`
	}
	if code, v := c.decode(&in); code != 0 {
		return code, v
	}
	if in.Name != nil && *in.Name != "web" {
		return validation("Hook", "name", "invalid", "")
	}
	if in.Config == nil || in.Config.URL == "" {
		return validation("Hook", "", "custom", "Config must contain URL for webhooks")
	}
	if ct := in.Config.ContentType; ct != "" && ct != "json" {
		// The simulator sends JSON bodies only; form-encoded hooks are a
		// format tryd does not accept.
		return validation("Hook", "content_type", "invalid", "the simulator supports content_type json only")
	}
	if in.Active != nil && !*in.Active {
		return validation("Hook", "active", "invalid", "the simulator supports active hooks only")
	}
	id, ping, err := s.addHook(c.repo.fullName(), HookOptions{URL: in.Config.URL, Secret: in.Config.Secret, Events: in.Events})
	if err != nil {
		return validation("Hook", "url", "custom", err.Error())
	}
	s.q.push(ping) // GitHub pings asynchronously
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.wHookOf(s.hooks[id])
	c.hdr.Set("Location", out.URL)
	return http.StatusCreated, out
}

// SecondaryRateLimit makes the next n writes (requests other than GET
// and HEAD), whoever sends them, fail as GitHub's secondary rate limit
// does: 403 with a Retry-After header of retryAfter (whole seconds) and
// a message and documentation_url saying so. X-RateLimit-Remaining is
// not 0: the primary limit is not the reason.
func (s *Sim) SecondaryRateLimit(n int, retryAfter time.Duration) {
	s.mu.Lock()
	s.throttled, s.retryAfter = n, retryAfter
	s.mu.Unlock()
}

// throttle reports whether a request with method is refused for the
// secondary rate limit, setting its Retry-After.
func (s *Sim) throttle(method string, h http.Header) bool {
	if method == http.MethodGet || method == http.MethodHead {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.throttled <= 0 {
		return false
	}
	s.throttled--
	h.Set("Retry-After", strconv.Itoa(int(s.retryAfter.Round(time.Second)/time.Second)))
	return true
}
