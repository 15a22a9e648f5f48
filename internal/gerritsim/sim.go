// Package gerritsim is a Gerrit simulator for tests and for the tryd dev
// demo. It owns a set of projects kept as real bare git repositories, serves
// them over git smart HTTP (git http-backend) under Gerrit's paths, records
// every change in Gerrit's NoteDb format (refs/changes/NN/CL/PS patch-set
// refs and the refs/changes/NN/CL/meta chain, written with package notedb),
// answers the subset of Gerrit's REST API that tryd uses, and POSTs events
// the way Gerrit's webhooks plugin does.
//
// Wire formats:
//
//   - Git: GET/POST /<project>/info/refs, /git-upload-pack and the same
//     under /a/ (authenticated), served by git http-backend.
//   - REST: JSON bodies after the ")]}'" line, timestamps
//     "2006-01-02 15:04:05.000000000" in UTC, label value keys "-1", " 0",
//     "+1"; errors as text/plain bodies with Gerrit's status codes (400 bad
//     input, 401 bad credentials under /a/, 403 no permission, 404
//     "Not found: <id>", 409 conflicts). Under /a/ HTTP basic auth with the
//     account's username and HTTP password is required.
//   - Webhooks: POST of the event JSON with Content-Type
//     "application/json; charset=UTF-8" and X-Origin-Url, up to MaxTries
//     attempts RetryInterval apart, in order per change.
//
// The simulator is safe for concurrent use. It listens only when asked:
// Handler returns its http.Handler (call SetURL when serving it yourself),
// and Start serves it on 127.0.0.1:0 through internal/httpserver.
//
// Typical use in a test (gerritsimtest.Start and gerritsimtest.NewWorld do
// the first steps):
//
//	s, _ := gerritsim.New(gerritsim.Options{Dir: t.TempDir()})
//	_ = s.Start()
//	defer s.Close()
//	_ = s.CreateProject(ctx, gerritsim.ProjectInput{Name: "proj"})
//	owner, _ := s.CreateAccount(gerritsim.AccountInput{Username: "o", HTTPPassword: "pw"})
//	s.AddWebhook(receiverURL, "comment-added", "patchset-created")
//	n, sha, _ := s.CreateChange(ctx, "proj", "main", owner, "subject", map[string]string{"f.go": "package f\n"})
//	_ = s.Vote(ctx, n, 1, owner, map[string]int{"Run-TryBot": 1}, "Please run the trybots.", "")
//	// git fetch s.GitURL("proj") refs/changes/*; GET s.URL()+"changes/?q=label:Run-TryBot=1"
package gerritsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/tryd-ci/tryd/internal/notedb"
)

// Error kinds. They map to HTTP status codes at the REST edge: ErrNotFound
// 404, ErrBadRequest 400, ErrForbidden 403, ErrConflict 409, ErrAuth 401.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	ErrForbidden  = errors.New("forbidden")
	ErrConflict   = errors.New("conflict")
	ErrAuth       = errors.New("unauthorized")
)

// Options configures a Sim. Dir is required; everything else has a
// default.
type Options struct {
	// Dir holds the bare repositories (<Dir>/<project>.git).
	Dir string
	// ServerID is gerrit.serverId, the domain of account idents in NoteDb;
	// default a random UUID.
	ServerID string
	// ServerIdent is the committer of meta commits; default
	// "Gerrit Code Review <gerrit@localhost>".
	ServerIdent notedb.Ident
	// Legacy writes NoteDb history like go-review before late 2021: no
	// approval UUIDs, no Copied-Label footers.
	Legacy bool
	// Log receives the simulator's logs; nil discards them.
	Log logrus.FieldLogger
	// Clock returns the current time; default time.Now. Times are truncated
	// to seconds, as git stores them.
	Clock func() time.Time
	// Git is the git executable; default "git" from PATH.
	Git string
	// HTTPClient delivers webhooks; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// WebhookMaxTries is the number of delivery attempts per event
	// (default 5, as the webhooks plugin's maxTries).
	WebhookMaxTries int
	// WebhookRetryInterval is the pause between attempts (default 1 s, the
	// plugin's retryInterval).
	WebhookRetryInterval time.Duration
	// FirstChange is the number of the first change (default 1).
	FirstChange int
}

