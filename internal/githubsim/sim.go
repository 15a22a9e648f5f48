package githubsim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
)

// Permission is a user's role on the simulator's repositories, as the
// collaborator permission endpoint reports it.
type Permission string

// The permissions GitHub's collaborator permission endpoint returns.
const (
	PermAdmin Permission = "admin"
	PermWrite Permission = "write"
	PermRead  Permission = "read"
	PermNone  Permission = "none"
)

func (p Permission) valid() bool {
	switch p {
	case PermAdmin, PermWrite, PermRead, PermNone:
		return true
	}
	return false
}

// canWrite reports whether p may push, label and set statuses.
func (p Permission) canWrite() bool { return p == PermAdmin || p == PermWrite }

// Errors the Go API returns; callers test them with errors.Is.
var (
	// ErrNotFound: the repository, user, issue, hook or delivery does
	// not exist.
	ErrNotFound = errors.New("githubsim: not found")
	// ErrInvalid: the arguments are malformed or contradict the state
	// (e.g. a bad branch name, merging a closed pull request).
	ErrInvalid = errors.New("githubsim: invalid argument")
	// ErrClosed: the simulator was closed.
	ErrClosed = errors.New("githubsim: closed")
)

// Options configures a Sim. Only Dir is required.
type Options struct {
	// Dir holds the bare git repositories, as Dir/<owner>/<repo>.git.
	Dir string
	// Log receives the simulator's logs; nil discards them.
	Log logrus.FieldLogger
	// Now is the clock for timestamps and rate-limit windows (default
	// time.Now).
	Now func() time.Time
	// BaseURL is the URL clients reach the simulator at, used in payload
	// URLs. Start sets it from the listener; set it only when serving
	// Handler yourself.
	BaseURL string
	// RateLimit is the core rate limit per authenticated user per hour
	// (default 5000, as GitHub). Anonymous requests get 60.
	RateLimit int
	// RateLimitStatus is the status of a request over the limit: 403
	// (the default, GitHub's usual answer) or 429.
	RateLimitStatus int
	// DeliveryTimeout bounds one webhook delivery (default 10s, GitHub's).
	DeliveryTimeout time.Duration
	// AsyncDelivery makes the Go API return without waiting for the
	// webhooks it triggers (call Flush to wait). By default each Go API
	// call waits for its deliveries, which keeps tests deterministic; a
	// webhook receiver must then not call the Go API from inside its
	// handler (that would wait on itself).
	AsyncDelivery bool
	// Drop, if set, is asked about every delivery attempt; true drops it
	// (recorded in the delivery log as failed, never sent), to test
	// reconciliation after lost webhooks. SetDrop changes it later.
	Drop func(Delivery) bool
	// HTTPClient sends webhooks (default: a client with DeliveryTimeout
	// that does not follow redirects, as GitHub's deliverer).
	HTTPClient *http.Client
}

// Sim is a GitHub simulator: git repositories over smart HTTP, a REST API
// subset and webhooks. It is safe for concurrent use.
type Sim struct {
	opts    Options
	log     logrus.FieldLogger
	gitPath string
	client  *http.Client

	mu       sync.Mutex
	base     string // URL without trailing slash
	nextID   int64
	users    map[string]*user // by login
	tokens   map[string]*user
	tokenExp map[string]time.Time // expiry of installation tokens minted with a JWT
	// tokenInst is the installation of each token minted with a JWT;
	// AddApp's long-lived token has none (it acts for every
	// installation of its app).
	tokenInst map[string]*installation
	orgs      map[string]map[string]bool // org login -> member logins
	repos     map[string]*repo           // by "owner/name"
	apps      map[string]*app            // by slug
	hooks     map[int64]*hook
	delivery  []*delivery // all deliveries, in order
	drop      func(Delivery) bool
	rates     map[string]*rateState
	// throttled writes left to refuse for a secondary rate limit, and
	// the Retry-After they carry (SecondaryRateLimit).
	throttled  int
	retryAfter time.Duration

	q      deliveryQueue
	srv    *httpserver.Server
	served chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	// stopped is closed when the delivery goroutine has returned: after
	// Close, nothing more is sent.
	stopped chan struct{}
	closed  bool
}

type user struct {
	id     int64
	login  string
	perm   Permission
	token  string
	typ    string // "User", "Organization", "Bot"
	app    *app   // set for an app's bot user
	joined time.Time
}

