package githubsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// TestSignatureTestVector checks the simulator's HMAC code against the
// test vector GitHub publishes, and go-github's validator against it.
func TestSignatureTestVector(t *testing.T) {
	b, err := os.ReadFile(testenv.Fixture(t, "github/delivery/signature-test-vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Secret, Payload string
		Header          string `json:"X-Hub-Signature-256"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if got := Sign256([]byte(v.Secret), []byte(v.Payload)); got != v.Header {
		t.Fatalf("Sign256 = %s, want %s", got, v.Header)
	}
	if err := github.ValidateSignature(v.Header, []byte(v.Payload), []byte(v.Secret)); err != nil {
		t.Fatalf("go-github rejects the published vector: %v", err)
	}
	if got := Sign256([]byte("wrong"), []byte(v.Payload)); got == v.Header {
		t.Fatal("a wrong secret gave the same signature")
	}
}

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// asRequest rebuilds the received POST so go-github's validator sees it
// exactly as a receiving server would.
func asRequest(t *testing.T, r received) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", "http://receiver/hook", bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = r.header.Clone()
	return req
}

func TestDeliveryHeadersAndSignatures(t *testing.T) {
	w := scenario(t)
	for _, tc := range []struct {
		name   string
		rc     *receiver
		secret string
		target string
	}{
		{"repository hook", w.hookRC, w.secret, "repository"},
		{"app hook", w.appRC, "app-secret", "integration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := tc.rc.all()
			if len(all) == 0 {
				t.Fatal("no deliveries")
			}
			guids := map[string]bool{}
			for _, r := range all {
				h := r.header
				ev := h.Get("X-GitHub-Event")
				if ev == "" || !guidRE.MatchString(h.Get("X-GitHub-Delivery")) || h.Get("X-GitHub-Hook-ID") == "" ||
					h.Get("X-GitHub-Hook-Installation-Target-Type") != tc.target || h.Get("X-GitHub-Hook-Installation-Target-ID") == "" ||
					!strings.HasPrefix(h.Get("User-Agent"), "GitHub-Hookshot/") || h.Get("Content-Type") != "application/json" {
					t.Errorf("%s delivery headers: %v", ev, h)
				}
				if guids[h.Get("X-GitHub-Delivery")] {
					t.Errorf("GUID %s reused by a fresh delivery", h.Get("X-GitHub-Delivery"))
				}
				guids[h.Get("X-GitHub-Delivery")] = true
				payload, err := github.ValidatePayload(asRequest(t, r), []byte(tc.secret))
				if err != nil || !bytes.Equal(payload, r.body) {
					t.Errorf("%s: go-github ValidatePayload: %v", ev, err)
				}
				if _, err := github.ValidatePayload(asRequest(t, r), []byte("wrong secret")); err == nil {
					t.Errorf("%s: validated with a wrong secret", ev)
				}
				if err := github.ValidateSignature(h.Get("X-Hub-Signature"), r.body, []byte(tc.secret)); err != nil {
					t.Errorf("%s: legacy sha1 signature: %v", ev, err)
				}
				if _, err := github.ParseWebHook(ev, r.body); err != nil {
					t.Errorf("%s: go-github ParseWebHook: %v", ev, err)
				}
				var ids struct {
					Repository struct{ ID int64 } `json:"repository"`
				}
				if err := json.Unmarshal(r.body, &ids); err != nil {
					t.Fatal(err)
				}
				if tc.target == "repository" && h.Get("X-GitHub-Hook-Installation-Target-ID") != strconv.FormatInt(ids.Repository.ID, 10) {
					t.Errorf("%s: target id %s, repository id %d", ev, h.Get("X-GitHub-Hook-Installation-Target-ID"), ids.Repository.ID)
				}
				hasInst := strings.Contains(string(r.body), `"installation":{"id":`)
				if hasInst != (tc.target == "integration") {
					t.Errorf("%s: installation field present = %v for a %s hook", ev, hasInst, tc.target)
				}
			}
		})
	}
	// Only the app that owns a check run hears that it was rerequested.
	if n := len(w.hookRC.byEvent(t, "check_run", "rerequested")); n != 0 {
		t.Errorf("repository hook got %d check_run rerequested deliveries, want 0", n)
	}
	if n := len(w.appRC.byEvent(t, "check_run", "rerequested")); n != 1 {
		t.Errorf("app hook got %d check_run rerequested deliveries, want 1", n)
	}
	if rv := w.hookRC.byEvent(t, "pull_request_review", "submitted"); len(rv) != 1 || !strings.Contains(string(rv[0].body), `"state":"approved"`) {
		t.Errorf("pull_request_review submitted: %d deliveries, want one with state approved", len(rv))
	}
	if st := w.hookRC.byEvent(t, "status", ""); len(st) != 1 {
		t.Errorf("%d status deliveries, want 1", len(st))
	} else {
		ev, err := github.ParseWebHook("status", st[0].body)
		if err != nil {
			t.Fatal(err)
		}
		se := ev.(*github.StatusEvent)
		if se.GetState() != "success" || se.GetContext() != "tryd" || len(se.Branches) == 0 || se.Branches[0].GetName() != "main" ||
			se.GetCommit().GetSHA() != se.GetSHA() || se.GetCommit().GetAuthor().GetLogin() != "octo" {
			t.Errorf("status event: state %s context %s branches %v sha %s", se.GetState(), se.GetContext(), se.Branches, se.GetSHA())
		}
	}
	ping := w.hookRC.byEvent(t, "ping", "")
	if len(ping) != 1 || ping[0].header.Get("X-GitHub-Hook-ID") != strconv.FormatInt(w.hookID, 10) {
		t.Errorf("ping deliveries = %d", len(ping))
	}
}

func TestHookWithoutSecretIsUnsigned(t *testing.T) {
	w := newWorld(t, Options{})
	rc := newReceiver(t, w.s)
	if _, err := w.s.AddHook(ctxT(t), w.repo, HookOptions{URL: rc.srv.URL, Events: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.Push(ctxT(t), w.repo, "main", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	got := rc.all()
	if len(got) != 2 || got[0].header.Get("X-GitHub-Event") != "ping" || got[1].header.Get("X-GitHub-Event") != "push" {
		t.Fatalf("deliveries = %d", len(got))
	}
	for _, r := range got {
		if r.header.Get("X-Hub-Signature-256") != "" || r.header.Get("X-Hub-Signature") != "" {
			t.Errorf("unsigned hook got signature headers %v", r.header)
		}
	}
}

func TestDropAndRedeliver(t *testing.T) {
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	s.SetDrop(func(d Delivery) bool { return d.Event == "pull_request" })
	n, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "f", Title: "T", Files: map[string]string{"f": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := w.hookRC.byEvent(t, "pull_request", ""); len(got) != 0 {
		t.Fatalf("dropped delivery arrived %d times", len(got))
	}
	if got := w.hookRC.byEvent(t, "push", ""); len(got) != 1 {
		t.Fatalf("push deliveries = %d, want 1 (not dropped)", len(got))
	}
	var lost *Delivery
	for _, d := range s.Deliveries(w.repo) {
		if d.Event == "pull_request" && d.HookID == w.hookID {
			d := d
			lost = &d
		}
	}
	if lost == nil || !lost.Dropped || lost.StatusCode != 0 || lost.Pending {
		t.Fatalf("delivery log entry = %v, want dropped", lost != nil && lost.Dropped)
	}
	s.SetDrop(nil)
	if err := s.Redeliver(ctx, lost.GUID); err != nil {
		t.Fatal(err)
	}
	got := w.hookRC.byEvent(t, "pull_request", "opened")
	if len(got) != 1 || got[0].header.Get("X-GitHub-Delivery") != lost.GUID || !bytes.Equal(got[0].body, lost.Payload) {
		t.Fatalf("redelivery: %d deliveries, want one with GUID %s and the same body", len(got), lost.GUID)
	}
	if !strings.Contains(string(got[0].body), `"number":`+strconv.Itoa(n)) {
		t.Errorf("redelivered body is not the pull request's")
	}
	// Redelivering again repeats it, and the log marks redeliveries.
	if err := s.Redeliver(ctx, lost.GUID); err != nil {
		t.Fatal(err)
	}
	var redeliveries int
	for _, d := range s.Deliveries(w.repo) {
		if d.GUID == lost.GUID && d.Redelivery && d.StatusCode == 200 {
			redeliveries++
		}
	}
	if redeliveries != 2 {
		t.Errorf("log has %d successful redeliveries, want 2", redeliveries)
	}
	if err := s.Redeliver(ctx, "00000000-0000-0000-0000-000000000000"); err == nil {
		t.Error("redelivering an unknown GUID succeeded")
	}
}

func TestFailedDeliveryIsLogged(t *testing.T) {
	w := newWorld(t, Options{})
	w.hookRC.mu.Lock()
	w.hookRC.code = 500
	w.hookRC.mu.Unlock()
	if _, err := w.s.Push(ctxT(t), w.repo, "main", map[string]string{"x": "y"}); err != nil {
		t.Fatal(err)
	}
	var last Delivery
	for _, d := range w.s.Deliveries(w.repo) {
		if d.HookID == w.hookID {
			last = d
		}
	}
	if last.Event != "push" || last.StatusCode != 500 || last.Err == "" {
		t.Fatalf("last delivery to the hook: %s, status %d, err %q; want a failed push", last.Event, last.StatusCode, last.Err)
	}
}

func TestAuthorAssociation(t *testing.T) {
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	if err := s.AddOrg("acme", "mia"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser("mia", PermRead); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRepo(ctx, "acme/tool"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, "acme/tool", "main", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	// rita becomes a contributor once a pull request of hers is merged.
	n, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "r", Title: "T", Files: map[string]string{"r": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	gh := client(t, s, w.ownerTok)
	assoc := func(repo string, number int) string {
		owner, name, _ := strings.Cut(repo, "/")
		is, _, err := gh.Issues.Get(ctx, owner, name, number)
		if err != nil {
			t.Fatal(err)
		}
		return is.GetAuthorAssociation()
	}
	if got := assoc(w.repo, n); got != "NONE" {
		t.Errorf("before merge: %s, want NONE", got)
	}
	if _, err := s.MergePR(ctx, w.repo, n, "octo"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, repo, author, want string
	}{
		{"owner", w.repo, "octo", "OWNER"},
		{"collaborator", w.repo, "wendy", "COLLABORATOR"},
		{"contributor", w.repo, "rita", "CONTRIBUTOR"},
		{"org member", "acme/tool", "mia", "MEMBER"},
		{"none", "acme/tool", "rita", "NONE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			num, err := s.OpenIssue(ctx, tc.repo, tc.author, "hi", "")
			if err != nil {
				t.Fatal(err)
			}
			if got := assoc(tc.repo, num); got != tc.want {
				t.Errorf("author_association = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestGoAPIRejectsBadInput(t *testing.T) {
	w := newWorld(t, Options{})
	s, ctx := w.s, ctxT(t)
	cases := []struct {
		name string
		err  error
		run  func() error
	}{
		{"bad repo name", ErrInvalid, func() error { return s.CreateRepo(ctx, "no-slash") }},
		{"repo exists", ErrInvalid, func() error { return s.CreateRepo(ctx, w.repo) }},
		{"unknown repo", ErrNotFound, func() error { _, err := s.Push(ctx, "octo/none", "main", nil); return err }},
		{"bad branch", ErrInvalid, func() error { _, err := s.Push(ctx, w.repo, "-x", nil); return err }},
		{"escaping path", ErrInvalid, func() error { _, err := s.Push(ctx, w.repo, "main", map[string]string{"../x": ""}); return err }},
		{"git dir path", ErrInvalid, func() error { _, err := s.Push(ctx, w.repo, "main", map[string]string{".git/config": ""}); return err }},
		{"unknown user", ErrNotFound, func() error { _, err := s.Comment(ctx, w.repo, 1, "ghost", "x"); return err }},
		{"reader labels", ErrForbidden, func() error {
			n, err := s.OpenIssue(ctx, w.repo, "rita", "t", "")
			if err != nil {
				return err
			}
			return s.AddLabel(ctx, w.repo, n, "rita", "x")
		}},
		{"no commits", ErrInvalid, func() error {
			_, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "main", Title: "t"})
			return err
		}},
		{"bad permission", ErrInvalid, func() error { _, err := s.AddUser("zed", "superuser"); return err }},
		{"bad hook url", ErrInvalid, func() error { _, err := s.AddHook(ctx, w.repo, HookOptions{URL: "ftp://x"}); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	w := newWorld(t, Options{AsyncDelivery: true})
	s, ctx := w.s, ctxT(t)
	n, err := s.OpenPR(ctx, w.repo, "rita", PROptions{Head: "c", Title: "T", Files: map[string]string{"c": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	gh := client(t, s, w.writeTok)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, err := s.Comment(ctx, w.repo, n, "wendy", "hi"); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, _, err := gh.Issues.ListComments(ctx, "octo", "hello", n, nil); err != nil {
				t.Error(err)
			}
		}()
		go func(i int) {
			defer wg.Done()
			if _, err := s.PushToPR(ctx, w.repo, n, map[string]string{"c": strconv.Itoa(i)}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cs, _, err := gh.Issues.ListComments(ctx, "octo", "hello", n, nil)
	if err != nil || len(cs) != 4 {
		t.Fatalf("comments = %d, %v", len(cs), err)
	}
	if got := len(w.hookRC.byEvent(t, "pull_request", "synchronize")); got != 4 {
		t.Errorf("synchronize deliveries = %d, want 4", got)
	}
}

func TestCreateRepoRefusesLeftoverDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/octo/old.git", 0o755); err != nil {
		t.Fatal(err)
	}
	s := StartForTest(t, Options{Dir: dir})
	if err := s.CreateRepo(ctxT(t), "octo/old"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateRepo over a leftover repository = %v, want ErrInvalid", err)
	}
}