// LabelFunction is a label's submit function.
type LabelFunction string

// Label functions Gerrit supports that the simulator evaluates.
const (
	MaxWithBlock LabelFunction = "MaxWithBlock"
	AnyWithBlock LabelFunction = "AnyWithBlock"
	MaxNoBlock   LabelFunction = "MaxNoBlock"
	NoBlock      LabelFunction = "NoBlock"
	NoOp         LabelFunction = "NoOp"
)

// Label is a project's label definition ([label "Name"] in project.config).
type Label struct {
	Name     string
	Min, Max int
	// Values describes each value; missing descriptions default to "".
	Values   map[int]string
	Function LabelFunction
	// CopyCondition decides which votes are copied to a new patch set. The
	// simulator understands OR-joined atoms: is:MIN, is:MAX, is:ANY,
	// is:POSITIVE, is:NEGATIVE, is:<n> and changekind:<kind> (NO_CHANGE,
	// NO_CODE_CHANGE, TRIVIAL_REBASE, TRIVIAL_REBASE_WITH_MESSAGE_UPDATE,
	// REWORK). Empty copies nothing.
	CopyCondition string
}

// DefaultLabels returns the labels every project gets unless it says
// otherwise: Code-Review (-2..+2, MaxWithBlock), Verified (-1..+1),
// Run-TryBot (0..+1) and TryBot-Result (-1..+1), the last three NoBlock.
func DefaultLabels() []Label {
	return []Label{
		{Name: "Code-Review", Min: -2, Max: 2, Function: MaxWithBlock, CopyCondition: "changekind:NO_CHANGE OR changekind:TRIVIAL_REBASE OR changekind:NO_CODE_CHANGE OR is:MIN",
			Values: map[int]string{-2: "This shall not be submitted", -1: "I would prefer this is not submitted as is", 0: "No score", 1: "Looks good to me, but someone else must approve", 2: "Looks good to me, approved"}},
		{Name: "Verified", Min: -1, Max: 1, Function: NoBlock,
			Values: map[int]string{-1: "Fails", 0: "No score", 1: "Verified"}},
		{Name: "Run-TryBot", Min: 0, Max: 1, Function: NoBlock,
			Values: map[int]string{0: "No score", 1: "Run TryBots"}},
		{Name: "TryBot-Result", Min: -1, Max: 1, Function: NoBlock,
			Values: map[int]string{-1: "This change failed on TryBots", 0: "No score", 1: "This change passed on TryBots"}},
	}
}

// Range is an inclusive range of label values an account may vote.
type Range struct{ Min, Max int }

// AccountInput describes an account to create.
type AccountInput struct {
	Username     string
	Name         string
	Email        string
	HTTPPassword string
	// Permissions maps a label name to the values the account may vote.
	// Nil grants every label's full range; a non-nil map grants exactly
	// what it lists.
	Permissions map[string]Range
}

// Account is a Gerrit account.
type Account struct {
	ID           int
	Username     string
	Name         string
	Email        string
	HTTPPassword string
	Permissions  map[string]Range
	Registered   time.Time
}

// Project is a Gerrit project.
type Project struct {
	Name        string
	Description string
	Labels      []Label
	// HeadBranch is the branch HEAD points to.
	HeadBranch string
	repo       *repo
}

// ProjectInput describes a project to create.
type ProjectInput struct {
	Name        string
	Description string
	// Branch is the initial branch (default "main"), created with an empty
	// initial commit as Gerrit's create-empty-commit does.
	Branch string
	// Labels overrides DefaultLabels when non-nil.
	Labels []Label
	// Creator is the account named as submitter of the ref-updated events
	// (optional).
	Creator int
}