type app struct {
	id         int64
	slug, name string
	owner      *user
	bot        *user
	hook       *hook
	created    time.Time
	events     []string
	key        *rsa.PrivateKey // signs the app's JWTs; made by AppCredentials
	// insts are the app's installations by account login: one on
	// every account that owns a repository (see install.go).
	insts map[string]*installation
}

// installation is an app's installation on one account (a user or an
// organization): it covers the account's repositories.
type installation struct {
	id      int64
	app     *app
	account *user
	created time.Time
	// excluded are the account's repositories outside the installation
	// (see RemoveFromInstallation); nil: it covers all of them.
	excluded map[*repo]bool
	// suspended is when the installation was suspended (zero: it is
	// not); uninstalled is set between DeleteInstallation and
	// CreateInstallation (see install.go).
	suspended   time.Time
	uninstalled bool
}

type repo struct {
	id            int64
	owner, name   string
	dir           string
	created       time.Time
	pushed        time.Time
	defaultBranch string
	gitMu         sync.Mutex // serialises ref updates with the state that records them

	issues     []*issue // index number-1
	labels     []*label
	milestones []*milestone
	comments   []*comment
	events     []*issueEvent
	reviews    []*review
	checkRuns  []*checkRun
	suites     []*checkSuite
	statuses   []*status
	hooks      []*hook
	// forgotten holds commits the simulator answers for as GitHub does
	// for a commit it does not have (see ForgetCommit), under Sim.mu.
	forgotten map[string]bool
	// public repositories stay readable by an installation's token
	// outside the installation (SetPublic), under Sim.mu.
	public bool
}

func (r *repo) fullName() string { return r.owner + "/" + r.name }

type label struct {
	id                 int64
	name, color, descr string
}

type milestone struct {
	id      int64
	number  int
	title   string
	descr   string
	state   string
	creator *user
	created time.Time
	updated time.Time
	due     time.Time
	closed  time.Time
}

type issue struct {
	id          int64
	number      int
	title, body string
	author      *user
	state       string
	labels      []*label
	milestone   *milestone
	assignees   []*user
	created     time.Time
	updated     time.Time
	closed      time.Time
	comments    int
	pr          *pull
}

type pull struct {
	id                      int64
	headRef, baseRef        string
	headSHA, baseSHA        string
	merged                  bool
	mergedAt                time.Time
	mergeSHA                string
	mergedBy                *user
	draft                   bool
	mergeable               bool // head merges into base cleanly
	commits, adds, dels, nf int
}

type comment struct {
	id      int64
	issue   *issue
	author  *user
	body    string
	created time.Time
	updated time.Time
}

type review struct {
	id        int64
	issue     *issue
	author    *user
	body      string
	state     string
	commitID  string
	submitted time.Time
}

type issueEvent struct {
	id       int64
	issue    *issue
	actor    *user
	event    string
	label    *label
	ms       string
	commitID string
	created  time.Time
}

type checkSuite struct {
	id         int64
	app        *app
	headSHA    string
	headBranch string
	before     string
	head       gitCommitInfo
	created    time.Time
	updated    time.Time
	completed  bool // check_suite completed was sent
}

type checkRun struct {
	id          int64
	suite       *checkSuite
	name        string
	headSHA     string
	externalID  string
	detailsURL  string
	status      string
	conclusion  string
	started     time.Time
	completed   time.Time
	title       string
	summary     string
	text        string
	annotations int
}

type status struct {
	id          int64
	sha         string
	state       string
	targetURL   string
	description string
	context     string
	creator     *user
	created     time.Time
	updated     time.Time
}

type hook struct {
	id      int64
	repo    *repo // nil for an app's hook
	app     *app  // set for an app's hook
	url     string
	secret  []byte
	events  []string
	created time.Time
	lastSt  string
	lastRC  int
}

func (h *hook) wants(event string) bool {
	for _, e := range h.events {
		if e == "*" || e == event {
			return true
		}
	}
	return false
}

