package githubsim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
)

// received is one webhook POST as a receiver saw it.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on 127.0.0.1:0 that records webhook
// deliveries from sim and answers with code.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []received
	code int
}

// newReceiver starts a receiver for sim's deliveries. Its cleanup first
// waits for the deliveries sim has queued (REST calls queue theirs
// without waiting, as GitHub answers before delivering), so that none
// arrives while it closes: httptest's Close closes idle keep-alive
// connections, and a request whose headers were just read on one would
// find its body cut ("use of closed network connection").
func newReceiver(t testing.TB, sim *Sim) *receiver {
	t.Helper()
	rc := &receiver{code: http.StatusOK}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: read body: %v", err)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: b})
		code := rc.code
		rc.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sim.Flush(ctx); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("receiver: wait for deliveries: %v", err)
		}
		rc.srv.Close()
	})
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// byEvent returns the deliveries of one event (and action, if not "").
func (rc *receiver) byEvent(t testing.TB, event, action string) []received {
	t.Helper()
	var out []received
	for _, r := range rc.all() {
		if r.header.Get("X-GitHub-Event") != event {
			continue
		}
		if action != "" && jsonField(t, r.body, "action") != action {
			continue
		}
		out = append(out, r)
	}
	return out
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// client returns a go-github client for the simulator authenticated with
// token ("" for anonymous).
func client(t testing.TB, s *Sim, token string) *github.Client {
	t.Helper()
	c := github.NewClient(nil)
	if token != "" {
		c = c.WithAuthToken(token)
	}
	c, err := c.WithEnterpriseURLs(s.APIURL(), s.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fixture world: a repository with a default branch, users of each
// permission, an app and hooks, used by several tests.
type world struct {
	s                        *Sim
	repo                     string
	owner, writer, reader    string
	ownerTok, writeTok, rTok string
	appTok                   string
	hookRC, appRC            *receiver
	secret                   string
	hookID                   int64
}

func newWorld(t testing.TB, opts Options) *world {
	t.Helper()
	s := StartForTest(t, opts)
	ctx := ctxT(t)
	w := &world{s: s, repo: "octo/hello", owner: "octo", writer: "wendy", reader: "rita", secret: "It's a Secret to Everybody"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	w.ownerTok, err = s.AddUser("octo", PermAdmin)
	must(err)
	w.writeTok, err = s.AddUser("wendy", PermWrite)
	must(err)
	w.rTok, err = s.AddUser("rita", PermRead)
	must(err)
	must(s.CreateRepo(ctx, w.repo))
	_, err = s.Push(ctx, w.repo, "main", map[string]string{"README.md": "hello\n", "go.mod": "module example.com/hello\n"})
	must(err)
	w.hookRC = newReceiver(t, s)
	w.appRC = newReceiver(t, s)
	w.hookID, err = s.AddHook(ctx, w.repo, HookOptions{URL: w.hookRC.srv.URL + "/hook", Secret: w.secret, Events: []string{"*"}})
	must(err)
	w.appTok, err = s.AddApp(AppOptions{Slug: "tryd", WebhookURL: w.appRC.srv.URL + "/app", WebhookSecret: "app-secret"})
	must(err)
	return w
}