// Sim is a running Gerrit simulator.
type Sim struct {
	opts Options
	log  logrus.FieldLogger
	now  func() time.Time

	mu          sync.Mutex
	projects    map[string]*Project
	accounts    map[int]*Account
	changes     map[int]*change
	nextChange  int
	nextAccount int
	hooks       []*Webhook
	events      []Event
	closed      bool
	baseURL     string

	wg       sync.WaitGroup
	stopCtx  context.Context
	stopHook context.CancelFunc
	srv      *httpserver.Server
	srvDone  chan error
	srvStop  context.CancelFunc
}

// New validates opts and returns an empty simulator that is not yet
// serving. To continue from what an earlier simulator left in Dir, call
// Load next.
func New(opts Options) (*Sim, error) {
	if opts.Dir == "" {
		return nil, errors.New("gerritsim: Options.Dir is empty")
	}
	if opts.ServerID == "" {
		opts.ServerID = randomUUID()
	}
	if strings.ContainsAny(opts.ServerID, "<> @\n") {
		return nil, fmt.Errorf("gerritsim: bad ServerID %q", opts.ServerID)
	}
	if opts.ServerIdent == (notedb.Ident{}) {
		opts.ServerIdent = notedb.Ident{Name: "Gerrit Code Review", Email: "gerrit@localhost"}
	}
	if opts.Log == nil {
		opts.Log = logging.Discard()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Git == "" {
		opts.Git = "git"
	}
	p, err := exec.LookPath(opts.Git)
	if err != nil {
		return nil, fmt.Errorf("gerritsim: %w", err)
	}
	opts.Git = p
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.WebhookMaxTries <= 0 {
		opts.WebhookMaxTries = 5
	}
	if opts.WebhookRetryInterval <= 0 {
		opts.WebhookRetryInterval = time.Second
	}
	if opts.FirstChange <= 0 {
		opts.FirstChange = 1
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("gerritsim: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		opts: opts, log: opts.Log, now: opts.Clock,
		projects: map[string]*Project{}, accounts: map[int]*Account{}, changes: map[int]*change{},
		nextChange: opts.FirstChange, nextAccount: 1000000,
		stopCtx: ctx, stopHook: cancel,
	}
	return s, nil
}

// ServerID returns the server id used in NoteDb idents.
func (s *Sim) ServerID() string { return s.opts.ServerID }

// Start serves the simulator on 127.0.0.1:0 until Close. It may be called
// once.
func (s *Sim) Start() error {
	s.mu.Lock()
	started := s.srv != nil || s.closed
	s.mu.Unlock()
	if started {
		return errors.New("gerritsim: Start called twice or after Close")
	}
	srv, err := httpserver.New(httpserver.Options{Handler: s.Handler(), Component: "gerritsim", Log: s.log})
	if err != nil {
		return fmt.Errorf("gerritsim: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("gerritsim: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.srv, s.srvStop, s.srvDone = srv, cancel, make(chan error, 1)
	s.baseURL = srv.URL() + "/"
	done := s.srvDone
	s.mu.Unlock()
	go func() { done <- srv.Serve(ctx) }()
	return nil
}

// SetURL sets the canonical web URL (with trailing slash) used in event
// payloads and X-Origin-Url when the handler is served by the caller.
func (s *Sim) SetURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	s.baseURL = u
}

// URL returns the simulator's base URL with a trailing slash, as Gerrit's
// canonicalWebUrl; "" before Start or SetURL.
func (s *Sim) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// GitURL returns the anonymous clone URL of a project.
func (s *Sim) GitURL(project string) string { return s.URL() + project }

// Close stops serving and stops webhook deliveries still retrying, then
// waits for them.
func (s *Sim) Close() error {
	s.stopHook()
	s.mu.Lock()
	s.closed = true
	stop, done := s.srvStop, s.srvDone
	s.srvStop = nil
	s.mu.Unlock()
	var err error
	if stop != nil {
		stop()
		err = <-done
	}
	s.wg.Wait()
	return err
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func (s *Sim) clock() time.Time { return s.now().UTC().Truncate(time.Second) }

// CreateAccount adds an account and returns its id (1000000 upward).
func (s *Sim) CreateAccount(in AccountInput) (int, error) {
	if in.Username == "" {
		return 0, fmt.Errorf("gerritsim: create account: %w: empty username", ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if strings.EqualFold(a.Username, in.Username) {
			return 0, fmt.Errorf("gerritsim: create account %q: %w: username taken", in.Username, ErrConflict)
		}
	}
	id := s.nextAccount
	s.nextAccount++
	var perms map[string]Range
	if in.Permissions != nil {
		perms = make(map[string]Range, len(in.Permissions))
		for k, v := range in.Permissions {
			perms[k] = v
		}
	}
	s.accounts[id] = &Account{ID: id, Username: in.Username, Name: in.Name, Email: in.Email, HTTPPassword: in.HTTPPassword, Permissions: perms, Registered: s.clock()}
	if err := s.saveAccountsLocked(); err != nil {
		delete(s.accounts, id)
		s.nextAccount--
		return 0, fmt.Errorf("gerritsim: create account %q: %w", in.Username, err)
	}
	return id, nil
}

// Account returns a copy of an account.
func (s *Sim) Account(id int) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[id]
	if !ok {
		return Account{}, fmt.Errorf("gerritsim: account %d: %w", id, ErrNotFound)
	}
	return *a, nil
}

// CreateProject creates a bare repository with an empty initial commit on
// its branch and a refs/meta/config holding project.config with its labels.
func (s *Sim) CreateProject(ctx context.Context, in ProjectInput) error {
	if !validProjectName(in.Name) {
		return fmt.Errorf("gerritsim: create project %q: %w: bad name", in.Name, ErrBadRequest)
	}
	if in.Branch == "" {
		in.Branch = "main"
	}
	labels := in.Labels
	if labels == nil {
		labels = DefaultLabels()
	}
	for _, l := range labels {
		if err := l.validate(); err != nil {
			return fmt.Errorf("gerritsim: create project %q: %w: %w", in.Name, ErrBadRequest, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.projects[in.Name]; ok {
		return fmt.Errorf("gerritsim: create project %q: %w: project already exists", in.Name, ErrConflict)
	}
	r := &repo{git: s.opts.Git, dir: filepath.Join(s.opts.Dir, filepath.FromSlash(in.Name)+".git")}
	if err := r.initBare(ctx, in.Branch); err != nil {
		return fmt.Errorf("gerritsim: create project %q: %w", in.Name, err)
	}
	now := s.clock()
	server := person{s.opts.ServerIdent, now}
	initial, err := r.commit(ctx, notedb.EmptyTree, nil, server, server, "Initial empty repository\n")
	if err != nil {
		return fmt.Errorf("gerritsim: create project %q: %w", in.Name, err)
	}
	cfgTree, err := r.buildTree(ctx, "", map[string]string{"project.config": projectConfig(in.Description, labels)})
	if err != nil {
		return fmt.Errorf("gerritsim: create project %q: %w", in.Name, err)
	}
	cfg, err := r.commit(ctx, cfgTree, nil, server, server, "Created project\n")
	if err != nil {
		return fmt.Errorf("gerritsim: create project %q: %w", in.Name, err)
	}
	if err := r.updateRefs(ctx, refUpdate{Ref: "refs/heads/" + in.Branch, New: initial}, refUpdate{Ref: "refs/meta/config", New: cfg}); err != nil {
		return fmt.Errorf("gerritsim: create project %q: %w", in.Name, err)
	}
	s.projects[in.Name] = &Project{Name: in.Name, Description: in.Description, Labels: labels, HeadBranch: in.Branch, repo: r}
	key := "project:" + in.Name
	created := struct {
		ProjectName string `json:"projectName"`
		HeadName    string `json:"headName"`
		Type        string `json:"type"`
		Created     int64  `json:"eventCreatedOn"`
	}{in.Name, "refs/heads/" + in.Branch, "project-created", now.Unix()}
	s.emitKey(key, Event{Type: "project-created", Project: in.Name, Body: mustJSON(created)})
	s.emitKey(key, s.refUpdatedEvent(in.Name, refUpdate{Ref: "refs/meta/config", New: cfg}, in.Creator, now))
	s.emitKey(key, s.refUpdatedEvent(in.Name, refUpdate{Ref: "refs/heads/" + in.Branch, New: initial}, in.Creator, now))
	return nil
}

func validProjectName(n string) bool {
	if n == "" || strings.HasPrefix(n, "/") || strings.HasSuffix(n, "/") || strings.Contains(n, "..") || strings.HasPrefix(n, "a/") || n == "a" {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./", c)) {
			return false
		}
	}
	for _, reserved := range []string{"changes", "projects", "accounts", "config", "plugins", "groups", "access", "Documentation"} {
		if n == reserved || strings.HasPrefix(n, reserved+"/") {
			return false
		}
	}
	return !strings.HasSuffix(n, ".git")
}

// projectConfig renders project.config as Gerrit stores it in
// refs/meta/config.
func projectConfig(desc string, labels []Label) string {
	var b strings.Builder
	b.WriteString("[project]\n")
	if desc != "" {
		fmt.Fprintf(&b, "\tdescription = %s\n", strings.ReplaceAll(desc, "\n", " "))
	}
	b.WriteString("[access]\n\tinheritFrom = All-Projects\n")
	for _, l := range labels {
		fmt.Fprintf(&b, "[label \"%s\"]\n\tfunction = %s\n\tdefaultValue = 0\n", l.Name, l.fn())
		if l.CopyCondition != "" {
			fmt.Fprintf(&b, "\tcopyCondition = %s\n", l.CopyCondition)
		}
		for v := l.Min; v <= l.Max; v++ {
			fmt.Fprintf(&b, "\tvalue = %s %s\n", valueKey(v), l.Values[v])
		}
	}
	return b.String()
}

// maxLabelSpan bounds a label's value range (Gerrit's values are shorts;
// real labels span a handful).
const maxLabelSpan = 64

func (l Label) validate() error {
	if l.Name == "" || strings.ContainsAny(l.Name, "\"[]=\n\r\x00 \t") {
		return fmt.Errorf("bad label name %q", l.Name)
	}
	if l.Min > l.Max || l.Min < -32768 || l.Max > 32767 || l.Max-l.Min > maxLabelSpan {
		return fmt.Errorf("label %s: bad value range %d..%d", l.Name, l.Min, l.Max)
	}
	return nil
}

func (l Label) fn() LabelFunction {
	if l.Function == "" {
		return MaxWithBlock
	}
	return l.Function
}

// valueKey formats a label value as Gerrit's REST maps key it: "-1",
// " 0", "+1".
func valueKey(v int) string {
	switch {
	case v > 0:
		return fmt.Sprintf("+%d", v)
	case v == 0:
		return " 0"
	}
	return fmt.Sprintf("%d", v)
}

// Projects returns the project names, sorted.
func (s *Sim) Projects() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.projects))
	for n := range s.projects {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// RepoDir returns the bare repository directory of a project.
func (s *Sim) RepoDir(project string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[project]
	if !ok {
		return "", fmt.Errorf("gerritsim: project %q: %w", project, ErrNotFound)
	}
	return p.repo.dir, nil
}

func (p *Project) label(name string) (Label, bool) {
	for _, l := range p.Labels {
		if strings.EqualFold(l.Name, name) {
			return l, true
		}
	}
	return Label{}, false
}

// permitted returns the range account a may vote on label l.
func (a *Account) permitted(l Label) (Range, bool) {
	if a.Permissions == nil {
		return Range{l.Min, l.Max}, true
	}
	r, ok := a.Permissions[l.Name]
	if !ok {
		return Range{}, false
	}
	if r.Min < l.Min {
		r.Min = l.Min
	}
	if r.Max > l.Max {
		r.Max = l.Max
	}
	return r, r.Min <= r.Max
}