// New validates opts and returns a simulator that is not yet serving: call
// Start (or serve Handler yourself and set Options.BaseURL). Close
// releases it.
func New(opts Options) (*Sim, error) {
	if opts.Dir == "" {
		return nil, errors.New("githubsim: Options.Dir is empty")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("githubsim: create dir: %w", err)
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("githubsim: git is required: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = 5000
	}
	if opts.RateLimit < 0 {
		return nil, errors.New("githubsim: Options.RateLimit is negative")
	}
	switch opts.RateLimitStatus {
	case 0:
		opts.RateLimitStatus = http.StatusForbidden
	case http.StatusForbidden, http.StatusTooManyRequests:
	default:
		return nil, fmt.Errorf("githubsim: Options.RateLimitStatus %d: want 403 or 429", opts.RateLimitStatus)
	}
	if opts.DeliveryTimeout == 0 {
		opts.DeliveryTimeout = 10 * time.Second
	}
	log := opts.Log
	if log == nil {
		log = logging.Discard()
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout:       opts.DeliveryTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &Sim{
		opts:      opts,
		log:       logging.For(log, "githubsim"),
		gitPath:   gitPath,
		client:    client,
		base:      strings.TrimRight(opts.BaseURL, "/"),
		nextID:    1000,
		users:     map[string]*user{},
		tokens:    map[string]*user{},
		tokenExp:  map[string]time.Time{},
		tokenInst: map[string]*installation{},
		orgs:      map[string]map[string]bool{},
		repos:     map[string]*repo{},
		apps:      map[string]*app{},
		hooks:     map[int64]*hook{},
		drop:      opts.Drop,
		rates:     map[string]*rateState{},
		done:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.q.init()
	go func() {
		defer close(s.stopped)
		s.deliverLoop(ctx)
	}()
	return s, nil
}

// Start listens on addr ("" means 127.0.0.1:0) and serves until ctx is
// cancelled or Close is called. It returns once the listener is bound, so
// URL is valid.
func (s *Sim) Start(ctx context.Context, addr string) error {
	srv, err := httpserver.New(httpserver.Options{Addr: addr, Handler: s.Handler(), Component: "githubsim", Log: s.opts.Log})
	if err != nil {
		return fmt.Errorf("githubsim: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("githubsim: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.srv != nil {
		s.mu.Unlock()
		return errors.New("githubsim: already started")
	}
	s.srv = srv
	s.base = srv.URL()
	s.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(sctx); err != nil {
			s.log.WithError(err).Warn("serve")
		}
	}()
	go func() {
		select {
		case <-s.done:
		case <-sctx.Done():
		}
		cancel()
	}()
	s.mu.Lock()
	s.served = served
	s.mu.Unlock()
	return nil
}

// Close stops serving and delivering; a delivery in progress is
// cancelled and those still queued are recorded as failed. It waits for
// the server and the delivery goroutine to stop, so that no webhook is
// sent after it returns.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	served := s.served
	s.mu.Unlock()
	close(s.done)
	s.cancel()
	s.q.close()
	if served != nil {
		<-served
	}
	<-s.stopped
	return nil
}

// URL returns the simulator's web URL (git and html_url base), without a
// trailing slash.
func (s *Sim) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// APIURL returns the REST base URL, with a trailing slash, in GitHub
// Enterprise form (<URL>/api/v3/): go-github's WithEnterpriseURLs and a
// client whose BaseURL is set to it both work.
func (s *Sim) APIURL() string { return s.URL() + "/api/v3/" }

// GitURL returns the clone URL of a repository ("owner/name").
func (s *Sim) GitURL(fullName string) string { return s.URL() + "/" + fullName + ".git" }

func (s *Sim) newID() int64 {
	s.nextID++
	return s.nextID
}

func nodeID(kind string, id int64) string {
	return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("0%d:%s%d", len(kind), kind, id)))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return fmt.Sprintf("%x", b)
}

func newToken() string { return "ghp_" + randomHex(18) }

func validLogin(login string) error {
	if login == "" || len(login) > 39 || strings.HasPrefix(login, "-") {
		return fmt.Errorf("%w: bad login %q", ErrInvalid, login)
	}
	for _, c := range login {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: bad login %q", ErrInvalid, login)
		}
	}
	return nil
}

