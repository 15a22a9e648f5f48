package gerritsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/notedb"
)

// timeLayout is Gerrit's REST timestamp format (always UTC).
const timeLayout = "2006-01-02 15:04:05.000000000"

// maxBody bounds request bodies.
const maxBody = 1 << 20

type timestamp time.Time

func (t timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(timeLayout) + `"`), nil
}

// Handler returns the simulator's HTTP handler: git smart HTTP and REST,
// both also under /a/ with basic auth.
func (s *Sim) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// request is a parsed REST request.
type request struct {
	r      *http.Request
	caller *Account // nil: anonymous
	segs   []string // unescaped path segments after the optional "a/"
}

func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	authed := false
	if rest, ok := strings.CutPrefix(path, "/a/"); ok {
		path, authed = "/"+rest, true
	}
	var caller *Account
	if authed {
		a, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="Gerrit Code Review"`)
			writeText(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		caller = a
	}
	if project, rest, ok := s.gitPath(path); ok {
		s.serveGit(w, r, project, rest)
		return
	}
	var segs []string
	for _, p := range strings.Split(strings.Trim(path, "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			writeText(w, http.StatusBadRequest, "Invalid path")
			return
		}
		segs = append(segs, u)
	}
	req := &request{r: r, caller: caller, segs: segs}
	v, err := s.route(req)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, ok := v.(noContent); ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, v, prettyPrint(r))
}

// prettyPrint follows Gerrit's rule: JSON is pretty-printed unless pp=0 or
// the Accept header asks for application/json (as go-gerrit does).
func prettyPrint(r *http.Request) bool {
	switch r.URL.Query().Get("pp") {
	case "0":
		return false
	case "1":
		return true
	}
	return !strings.Contains(r.Header.Get("Accept"), "application/json")
}

// noContent makes serveHTTP answer 204, as Gerrit does for deletions.
type noContent struct{}

// accountID resolves an account by id, username or email.
func (s *Sim) accountID(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if strconv.Itoa(a.ID) == id || strings.EqualFold(a.Username, id) || a.Email != "" && strings.EqualFold(a.Email, id) {
			return a.ID, nil
		}
	}
	return 0, notFound(id)
}

func (s *Sim) authenticate(r *http.Request) (*Account, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || pass == "" {
		return nil, ErrAuth
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if strings.EqualFold(a.Username, user) && a.HTTPPassword != "" && a.HTTPPassword == pass {
			c := *a
			return &c, nil
		}
	}
	return nil, ErrAuth
}

// gitPath recognizes smart-HTTP paths of known projects:
// /<project>[.git]/info/refs, /git-upload-pack, /git-receive-pack, /HEAD,
// /objects/...
func (s *Sim) gitPath(escaped string) (string, string, bool) {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return "", "", false
	}
	for _, suffix := range []string{"/info/refs", "/git-upload-pack", "/git-receive-pack", "/HEAD", "/objects/"} {
		i := strings.LastIndex(p, suffix)
		if i <= 1 {
			continue
		}
		project := strings.TrimSuffix(p[1:i], ".git")
		s.mu.Lock()
		_, ok := s.projects[project]
		s.mu.Unlock()
		if ok {
			return project, p[i:], true
		}
	}
	return "", "", false
}

func (s *Sim) serveGit(w http.ResponseWriter, r *http.Request, project, rest string) {
	if strings.HasPrefix(rest, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack" {
		writeText(w, http.StatusForbidden, "push is not supported by the simulator")
		return
	}
	h := &cgi.Handler{
		Path: s.opts.Git,
		Args: []string{"http-backend"},
		Dir:  s.opts.Dir,
		Env:  []string{"GIT_PROJECT_ROOT=" + s.opts.Dir, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + project + ".git" + rest
	r2.URL.RawPath = ""
	h.ServeHTTP(w, r2)
}

func writeJSON(w http.ResponseWriter, code int, v any, pretty bool) {
	var b []byte
	var err error
	if pretty {
		b, err = json.MarshalIndent(v, "", "  ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		writeText(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Disposition", "attachment")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, ")]}'\n")
	_, _ = w.Write(b)
	_, _ = io.WriteString(w, "\n")
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// restError carries Gerrit's text for an error kind.
type restError struct {
	kind error
	msg  string
}

func (e *restError) Error() string { return e.msg }
func (e *restError) Unwrap() error { return e.kind }

func notFound(id string) error { return &restError{ErrNotFound, "Not found: " + id} }

func badRequest(format string, args ...any) error {
	return &restError{ErrBadRequest, fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, err error) {
	msg := err.Error()
	var re *restError
	if errors.As(err, &re) {
		msg = re.msg
	} else {
		// Strip the "kind: " prefix that internal errors carry.
		for _, k := range []error{ErrNotFound, ErrBadRequest, ErrForbidden, ErrConflict, ErrAuth} {
			msg = strings.TrimPrefix(msg, k.Error()+": ")
		}
	}
	switch {
	case errors.Is(err, ErrNotFound):
		if re == nil {
			msg = "Not found: " + msg
		}
		writeText(w, http.StatusNotFound, msg)
	case errors.Is(err, ErrBadRequest):
		writeText(w, http.StatusBadRequest, msg)
	case errors.Is(err, ErrForbidden):
		writeText(w, http.StatusForbidden, msg)
	case errors.Is(err, ErrConflict):
		writeText(w, http.StatusConflict, msg)
	case errors.Is(err, ErrAuth):
		writeText(w, http.StatusUnauthorized, "Unauthorized")
	case errors.Is(err, errMethod):
		writeText(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	default:
		writeText(w, http.StatusInternalServerError, "Internal server error")
	}
}

var errMethod = errors.New("method not allowed")

func (s *Sim) route(req *request) (any, error) {
	segs := req.segs
	method := req.r.Method
	get := method == http.MethodGet || method == http.MethodHead
	if len(segs) == 0 || segs[0] == "" {
		return nil, notFound(req.r.URL.Path)
	}
	switch segs[0] {
	case "changes":
		if len(segs) == 1 || len(segs) == 2 && segs[1] == "" {
			if !get {
				return nil, errMethod
			}
			return s.queryChanges(req)
		}
		return s.routeChange(req, segs[1], segs[2:])
	case "projects":
		if !get {
			return nil, errMethod
		}
		if len(segs) == 1 || len(segs) == 2 && segs[1] == "" {
			return s.listProjects(), nil
		}
		if len(segs) == 2 {
			return s.getProject(segs[1])
		}
	case "accounts":
		if !get {
			return nil, errMethod
		}
		if len(segs) == 2 {
			return s.getAccount(req, segs[1])
		}
	case "config":
		if len(segs) == 4 && segs[1] == "server" && segs[2] == "version" && get {
			return "3.10.0-gerritsim", nil
		}
	}
	return nil, notFound(req.r.URL.Path)
}

func (s *Sim) routeChange(req *request, id string, rest []string) (any, error) {
	method := req.r.Method
	get := method == http.MethodGet || method == http.MethodHead
	post := method == http.MethodPost
	n, err := s.lookupChange(id)
	if err != nil {
		return nil, err
	}
	opts, err := parseOptions(req.r.URL.Query()["o"])
	if err != nil {
		return nil, err
	}
	switch {
	case len(rest) == 0 && get:
		return s.changeInfoByNumber(n, opts, req.caller)
	case len(rest) == 1 && rest[0] == "detail" && get:
		for _, o := range []string{"LABELS", "DETAILED_LABELS", "DETAILED_ACCOUNTS", "REVIEWER_UPDATES", "MESSAGES"} {
			opts[o] = true
		}
		return s.changeInfoByNumber(n, opts, req.caller)
	case len(rest) == 1 && rest[0] == "messages" && get:
		return s.listMessages(n)
	case len(rest) == 1 && rest[0] == "hashtags" && get:
		return s.getHashtags(n)
	case len(rest) == 3 && rest[0] == "revisions" && rest[2] == "review" && post:
		return s.postReview(req, n, rest[1])
	case len(rest) == 3 && rest[0] == "revisions" && (rest[2] == "review" || rest[2] == "commit" || rest[2] == "files") && get:
		ps, err := s.resolveRevision(n, rest[1])
		if err != nil {
			return nil, err
		}
		switch rest[2] {
		case "commit":
			return s.getCommit(n, ps)
		case "files":
			s.mu.Lock()
			defer s.mu.Unlock()
			return filesLocked(s.changes[n].patchSets[ps]), nil
		}
		return s.getReview(n, ps, req.caller)
	case len(rest) == 1 && post && (rest[0] == "submit" || rest[0] == "abandon" || rest[0] == "restore" || rest[0] == "hashtags"):
		return s.postAction(req, n, rest[0])
	case len(rest) == 3 && rest[0] == "reviewers" && rest[2] == "votes" && get:
		id, err := s.accountID(rest[1])
		if err != nil {
			return nil, err
		}
		return s.votes(n, id)
	case len(rest) == 4 && rest[0] == "reviewers" && rest[2] == "votes" && method == http.MethodDelete,
		len(rest) == 5 && rest[0] == "reviewers" && rest[2] == "votes" && rest[4] == "delete" && post:
		if err := needAuth(req); err != nil {
			return nil, err
		}
		id, err := s.accountID(rest[1])
		if err != nil {
			return nil, err
		}
		if err := s.deleteVote(req.r.Context(), n, req.caller.ID, id, rest[3]); err != nil {
			return nil, err
		}
		return noContent{}, nil
	case len(rest) == 3 && rest[0] == "revisions" && rest[2] == "submit" && post:
		return s.postAction(req, n, "submit")
	}
	if len(rest) > 0 && (get || post || method == http.MethodDelete) {
		return nil, notFound(strings.Join(rest, "/"))
	}
	return nil, errMethod
}

// lookupChange resolves the id forms Gerrit accepts: number,
// project~number, project~branch~Change-Id and Change-Id.
func (s *Sim) lookupChange(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(id, "~")
	match := func(pred func(c *change) bool) (int, error) {
		found := 0
		for n, c := range s.changes {
			if pred(c) {
				if found != 0 {
					return 0, notFound(id)
				}
				found = n
			}
		}
		if found == 0 {
			return 0, notFound(id)
		}
		return found, nil
	}
	switch len(parts) {
	case 1:
		if n, err := strconv.Atoi(id); err == nil && n > 0 {
			if _, ok := s.changes[n]; ok {
				return n, nil
			}
			return 0, notFound(id)
		}
		if strings.HasPrefix(id, "I") && len(id) == 41 {
			return match(func(c *change) bool { return c.changeID == id })
		}
	case 2:
		if n, err := strconv.Atoi(parts[1]); err == nil {
			if c, ok := s.changes[n]; ok && c.project.Name == parts[0] {
				return n, nil
			}
		}
	case 3:
		branch := strings.TrimPrefix(parts[1], "refs/heads/")
		return match(func(c *change) bool {
			return c.project.Name == parts[0] && c.branch == branch && c.changeID == parts[2]
		})
	}
	return 0, notFound(id)
}

var knownOptions = map[string]bool{
	"LABELS": true, "DETAILED_LABELS": true, "CURRENT_REVISION": true, "ALL_REVISIONS": true,
	"MESSAGES": true, "CURRENT_COMMIT": true, "ALL_COMMITS": true, "DETAILED_ACCOUNTS": true,
	"REVIEWER_UPDATES": true, "SUBMITTABLE": true, "CURRENT_FILES": true, "ALL_FILES": true,
	"DOWNLOAD_COMMANDS": true, "WEB_LINKS": true, "CHECK": true, "COMMIT_FOOTERS": true,
	"PUSH_CERTIFICATES": true, "TRACKING_IDS": true, "CHANGE_ACTIONS": true, "CURRENT_ACTIONS": true,
	"SKIP_DIFFSTAT": true, "SUBMIT_REQUIREMENTS": true, "STAR": true,
}

func parseOptions(os []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, o := range os {
		for _, p := range strings.Split(o, ",") {
			p = strings.ToUpper(strings.TrimSpace(p))
			if !knownOptions[p] {
				return nil, badRequest("\"%s\" is not a valid value for \"-o\"", p)
			}
			out[p] = true
		}
	}
	return out, nil
}

// accountInfo is Gerrit's AccountInfo; name, email and username appear
// with DETAILED_ACCOUNTS (and on account endpoints).
type accountInfo struct {
	AccountID int    `json:"_account_id"`
	Name      string `json:"name,omitempty"`
	Email     string `json:"email,omitempty"`
	Username  string `json:"username,omitempty"`
}

type approvalInfo struct {
	Value     int        `json:"value"`
	Date      *timestamp `json:"date,omitempty"`
	Tag       string     `json:"tag,omitempty"`
	AccountID int        `json:"_account_id"`
	Name      string     `json:"name,omitempty"`
	Email     string     `json:"email,omitempty"`
	Username  string     `json:"username,omitempty"`
}

type labelInfo struct {
	Approved    *accountInfo      `json:"approved,omitempty"`
	Rejected    *accountInfo      `json:"rejected,omitempty"`
	Recommended *accountInfo      `json:"recommended,omitempty"`
	Disliked    *accountInfo      `json:"disliked,omitempty"`
	Blocking    bool              `json:"blocking,omitempty"`
	Value       int               `json:"value,omitempty"`
	All         []approvalInfo    `json:"all,omitempty"`
	Values      map[string]string `json:"values,omitempty"`
}

type messageInfo struct {
	ID             string       `json:"id"`
	Tag            string       `json:"tag,omitempty"`
	Author         *accountInfo `json:"author,omitempty"`
	RealAuthor     *accountInfo `json:"real_author,omitempty"`
	Date           timestamp    `json:"date"`
	Message        string       `json:"message"`
	RevisionNumber int          `json:"_revision_number,omitempty"`
}

type gitPerson struct {
	Name  string    `json:"name"`
	Email string    `json:"email"`
	Date  timestamp `json:"date"`
	TZ    int       `json:"tz"`
}

type parentInfo struct {
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
}

type commitInfo struct {
	Commit    string       `json:"commit,omitempty"`
	Parents   []parentInfo `json:"parents"`
	Author    gitPerson    `json:"author"`
	Committer gitPerson    `json:"committer"`
	Subject   string       `json:"subject"`
	Message   string       `json:"message"`
}

type fetchInfo struct {
	URL string `json:"url"`
	Ref string `json:"ref"`
}

// fileInfo is Gerrit's FileInfo; status is omitted for modified files.
type fileInfo struct {
	Status        string `json:"status,omitempty"`
	LinesInserted int    `json:"lines_inserted,omitempty"`
	LinesDeleted  int    `json:"lines_deleted,omitempty"`
	SizeDelta     int64  `json:"size_delta"`
	Size          int64  `json:"size"`
}

// filesLocked lists a patch set's files as GET …/files does, with the
// synthetic /COMMIT_MSG entry Gerrit adds.
func filesLocked(ps *patchSet) map[string]fileInfo {
	msg := commitMsgFile(ps)
	out := map[string]fileInfo{"/COMMIT_MSG": {Status: "A", LinesInserted: strings.Count(msg, "\n"), SizeDelta: int64(len(msg)), Size: int64(len(msg))}}
	for _, f := range ps.files {
		fi := fileInfo{LinesInserted: f.Inserted, LinesDeleted: f.Deleted, SizeDelta: f.NewSize - f.OldSize, Size: f.NewSize}
		switch f.Status {
		case "A":
			fi.Status = "A"
		case "D":
			fi.Status, fi.Size = "D", f.OldSize
		}
		out[f.Path] = fi
	}
	return out
}

// commitMsgFile is the text Gerrit shows as /COMMIT_MSG.
func commitMsgFile(ps *patchSet) string {
	short := ps.parent
	if len(short) > 8 {
		short = short[:8]
	}
	const layout = "2006-01-02 15:04:05 -0700"
	return fmt.Sprintf("Parent:     %s (%s)\nAuthor:     %s <%s>\nAuthorDate: %s\nCommit:     %s <%s>\nCommitDate: %s\n\n%s",
		short, ps.parentSubject, ps.author.Name, ps.author.Email, ps.author.When.UTC().Format(layout),
		ps.committer.Name, ps.committer.Email, ps.committer.When.UTC().Format(layout), ps.message)
}

type revisionInfo struct {
	Kind     string               `json:"kind"`
	Number   int                  `json:"_number"`
	Created  timestamp            `json:"created"`
	Uploader accountInfo          `json:"uploader"`
	Ref      string               `json:"ref"`
	Fetch    map[string]fetchInfo `json:"fetch"`
	Commit   *commitInfo          `json:"commit,omitempty"`
	Files    map[string]fileInfo  `json:"files,omitempty"`
}

type reviewerUpdateInfo struct {
	Updated   timestamp   `json:"updated"`
	UpdatedBy accountInfo `json:"updated_by"`
	Reviewer  accountInfo `json:"reviewer"`
	State     string      `json:"state"`
}

type changeInfo struct {
	ID                     string                   `json:"id"`
	Project                string                   `json:"project"`
	Branch                 string                   `json:"branch"`
	Topic                  string                   `json:"topic,omitempty"`
	Hashtags               []string                 `json:"hashtags"`
	ChangeID               string                   `json:"change_id"`
	Subject                string                   `json:"subject"`
	Status                 string                   `json:"status"`
	Created                timestamp                `json:"created"`
	Updated                timestamp                `json:"updated"`
	Submitted              *timestamp               `json:"submitted,omitempty"`
	Submitter              *accountInfo             `json:"submitter,omitempty"`
	Insertions             int                      `json:"insertions"`
	Deletions              int                      `json:"deletions"`
	TotalCommentCount      int                      `json:"total_comment_count"`
	UnresolvedCommentCount int                      `json:"unresolved_comment_count"`
	HasReviewStarted       bool                     `json:"has_review_started"`
	MetaRevID              string                   `json:"meta_rev_id"`
	Number                 int                      `json:"_number"`
	Owner                  accountInfo              `json:"owner"`
	Labels                 map[string]*labelInfo    `json:"labels,omitempty"`
	PermittedLabels        map[string][]string      `json:"permitted_labels,omitempty"`
	Reviewers              map[string][]accountInfo `json:"reviewers,omitempty"`
	ReviewerUpdates        []reviewerUpdateInfo     `json:"reviewer_updates,omitempty"`
	Messages               []messageInfo            `json:"messages,omitempty"`
	CurrentRevisionNumber  int                      `json:"current_revision_number"`
	CurrentRevision        string                   `json:"current_revision,omitempty"`
	Revisions              map[string]*revisionInfo `json:"revisions,omitempty"`
	Submittable            *bool                    `json:"submittable,omitempty"`
	WorkInProgress         bool                     `json:"work_in_progress,omitempty"`
	IsPrivate              bool                     `json:"is_private,omitempty"`
	MoreChanges            bool                     `json:"_more_changes,omitempty"`
}

func (s *Sim) accountInfoLocked(id int, detailed bool) accountInfo {
	ai := accountInfo{AccountID: id}
	if a, ok := s.accounts[id]; ok && detailed {
		ai.Name, ai.Email, ai.Username = a.Name, a.Email, a.Username
	}
	return ai
}

func (s *Sim) changeInfoByNumber(n int, opts map[string]bool, caller *Account) (*changeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[n]
	if !ok {
		return nil, notFound(strconv.Itoa(n))
	}
	return s.changeInfoLocked(c, opts, caller), nil
}

func (s *Sim) changeInfoLocked(c *change, opts map[string]bool, caller *Account) *changeInfo {
	det := opts["DETAILED_ACCOUNTS"]
	notes := c.notes
	curNum := notes.CurrentPatchSet()
	cur := c.patchSets[curNum]
	ci := &changeInfo{
		ID:      fmt.Sprintf("%s~%s~%s", url.PathEscape(c.project.Name), c.branch, c.changeID),
		Project: c.project.Name, Branch: c.branch, Topic: notes.Topic, Hashtags: append([]string{}, notes.Hashtags...),
		ChangeID: c.changeID, Subject: notes.Subject, Status: strings.ToUpper(notes.Status),
		Created: timestamp(notes.Created), Updated: timestamp(notes.Updated),
		Insertions: cur.ins, Deletions: cur.del, MetaRevID: c.meta, Number: c.number,
		Owner: s.accountInfoLocked(notes.Owner, det), CurrentRevisionNumber: curNum,
		WorkInProgress: notes.WorkInProgress, IsPrivate: notes.Private,
	}
	for _, m := range notes.Messages {
		if m.Author != 0 && m.Author != notes.Owner {
			ci.HasReviewStarted = true
		}
	}
	if !notes.WorkInProgress {
		ci.HasReviewStarted = true
	}
	if notes.Status == notedb.StatusMerged && notes.Submitter != 0 {
		t := timestamp(notes.Submitted)
		ci.Submitted = &t
		sub := s.accountInfoLocked(notes.Submitter, det)
		ci.Submitter = &sub
	}
	if opts["SUBMITTABLE"] {
		_, ok := s.submitRecords(c, curNum)
		ok = ok && notes.Status == notedb.StatusNew
		ci.Submittable = &ok
	}
	if opts["LABELS"] || opts["DETAILED_LABELS"] {
		ci.Labels = s.labelsLocked(c, curNum, opts["DETAILED_LABELS"], det)
	}
	if opts["DETAILED_LABELS"] {
		ci.Reviewers = map[string][]accountInfo{}
		ids := sortedKeys(notes.Reviewers)
		for _, id := range ids {
			st := string(notes.Reviewers[id])
			ci.Reviewers[st] = append(ci.Reviewers[st], s.accountInfoLocked(id, det))
		}
		if caller != nil && notes.Status == notedb.StatusNew {
			ci.PermittedLabels = map[string][]string{}
			for _, l := range c.project.Labels {
				if r, ok := caller.permitted(l); ok {
					var vals []string
					for v := r.Min; v <= r.Max; v++ {
						vals = append(vals, valueKey(v))
					}
					ci.PermittedLabels[l.Name] = vals
				}
			}
		}
	}
	if opts["REVIEWER_UPDATES"] {
		for _, u := range c.reviewerUpdates {
			ci.ReviewerUpdates = append(ci.ReviewerUpdates, reviewerUpdateInfo{
				Updated: timestamp(u.When), UpdatedBy: s.accountInfoLocked(u.By, det),
				Reviewer: s.accountInfoLocked(u.Reviewer, det), State: string(u.State)})
		}
	}
	if opts["MESSAGES"] {
		ci.Messages = s.messagesLocked(c, det)
	}
	if opts["CURRENT_REVISION"] || opts["ALL_REVISIONS"] {
		ci.CurrentRevision = cur.sha
		ci.Revisions = map[string]*revisionInfo{}
		for num, ps := range c.patchSets {
			if num != curNum && !opts["ALL_REVISIONS"] {
				continue
			}
			ri := s.revisionInfoLocked(c, ps, det)
			if opts["ALL_COMMITS"] || opts["CURRENT_COMMIT"] && num == curNum {
				ri.Commit = s.commitInfoLocked(c, ps)
			}
			if opts["ALL_FILES"] || opts["CURRENT_FILES"] && num == curNum {
				ri.Files = filesLocked(ps)
			}
			ci.Revisions[ps.sha] = ri
		}
	}
	return ci
}

func (s *Sim) revisionInfoLocked(c *change, ps *patchSet, det bool) *revisionInfo {
	return &revisionInfo{
		Kind: ps.kind, Number: ps.number, Created: timestamp(ps.created), Uploader: s.accountInfoLocked(ps.uploader, det),
		Ref: psRef(c.number, ps.number), Fetch: map[string]fetchInfo{"http": {URL: s.baseURL + c.project.Name, Ref: psRef(c.number, ps.number)}},
	}
}

// getReview answers GET …/revisions/{rev}/review: ChangeInfo with detailed
// labels and accounts for that revision, which is the only one listed.
func (s *Sim) getReview(n, psNum int, caller *Account) (*changeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[n]
	if !ok {
		return nil, notFound(strconv.Itoa(n))
	}
	ci := s.changeInfoLocked(c, map[string]bool{"DETAILED_LABELS": true, "DETAILED_ACCOUNTS": true}, caller)
	ps := c.patchSets[psNum]
	ci.Labels = s.labelsLocked(c, psNum, true, true)
	ci.CurrentRevision = c.patchSets[c.notes.CurrentPatchSet()].sha
	ci.Revisions = map[string]*revisionInfo{ps.sha: s.revisionInfoLocked(c, ps, true)}
	return ci, nil
}

// getCommit answers GET …/revisions/{rev}/commit.
func (s *Sim) getCommit(n, psNum int) (*commitInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[n]
	if !ok {
		return nil, notFound(strconv.Itoa(n))
	}
	ci := s.commitInfoLocked(c, c.patchSets[psNum])
	ci.Commit = c.patchSets[psNum].sha
	return ci, nil
}

func (s *Sim) commitInfoLocked(c *change, ps *patchSet) *commitInfo {
	return &commitInfo{
		Parents:   []parentInfo{{Commit: ps.parent, Subject: ps.parentSubject}},
		Author:    gitPerson{ps.author.Name, ps.author.Email, timestamp(ps.author.When), 0},
		Committer: gitPerson{ps.committer.Name, ps.committer.Email, timestamp(ps.committer.When), 0},
		Subject:   ps.subject, Message: ps.message,
	}
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func (s *Sim) labelsLocked(c *change, psNum int, detailed, det bool) map[string]*labelInfo {
	votes := c.notes.Votes(psNum)
	out := map[string]*labelInfo{}
	for _, l := range c.project.Labels {
		li := &labelInfo{}
		for _, v := range votes {
			if v.Label != l.Name {
				continue
			}
			ai := s.accountInfoLocked(v.Account, det)
			switch {
			case v.Value == l.Max && v.Value > 0:
				if li.Approved == nil {
					li.Approved = &ai
				}
			case v.Value == l.Min && v.Value < 0:
				if li.Rejected == nil {
					li.Rejected = &ai
					li.Blocking = l.fn() == MaxWithBlock || l.fn() == AnyWithBlock
				}
			case v.Value > 0:
				if li.Recommended == nil {
					li.Recommended, li.Value = &ai, v.Value
				}
			case v.Value < 0:
				if li.Disliked == nil {
					li.Disliked, li.Value = &ai, v.Value
				}
			}
		}
		if detailed {
			li.Values = map[string]string{}
			for v := l.Min; v <= l.Max; v++ {
				li.Values[valueKey(v)] = l.Values[v]
			}
			byAcct := map[int]notedb.Approval{}
			for _, v := range votes {
				if v.Label == l.Name {
					byAcct[v.Account] = v
				}
			}
			ids := map[int]bool{}
			for id, st := range c.notes.Reviewers {
				if st == notedb.StateReviewer {
					ids[id] = true
				}
			}
			for id := range byAcct {
				ids[id] = true
			}
			for _, id := range sortedKeys(ids) {
				ai := s.accountInfoLocked(id, det)
				ap := approvalInfo{AccountID: id, Name: ai.Name, Email: ai.Email, Username: ai.Username}
				if v, ok := byAcct[id]; ok {
					t := timestamp(v.Granted)
					ap.Value, ap.Date, ap.Tag = v.Value, &t, v.Tag
				}
				li.All = append(li.All, ap)
			}
		}
		out[l.Name] = li
	}
	return out
}

func (s *Sim) messagesLocked(c *change, det bool) []messageInfo {
	out := []messageInfo{}
	for _, m := range c.notes.Messages {
		mi := messageInfo{ID: m.ID, Tag: m.Tag, Date: timestamp(m.Time), Message: m.Body, RevisionNumber: m.PatchSet}
		if m.Author != 0 {
			a := s.accountInfoLocked(m.Author, det)
			mi.Author = &a
			ra := a
			if m.RealAuthor != 0 {
				ra = s.accountInfoLocked(m.RealAuthor, det)
			}
			mi.RealAuthor = &ra
		}
		out = append(out, mi)
	}
	return out
}

func (s *Sim) listMessages(n int) ([]messageInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[n]
	if !ok {
		return nil, notFound(strconv.Itoa(n))
	}
	return s.messagesLocked(c, true), nil
}

func (s *Sim) getHashtags(n int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[n]
	if !ok {
		return nil, notFound(strconv.Itoa(n))
	}
	return append([]string{}, c.notes.Hashtags...), nil
}

// readJSON decodes a request body; an empty body leaves v as is.
func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return badRequest("cannot read request body")
	}
	if len(body) > maxBody {
		return badRequest("request body too large")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("Expected JSON object")
	}
	return nil
}

func needAuth(req *request) error {
	if req.caller == nil {
		return &restError{ErrForbidden, "Authentication required"}
	}
	return nil
}

// reviewJSON is ReviewInput as sent; label values may be numbers or
// numeric strings ("+1"), as Gerrit's Gson accepts.
type reviewJSON struct {
	Message      string                     `json:"message"`
	Tag          string                     `json:"tag"`
	Labels       map[string]json.RawMessage `json:"labels"`
	Notify       string                     `json:"notify"`
	StrictLabels *bool                      `json:"strict_labels"`
}

func parseLabelValue(raw json.RawMessage) (int, bool) {
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, true
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		if v, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(str), "+")); err == nil {
			return v, true
		}
	}
	return 0, false
}

func (s *Sim) postReview(req *request, n int, rev string) (any, error) {
	if err := needAuth(req); err != nil {
		return nil, err
	}
	var in reviewJSON
	if err := readJSON(req.r, &in); err != nil {
		return nil, err
	}
	switch strings.ToUpper(in.Notify) {
	case "", "NONE", "OWNER", "OWNER_REVIEWERS", "ALL":
	default:
		return nil, badRequest("Invalid value for notify: %s", in.Notify)
	}
	ps, err := s.resolveRevision(n, rev)
	if err != nil {
		return nil, err
	}
	labels := map[string]int{}
	for k, raw := range in.Labels {
		v, ok := parseLabelValue(raw)
		if !ok {
			return nil, badRequest("Expected JSON object")
		}
		labels[k] = v
	}
	if err := s.review(req.r.Context(), n, ps, req.caller.ID, ReviewInput{Labels: labels, Message: in.Message, Tag: in.Tag}); err != nil {
		return nil, err
	}
	out := map[string]any{}
	if len(labels) > 0 {
		out["labels"] = labels
	}
	return out, nil
}

func (s *Sim) resolveRevision(n int, rev string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[n]
	if !ok {
		return 0, notFound(strconv.Itoa(n))
	}
	if rev == "current" {
		return c.notes.CurrentPatchSet(), nil
	}
	if num, err := strconv.Atoi(rev); err == nil {
		if _, ok := c.patchSets[num]; ok {
			return num, nil
		}
		return 0, notFound(rev)
	}
	if len(rev) >= 4 {
		for num, ps := range c.patchSets {
			if strings.HasPrefix(ps.sha, strings.ToLower(rev)) {
				return num, nil
			}
		}
	}
	return 0, notFound(rev)
}

func (s *Sim) postAction(req *request, n int, action string) (any, error) {
	if err := needAuth(req); err != nil {
		return nil, err
	}
	ctx := req.r.Context()
	var err error
	switch action {
	case "hashtags":
		var in struct {
			Add    []string `json:"add"`
			Remove []string `json:"remove"`
		}
		if err := readJSON(req.r, &in); err != nil {
			return nil, err
		}
		return s.setHashtags(ctx, n, req.caller.ID, in.Add, in.Remove)
	case "submit":
		var in struct {
			OnBehalfOf json.RawMessage `json:"on_behalf_of"`
		}
		if err := readJSON(req.r, &in); err != nil {
			return nil, err
		}
		err = s.submit(ctx, n, req.caller.ID, false)
	default:
		var in struct {
			Message string `json:"message"`
		}
		if err := readJSON(req.r, &in); err != nil {
			return nil, err
		}
		to := notedb.StatusAbandoned
		if action == "restore" {
			to = notedb.StatusNew
		}
		err = s.setStatus(ctx, n, req.caller.ID, to, in.Message)
	}
	if err != nil {
		return nil, err
	}
	return s.changeInfoByNumber(n, map[string]bool{}, req.caller)
}

type projectInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Parent      string `json:"parent,omitempty"`
	Description string `json:"description,omitempty"`
	State       string `json:"state"`
}

func (s *Sim) listProjects() map[string]projectInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]projectInfo{}
	for name, p := range s.projects {
		out[name] = projectInfo{ID: url.PathEscape(name), Description: p.Description, State: "ACTIVE"}
	}
	return out
}

func (s *Sim) getProject(name string) (*projectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[name]
	if !ok {
		return nil, notFound(name)
	}
	return &projectInfo{ID: url.PathEscape(name), Name: name, Parent: "All-Projects", Description: p.Description, State: "ACTIVE"}, nil
}

func (s *Sim) getAccount(req *request, id string) (*accountInfo, error) {
	if id == "self" {
		if err := needAuth(req); err != nil {
			return nil, err
		}
		id = strconv.Itoa(req.caller.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if strconv.Itoa(a.ID) == id || strings.EqualFold(a.Username, id) || a.Email != "" && strings.EqualFold(a.Email, id) {
			ai := s.accountInfoLocked(a.ID, true)
			return &ai, nil
		}
	}
	return nil, notFound(id)
}