// AddUser creates a user whose permission on every repository it does not
// own is perm, and returns a new personal access token for it. Adding an
// existing user changes its permission and issues another token.
func (s *Sim) AddUser(login string, perm Permission) (string, error) {
	if err := validLogin(login); err != nil {
		return "", fmt.Errorf("githubsim: add user: %w", err)
	}
	if !perm.valid() {
		return "", fmt.Errorf("githubsim: add user %s: %w: permission %q", login, ErrInvalid, perm)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(login)
	if u.typ == "Organization" {
		return "", fmt.Errorf("githubsim: add user %s: %w: is an organization", login, ErrInvalid)
	}
	u.perm = perm
	tok := newToken()
	u.token = tok
	s.tokens[tok] = u
	return tok, nil
}

// userLocked returns the user with login, creating it (read permission,
// no token) if unknown.
func (s *Sim) userLocked(login string) *user {
	if u, ok := s.users[login]; ok {
		return u
	}
	u := &user{id: s.newID(), login: login, perm: PermRead, typ: "User", joined: s.opts.Now()}
	s.users[login] = u
	return u
}

// AddOrg makes login an organization (repositories it owns show an
// Organization owner) with the given members, whose author association on
// its repositories is MEMBER.
func (s *Sim) AddOrg(login string, members ...string) error {
	if err := validLogin(login); err != nil {
		return fmt.Errorf("githubsim: add org: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.userLocked(login)
	o.typ = "Organization"
	m := s.orgs[login]
	if m == nil {
		m = map[string]bool{}
		s.orgs[login] = m
	}
	for _, l := range members {
		if err := validLogin(l); err != nil {
			return fmt.Errorf("githubsim: add org %s: %w", login, err)
		}
		s.userLocked(l)
		m[l] = true
	}
	return nil
}

// AppOptions describes a GitHub App. Apps are the only clients allowed to
// create check runs, as on GitHub; they are installed on every account
// that owns a repository, one installation each (install.go).
type AppOptions struct {
	// Slug names the app; its bot user is "<slug>[bot]".
	Slug string
	// Name is the display name (default Slug).
	Name string
	// WebhookURL, if set, receives the app's deliveries (with an
	// installation field), including check_run rerequested, which GitHub
	// sends only to the app that created the run.
	WebhookURL string
	// WebhookSecret signs the app's deliveries.
	WebhookSecret string
	// Events the app subscribes to (default check_run, check_suite,
	// pull_request, issue_comment, push).
	Events []string
}

// AddApp registers a GitHub App installed on every account that owns a
// repository (and on those that will) and returns a long-lived
// installation access token for it (write permission, may create check
// runs) that acts for each installation, on the repository's account;
// DeleteInstallation revokes it. Clients that authenticate as GitHub Apps do (a JWT
// signed with the app's key, exchanged for an installation token) get the
// key and IDs from AppCredentials.
func (s *Sim) AddApp(o AppOptions) (string, error) {
	if err := validLogin(o.Slug); err != nil {
		return "", fmt.Errorf("githubsim: add app: %w", err)
	}
	if o.WebhookURL != "" {
		if err := checkHookURL(o.WebhookURL); err != nil {
			return "", fmt.Errorf("githubsim: add app %s: %w", o.Slug, err)
		}
	}
	if o.Name == "" {
		o.Name = o.Slug
	}
	if len(o.Events) == 0 {
		o.Events = []string{"check_run", "check_suite", "pull_request", "issue_comment", "push"}
	}
	s.mu.Lock()
	if _, ok := s.apps[o.Slug]; ok {
		s.mu.Unlock()
		return "", fmt.Errorf("githubsim: add app %s: %w: exists", o.Slug, ErrInvalid)
	}
	now := s.opts.Now()
	a := &app{id: s.newID(), slug: o.Slug, name: o.Name, created: now, events: o.Events, insts: map[string]*installation{}}
	a.owner = s.userLocked("github")
	// Installed on the account of every repository there is, in the
	// order the accounts' first repositories were created.
	rs := make([]*repo, 0, len(s.repos))
	for _, r := range s.repos {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].id < rs[j].id })
	for _, r := range rs {
		s.instLocked(a, r)
	}
	bot := &user{id: s.newID(), login: o.Slug + "[bot]", perm: PermWrite, typ: "Bot", app: a, joined: now}
	a.bot = bot
	s.users[bot.login] = bot
	tok := "ghs_" + randomHex(18)
	bot.token = tok
	s.tokens[tok] = bot
	s.apps[o.Slug] = a
	if o.WebhookURL != "" {
		a.hook = &hook{id: s.newID(), app: a, url: o.WebhookURL, secret: []byte(o.WebhookSecret), events: o.Events, created: now, lastSt: "unused"}
		s.hooks[a.hook.id] = a.hook
	}
	s.mu.Unlock()
	return tok, nil
}

func splitFullName(fullName string) (string, string, error) {
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || validLogin(owner) != nil || name == "" || strings.Contains(name, "/") ||
		strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".git") || len(name) > 100 {
		return "", "", fmt.Errorf("%w: bad repository name %q: want owner/name", ErrInvalid, fullName)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", fmt.Errorf("%w: bad repository name %q", ErrInvalid, fullName)
		}
	}
	return owner, name, nil
}

// CreateRepo creates an empty repository "owner/name" (a bare git
// repository whose default branch is main) and its owner user if unknown.
func (s *Sim) CreateRepo(ctx context.Context, fullName string) error {
	owner, name, err := splitFullName(fullName)
	if err != nil {
		return fmt.Errorf("githubsim: create repo: %w", err)
	}
	dir := filepath.Join(s.opts.Dir, owner, name+".git")
	s.mu.Lock()
	if _, ok := s.repos[fullName]; ok {
		s.mu.Unlock()
		return fmt.Errorf("githubsim: create repo %s: %w: exists", fullName, ErrInvalid)
	}
	s.mu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		// The simulator's issues, pull requests and hooks live in memory;
		// reusing a repository left by another simulator would mix its
		// refs (refs/pull/N/head) with new numbers.
		return fmt.Errorf("githubsim: create repo %s: %w: %s already exists on disk (use a fresh Options.Dir)", fullName, ErrInvalid, dir)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("githubsim: create repo %s: %w", fullName, err)
	}
	if _, err := runGit(ctx, s.gitPath, s.opts.Dir, nil, nil, "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
		return fmt.Errorf("githubsim: create repo %s: %w", fullName, err)
	}
	// Advertise refs/pull/* like GitHub and let clients fetch any
	// reachable commit by SHA.
	if _, err := runGit(ctx, s.gitPath, dir, nil, nil, "config", "uploadpack.allowReachableSHA1InWant", "true"); err != nil {
		return fmt.Errorf("githubsim: create repo %s: %w", fullName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.repos[fullName]; ok {
		return fmt.Errorf("githubsim: create repo %s: %w: exists", fullName, ErrInvalid)
	}
	now := s.opts.Now()
	u := s.userLocked(owner)
	if u.typ == "User" && u.perm == PermRead {
		u.perm = PermAdmin
	}
	r := &repo{id: s.newID(), owner: owner, name: name, dir: dir, created: now, pushed: now, defaultBranch: "main"}
	s.repos[fullName] = r
	for _, a := range s.sortedApps() {
		s.instLocked(a, r)
	}
	return nil
}

func (s *Sim) repoLocked(fullName string) (*repo, error) {
	r, ok := s.repos[fullName]
	if !ok {
		return nil, fmt.Errorf("%w: repository %s", ErrNotFound, fullName)
	}
	return r, nil
}

func (s *Sim) knownUserLocked(login string) (*user, error) {
	u, ok := s.users[login]
	if !ok || u.typ == "Organization" {
		return nil, fmt.Errorf("%w: user %q", ErrNotFound, login)
	}
	return u, nil
}

// permLocked is u's permission on r: admin for the owner, else the
// permission the user was added with.
func (s *Sim) permLocked(r *repo, u *user) Permission {
	if u == nil {
		return PermNone
	}
	if u.login == r.owner {
		return PermAdmin
	}
	return u.perm
}

// assocLocked derives the author association GitHub shows for u on r.
func (s *Sim) assocLocked(r *repo, u *user) string {
	switch {
	case u.login == r.owner:
		return "OWNER"
	case s.orgs[r.owner][u.login]:
		return "MEMBER"
	case u.perm.canWrite():
		return "COLLABORATOR"
	}
	for _, is := range r.issues {
		if is.pr != nil && is.pr.merged && is.author == u {
			return "CONTRIBUTOR"
		}
	}
	return "NONE"
}

func (s *Sim) ident(login string) gitIdent {
	host := "users.noreply.github.com"
	return gitIdent{name: login, email: login + "@" + host, when: s.opts.Now()}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
