package pubsubhelper

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/pubsubhelper/client"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
	"github.com/tryd-ci/tryd/pubsubhelper/webhook"
)

const (
	testGitHubSecret    = "test-github-secret"
	testGerritSecret    = "test-gerrit-secret"
	testSubscriberToken = "test-subscriber-token"
)

// testServer is a pubsubhelper served on 127.0.0.1:0.
type testServer struct {
	URL     string
	J       *journal.Journal
	Client  *client.Client
	Dir     string
	stop    func()
	Options Options
}

// startServer opens a journal in dir (a new temporary directory if
// empty) and serves a Server on loopback until the test ends or Stop.
func startServer(t *testing.T, dir string, mod func(*Options)) *testServer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	reg := prometheus.NewRegistry()
	j, err := journal.Open(journal.Options{Dir: dir, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Journal:          j,
		GitHubSecrets:    []Secret{{Server: "github", Value: []byte(testGitHubSecret)}},
		GerritSecrets:    []Secret{{Server: "review", Value: []byte(testGerritSecret)}},
		SubscriberTokens: []Secret{{Server: "subscriber", Value: []byte(testSubscriberToken)}},
		Registry:         reg,
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := httpserver.New(httpserver.Options{Handler: s.Handler(), Component: "pubsubhelper", Registry: reg, Health: s.Health})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hs.Serve(ctx); close(done) }()
	c, err := client.New(hs.URL(), client.Options{Token: testSubscriberToken})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{URL: hs.URL(), J: j, Client: c, Dir: dir, Options: opts}
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			j.Close()
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) Stop() { ts.stop() }

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// postGitHub sends a delivery signed with secret ("" for unsigned) and
// returns the status code and response body.
func postGitHub(t *testing.T, base, event, delivery, secret string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/github-webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if event != "" {
		req.Header.Set("X-GitHub-Event", event)
	}
	if delivery != "" {
		req.Header.Set("X-GitHub-Delivery", delivery)
	}
	if secret != "" {
		req.Header.Set("X-Hub-Signature-256", sign(secret, body))
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func postGerrit(t *testing.T, base string, body []byte, auth func(*http.Request)) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/gerrit-webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("X-Origin-Url", "https://review.example.com/")
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

func bearer(secret string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }
}

func allEvents(t *testing.T, ts *testServer) []pubsubtypes.Event {
	t.Helper()
	evs, err := ts.Client.Recent(context.Background(), pubsubtypes.Cursor{}, pubsubtypes.Filter{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
	return evs
}

func fixtureJSON(t *testing.T, rel string) (string, []string) {
	t.Helper()
	dir := testenv.Fixture(t, rel)
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "raw" {
			return filepath.SkipDir
		}
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			r, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(r))
		}
		return nil
	})
	sort.Strings(files)
	return dir, files
}

// TestGitHubFixturesEndToEnd signs and delivers every recorded GitHub
// payload and checks that a subscriber sees each with the right fields.
func TestGitHubFixturesEndToEnd(t *testing.T) {
	ts := startServer(t, "", nil)
	dir, files := fixtureJSON(t, "github/webhooks")
	want := map[string]*pubsubtypes.Event{}
	for i, f := range files {
		body, _ := os.ReadFile(filepath.Join(dir, f))
		typ := strings.Split(f, "/")[0]
		id := fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
		code, resp := postGitHub(t, ts.URL, typ, id, testGitHubSecret, body, nil)
		if code != http.StatusOK {
			t.Errorf("%s: %d %s", f, code, resp)
			continue
		}
		ev, err := webhook.ParseGitHub(typ, body)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = ev
	}
	evs := allEvents(t, ts)
	if len(evs) != len(files) {
		t.Fatalf("subscriber sees %d events, want %d", len(evs), len(files))
	}
	for _, ev := range evs {
		w := want[ev.DeliveryID]
		if w == nil {
			t.Errorf("unexpected delivery %q", ev.DeliveryID)
			continue
		}
		if ev.Source != "github" || ev.Type != w.Type || ev.Server != "github" || !reflect.DeepEqual(ev.GitHub, w.GitHub) {
			t.Errorf("delivery %s: got %+v %+v, want %+v", ev.DeliveryID, ev, ev.GitHub, w.GitHub)
		}
	}
}

// TestGitHubSignatureTestVector checks GitHub's published HMAC example:
// the vector's signature is accepted (the body "Hello, World!" then fails
// as JSON, 400, not 401) and a one-digit change is refused.
func TestGitHubSignatureTestVector(t *testing.T) {
	var vec struct {
		Secret    string `json:"secret"`
		Payload   string `json:"payload"`
		Signature string `json:"signature"`
		Header    string `json:"X-Hub-Signature-256"`
	}
	b, err := os.ReadFile(testenv.Fixture(t, "github/delivery/signature-test-vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vec); err != nil {
		t.Fatal(err)
	}
	if err := github.ValidateSignature(vec.Header, []byte(vec.Payload), []byte(vec.Secret)); err != nil {
		t.Fatalf("go-github rejects the test vector: %v", err)
	}
	if sign(vec.Secret, []byte(vec.Payload)) != vec.Header || "sha256="+vec.Signature != vec.Header {
		t.Fatal("test vector is inconsistent")
	}
	ts := startServer(t, "", func(o *Options) { o.GitHubSecrets = []Secret{{Server: "gh", Value: []byte(vec.Secret)}} })
	code, _ := postGitHub(t, ts.URL, "ping", "vector-1", "", []byte(vec.Payload), map[string]string{"X-Hub-Signature-256": vec.Header})
	if code != http.StatusBadRequest {
		t.Errorf("vector signature: status %d, want 400 (signature accepted, body not JSON)", code)
	}
	bad := vec.Header[:len(vec.Header)-1] + "f"
	if strings.HasSuffix(vec.Header, "f") {
		bad = vec.Header[:len(vec.Header)-1] + "0"
	}
	code, _ = postGitHub(t, ts.URL, "ping", "vector-2", "", []byte(vec.Payload), map[string]string{"X-Hub-Signature-256": bad})
	if code != http.StatusUnauthorized {
		t.Errorf("altered signature: status %d, want 401", code)
	}
}

func TestGitHubRejects(t *testing.T) {
	ts := startServer(t, "", func(o *Options) { o.MaxBodyBytes = 64 << 10 })
	good := []byte(`{"action":"opened","repository":{"full_name":"o/r","name":"r","owner":{"login":"o"}},"issue":{"number":1}}`)
	big := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 70<<10)...)
	big = append(big, `"}`...)
	form := []byte("payload=" + url.QueryEscape(string(good)))
	for _, tc := range []struct {
		name            string
		event, delivery string
		secret          string
		body            []byte
		hdr             map[string]string
		want            int
	}{
		{"valid", "issues", "d-valid", testGitHubSecret, good, nil, 200},
		{"ping", "ping", "d-ping", testGitHubSecret, []byte(`{"zen":"Keep it simple.","hook_id":1}`), nil, 200},
		{"form encoded", "issues", "d-form", testGitHubSecret, form, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 200},
		{"missing signature", "issues", "d-1", "", good, nil, 401},
		{"wrong secret", "issues", "d-2", "not-the-secret", good, nil, 401},
		{"sha1 only", "issues", "d-3", "", good, map[string]string{"X-Hub-Signature": "sha1=0000000000000000000000000000000000000000"}, 401},
		{"garbage signature", "issues", "d-4", "", good, map[string]string{"X-Hub-Signature-256": "sha256=zz"}, 401},
		{"missing event", "", "d-5", testGitHubSecret, good, nil, 400},
		{"missing delivery", "issues", "", testGitHubSecret, good, nil, 400},
		{"bad delivery id", "issues", "../../etc", testGitHubSecret, good, nil, 400},
		{"malformed json", "issues", "d-6", testGitHubSecret, []byte(`{"action":`), nil, 400},
		{"not an object", "issues", "d-7", testGitHubSecret, []byte(`[]`), nil, 400},
		{"oversized", "issues", "d-8", testGitHubSecret, big, nil, 413},
		{"unsupported content type", "issues", "d-9", testGitHubSecret, good, map[string]string{"Content-Type": "text/xml"}, 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := postGitHub(t, ts.URL, tc.event, tc.delivery, tc.secret, tc.body, tc.hdr)
			if code != tc.want {
				t.Errorf("status %d (%s), want %d", code, strings.TrimSpace(body), tc.want)
			}
		})
	}
	if n := len(allEvents(t, ts)); n != 3 {
		t.Errorf("journal holds %d events, want the 3 valid ones", n)
	}
}

// TestGitHubDefaultLimit sends a body just over 25 MiB, streamed without
// Content-Length so that the MaxBytesReader, not the header, stops it.
func TestGitHubDefaultLimit(t *testing.T) {
	ts := startServer(t, "", nil)
	body := io.MultiReader(strings.NewReader(`{"pad":"`), io.LimitReader(zeros{}, 25<<20), strings.NewReader(`"}`))
	req, _ := http.NewRequest("POST", ts.URL+"/github-webhook", body)
	req.Header.Set("X-GitHub-Event", "issues")
	req.Header.Set("X-GitHub-Delivery", "big")
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestDuplicateDeliveriesRecordedOnce(t *testing.T) {
	ts := startServer(t, "", nil)
	body := []byte(`{"action":"labeled","repository":{"full_name":"o/r"},"pull_request":{"number":5},"label":{"name":"run-trybot"}}`)
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := postGitHub(t, ts.URL, "pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", testGitHubSecret, body, nil)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a duplicate delivery got %d, want 200", c)
		}
	}
	_, resp := postGitHub(t, ts.URL, "pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", testGitHubSecret, body, nil)
	var a struct {
		Seq       int64
		Duplicate bool
	}
	json.Unmarshal([]byte(resp), &a)
	if !a.Duplicate || a.Seq != 1 {
		t.Errorf("redelivery answered %s; want Duplicate and the first delivery's Seq", resp)
	}
	if evs := allEvents(t, ts); len(evs) != 1 || evs[0].GitHub.Label != "run-trybot" {
		t.Errorf("journal holds %d events, want 1", len(evs))
	}
}

func TestSecretRotation(t *testing.T) {
	ts := startServer(t, "", func(o *Options) {
		o.GitHubSecrets = []Secret{{Server: "gh", Value: []byte("old")}, {Server: "gh", Value: []byte("new")}, {Server: "ghe", Value: []byte("enterprise")}}
	})
	body := []byte(`{"zen":"z"}`)
	for i, sec := range []string{"old", "new", "enterprise"} {
		if code, resp := postGitHub(t, ts.URL, "ping", fmt.Sprint("rot-", i), sec, body, nil); code != 200 {
			t.Errorf("secret %q: %d %s", sec, code, resp)
		}
	}
	evs := allEvents(t, ts)
	if len(evs) != 3 || evs[0].Server != "gh" || evs[1].Server != "gh" || evs[2].Server != "ghe" {
		t.Errorf("events' servers: %+v", evs)
	}
}

func TestGerritFixturesEndToEnd(t *testing.T) {
	ts := startServer(t, "", nil)
	n := 0
	for _, rel := range []string{"gerrit/events/ssh-stream", "gerrit/webhooks-plugin/payloads"} {
		dir, files := fixtureJSON(t, rel)
		for _, f := range files {
			body, _ := os.ReadFile(filepath.Join(dir, f))
			if code, _ := postGerrit(t, ts.URL, body, bearer(testGerritSecret)); code != 200 {
				t.Errorf("%s/%s: status %d", rel, f, code)
				continue
			}
			n++
			want, _ := webhook.ParseGerrit(body)
			ev, err := ts.Client.Wait(context.Background(), pubsubtypes.Cursor{JournalID: ts.J.ID(), Seq: int64(n - 1)}, pubsubtypes.Filter{}, client.WaitOptions{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			want.Gerrit.Origin = "https://review.example.com/"
			if ev.Seq != int64(n) || ev.Type != want.Type || ev.Server != "review" || !reflect.DeepEqual(ev.Gerrit, want.Gerrit) {
				t.Errorf("%s: got %+v %+v\nwant %+v", f, ev, ev.Gerrit, want.Gerrit)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d Gerrit fixtures delivered", n)
	}
}

func TestGerritAuthAndErrors(t *testing.T) {
	ts := startServer(t, "", func(o *Options) {
		o.GerritSecrets = append(o.GerritSecrets, Secret{Server: "other", Value: []byte("second-secret")})
	})
	event := []byte(`{"type":"comment-added","project":{"name":"p"},"changeKey":{"key":"I1"},"change":{"number":"3"},"approvals":[{"type":"Run-TryBot","value":"1"}]}`)
	for _, tc := range []struct {
		name string
		body []byte
		auth func(*http.Request)
		want int
	}{
		{"bearer", event, bearer(testGerritSecret), 200},
		{"basic password", []byte(`{"type":"patchset-created","project":"p","change":{"number":4}}`), func(r *http.Request) { r.SetBasicAuth("gerrit", testGerritSecret) }, 200},
		{"second server's secret", []byte(`{"type":"ref-updated","refUpdate":{"refName":"refs/heads/main","newRev":"abc","project":"p"}}`), bearer("second-secret"), 200},
		{"unknown type accepted", []byte(`{"type":"shiny-new-event","project":"p","whatever":{"a":[1]}}`), bearer(testGerritSecret), 200},
		{"no auth", event, nil, 401},
		{"wrong bearer", event, bearer("nope"), 401},
		{"wrong basic", event, func(r *http.Request) { r.SetBasicAuth("gerrit", "nope") }, 401},
		{"secret as user name", event, func(r *http.Request) { r.SetBasicAuth(testGerritSecret, "") }, 401},
		{"malformed json", []byte(`{"type":"comment-added",`), bearer(testGerritSecret), 400},
		{"missing type", []byte(`{"project":"p"}`), bearer(testGerritSecret), 400},
		{"known type with bad field", []byte(`{"type":"comment-added","change":[]}`), bearer(testGerritSecret), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr := postGerrit(t, ts.URL, tc.body, tc.auth)
			if code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
			if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a Basic challenge: %q", hdr.Get("WWW-Authenticate"))
			}
		})
	}
	// The plugin's retry of the same event is recorded once.
	if code, _ := postGerrit(t, ts.URL, event, bearer(testGerritSecret)); code != 200 {
		t.Errorf("retry: %d", code)
	}
	evs := allEvents(t, ts)
	if len(evs) != 4 {
		t.Fatalf("journal holds %d events, want 4", len(evs))
	}
	if g := evs[0].Gerrit; g.Project != "p" || g.ChangeID != "I1" || g.ChangeNumber != 3 || len(g.Approvals) != 1 || g.Approvals[0].Type != "Run-TryBot" {
		t.Errorf("comment-added: %+v", g)
	}
	if evs[2].Server != "other" || evs[3].Type != "shiny-new-event" {
		t.Errorf("events: %+v", evs)
	}
}

// TestXBuildShape checks that /waitevent speaks x/build's pubsubtypes
// JSON: the same field names and JSON types.
func TestXBuildShape(t *testing.T) {
	// x/build's clients send no token: a server without subscriber
	// tokens serves them.
	ts := startServer(t, "", func(o *Options) { o.SubscriberTokens, o.OpenSubscribers = nil, true })
	postGerrit(t, ts.URL, []byte(`{"type":"patchset-created","project":"go","change":{"number":39551,"url":"https://go-review.googlesource.com/39551"},"patchSet":{"number":1,"revision":"abc"}}`), bearer(testGerritSecret))
	postGitHub(t, ts.URL, "issues", "x-1", testGitHubSecret, []byte(`{"action":"opened","repository":{"full_name":"golang/go"},"issue":{"number":7}}`), nil)
	get := func(q string) map[string]any {
		resp, err := http.Get(ts.URL + "/waitevent?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	g := get("after=2000-01-01T00:00:00Z")
	if _, err := time.Parse(time.RFC3339Nano, g["Time"].(string)); err != nil || !strings.HasSuffix(g["Time"].(string), "Z") {
		t.Errorf("Time %v is not RFC 3339 UTC", g["Time"])
	}
	ge, _ := g["Gerrit"].(map[string]any)
	if ge["URL"] != "https://go-review.googlesource.com/39551" || ge["Project"] != "go" || ge["CommitHash"] != "abc" || ge["ChangeNumber"] != 39551.0 {
		t.Errorf("Gerrit event %v", ge)
	}
	gh := get("after=" + url.QueryEscape(g["Time"].(string)))
	ghe, _ := gh["GitHub"].(map[string]any)
	if ghe["Action"] != "opened" || ghe["RepoOwner"] != "golang" || ghe["Repo"] != "go" || ghe["IssueNumber"] != 7.0 {
		t.Errorf("GitHub event %v", ghe)
	}
	to := get("timeout=50ms&after=" + url.QueryEscape(gh["Time"].(string)))
	if to["LongPollTimeout"] != true || to["Time"] == nil {
		t.Errorf("timeout answer %v", to)
	}
}

func TestLongPollWakesPromptly(t *testing.T) {
	ts := startServer(t, "", nil)
	type res struct {
		ev  *pubsubtypes.Event
		err error
		at  time.Time
	}
	done := make(chan res, 1)
	go func() {
		ev, err := ts.Client.Wait(context.Background(), pubsubtypes.Cursor{}, pubsubtypes.Filter{Repo: "o/r"}, client.WaitOptions{Timeout: 20 * time.Second})
		done <- res{ev, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond)
	// An event the filter rejects must not answer the poll.
	postGitHub(t, ts.URL, "ping", "p-1", testGitHubSecret, []byte(`{"repository":{"full_name":"o/other"}}`), nil)
	sent := time.Now()
	postGitHub(t, ts.URL, "push", "p-2", testGitHubSecret, []byte(`{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"o/r"}}`), nil)
	r := <-done
	if r.err != nil || r.ev.DeliveryID != "p-2" {
		t.Fatalf("Wait = %+v, %v", r.ev, r.err)
	}
	if d := r.at.Sub(sent); d > time.Second {
		t.Errorf("long poll answered %v after the delivery", d)
	}
	t.Logf("long poll woke %v after the delivery's acknowledgement began", r.at.Sub(sent))
}

func TestWaitEventQueries(t *testing.T) {
	ts := startServer(t, "", nil)
	payload := []byte(`{"action":"opened",  "repository":{"full_name":"o/r"},"issue":{"number":1}}`)
	postGitHub(t, ts.URL, "issues", "q-1", testGitHubSecret, payload, nil)
	postGerrit(t, ts.URL, []byte(`{"type":"topic-changed","change":{"project":"go","branch":"master","topic":"gc"}}`), bearer(testGerritSecret))
	ctx := context.Background()
	start := pubsubtypes.Cursor{JournalID: ts.J.ID()}
	for _, tc := range []struct {
		name string
		f    pubsubtypes.Filter
		seq  int64
	}{
		{"no filter", pubsubtypes.Filter{}, 1},
		{"source", pubsubtypes.Filter{Source: "gerrit"}, 2},
		{"type", pubsubtypes.Filter{Types: []string{"topic-changed"}}, 2},
		{"repo", pubsubtypes.Filter{Repo: "O/R"}, 1},
		{"project", pubsubtypes.Filter{Project: "go"}, 2},
		{"branch", pubsubtypes.Filter{Branch: "master"}, 2},
		{"topic", pubsubtypes.Filter{Topic: "gc"}, 2},
		{"nothing matches", pubsubtypes.Filter{Topic: "none"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ts.Client.Wait(ctx, start, tc.f, client.WaitOptions{Timeout: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if tc.seq == 0 {
				if !ev.LongPollTimeout || ev.Seq != 2 {
					t.Errorf("got %+v, want a timeout with cursor seq 2", ev)
				}
				return
			}
			if ev.Seq != tc.seq {
				t.Errorf("got seq %d, want %d", ev.Seq, tc.seq)
			}
		})
	}
	t.Run("raw payload byte for byte", func(t *testing.T) {
		ev, err := ts.Client.Wait(ctx, start, pubsubtypes.Filter{}, client.WaitOptions{Raw: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Raw, payload) {
			t.Errorf("Raw = %s, want %s", ev.Raw, payload)
		}
	})
	t.Run("client reports a rejected query", func(t *testing.T) {
		err := ts.Client.Subscribe(ctx, start, pubsubtypes.Filter{Source: "svn"}, client.SubscribeOptions{}, func(context.Context, *pubsubtypes.Event) error { return nil })
		if !errors.Is(err, client.ErrBadRequest) {
			t.Errorf("Subscribe with a bad filter: %v, want ErrBadRequest", err)
		}
	})
	for _, q := range []string{"after=yesterday", "afterseq=-1", "source=svn", "repo=noslash", "timeout=forever", "timeout=1h", "raw=maybe", "limit=0"} {
		t.Run("bad query "+q, func(t *testing.T) {
			for _, path := range []string{"/waitevent", "/recent"} {
				resp, err := http.Get(ts.URL + path + "?" + q)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 400 {
					t.Errorf("%s?%s: status %d, want 400", path, q, resp.StatusCode)
				}
			}
		})
	}
}

// TestReplayAfterRestart restarts the server on the same journal: a
// subscriber that has seen part of it gets exactly the rest, in order.
func TestReplayAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	for i := 1; i <= 5; i++ {
		postGitHub(t, ts.URL, "issues", fmt.Sprint("r-", i), testGitHubSecret, []byte(fmt.Sprintf(`{"action":"opened","repository":{"full_name":"o/r"},"issue":{"number":%d}}`, i)), nil)
	}
	seen, err := ts.Client.Wait(context.Background(), pubsubtypes.Cursor{JournalID: ts.J.ID(), Seq: 1}, pubsubtypes.Filter{}, client.WaitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur := seen.Cursor() // the subscriber has seen events 1 and 2
	ts.Stop()

	ts2 := startServer(t, dir, nil)
	for i := 6; i <= 7; i++ {
		postGitHub(t, ts2.URL, "issues", fmt.Sprint("r-", i), testGitHubSecret, []byte(fmt.Sprintf(`{"action":"opened","repository":{"full_name":"o/r"},"issue":{"number":%d}}`, i)), nil)
	}
	// A redelivery of an event from before the restart is still a duplicate.
	postGitHub(t, ts2.URL, "issues", "r-3", testGitHubSecret, []byte(`{"action":"opened","repository":{"full_name":"o/r"},"issue":{"number":3}}`), nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []int
	err = ts2.Client.Subscribe(ctx, cur, pubsubtypes.Filter{}, client.SubscribeOptions{WaitOptions: client.WaitOptions{Timeout: 100 * time.Millisecond}}, func(_ context.Context, ev *pubsubtypes.Event) error {
		got = append(got, ev.GitHub.IssueNumber)
		if len(got) == 5 {
			cancel()
		}
		return nil
	})
	if err != context.Canceled {
		t.Fatalf("Subscribe: %v", err)
	}
	if want := []int{3, 4, 5, 6, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("after restart the subscriber got issues %v, want %v", got, want)
	}
	// An x/build-style subscriber resuming by time gets the same.
	ev, err := ts2.Client.Wait(context.Background(), pubsubtypes.Cursor{Time: cur.Time}, pubsubtypes.Filter{}, client.WaitOptions{})
	if err != nil || ev.GitHub.IssueNumber != 3 {
		t.Errorf("time cursor after restart: %+v, %v", ev, err)
	}
}

// TestSubscribeRetries starts a subscription before the server exists.
func TestSubscribeRetries(t *testing.T) {
	ts := startServer(t, "", nil)
	addr := strings.TrimPrefix(ts.URL, "http://")
	ts.Stop()
	c, _ := client.New("http://"+addr, client.Options{Token: testSubscriberToken})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan *pubsubtypes.Event, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Subscribe(ctx, pubsubtypes.Cursor{Time: pubsubtypes.Time(time.Unix(1, 0))}, pubsubtypes.Filter{}, client.SubscribeOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, func(_ context.Context, ev *pubsubtypes.Event) error {
			got <- ev
			return io.EOF
		})
	}()
	time.Sleep(300 * time.Millisecond) // several failed attempts
	ts2 := startServerAt(t, addr)
	postGitHub(t, ts2.URL, "ping", "late", testGitHubSecret, []byte(`{}`), nil)
	select {
	case ev := <-got:
		if ev.DeliveryID != "late" {
			t.Errorf("got %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("subscription never recovered")
	}
	if err := <-errc; err != io.EOF {
		t.Errorf("Subscribe returned %v, want the callback's error", err)
	}
}

// startServerAt serves on a given address (to restart on the same port).
func startServerAt(t *testing.T, addr string) *testServer {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Journal: j, GitHubSecrets: []Secret{{Server: "github", Value: []byte(testGitHubSecret)}},
		SubscriberTokens: []Secret{{Server: "subscriber", Value: []byte(testSubscriberToken)}}})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := httpserver.New(httpserver.Options{Addr: addr, Handler: s.Handler(), Component: "pubsubhelper"})
	if err != nil {
		t.Fatal(err)
	}
	var lerr error
	for i := 0; i < 50; i++ {
		if lerr = hs.Listen(); lerr == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lerr != nil {
		t.Skipf("cannot listen on %s again: %v", addr, lerr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hs.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; j.Close() })
	return &testServer{URL: hs.URL(), J: j}
}

func TestNotConfigured(t *testing.T) {
	ts := startServer(t, "", func(o *Options) { o.GitHubSecrets, o.GerritSecrets = nil, nil })
	if code, _ := postGitHub(t, ts.URL, "ping", "n-1", testGitHubSecret, []byte(`{}`), nil); code != 404 {
		t.Errorf("github without secrets: %d, want 404", code)
	}
	if code, _ := postGerrit(t, ts.URL, []byte(`{"type":"x"}`), bearer("x")); code != 404 {
		t.Errorf("gerrit without secrets: %d, want 404", code)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	l.SetLevel(logrus.DebugLevel)
	ts2 := startServer(t, "", func(o *Options) { o.Log = l })
	postGitHub(t, ts2.URL, "issues", "s-1", "wrong", []byte(`{}`), nil)
	postGerrit(t, ts2.URL, []byte(`{"type":"x"}`), bearer("guess-"+testGerritSecret))
	postGerrit(t, ts2.URL, []byte(`{"type":`), bearer(testGerritSecret))
	resp, err := http.Get(ts2.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{testGitHubSecret, testGerritSecret} {
		if strings.Contains(logs.String(), secret) || strings.Contains(string(metrics), secret) {
			t.Errorf("secret %q appears in logs or metrics", secret)
		}
	}
	if !strings.Contains(string(metrics), `tryd_pubsubhelper_webhooks_total{result="unauthorized",source="github"} 1`) {
		t.Errorf("metrics lack the rejected delivery:\n%s", metrics)
	}
}

func TestSubscriberAuth(t *testing.T) {
	get := func(base, q, token string) int {
		req, _ := http.NewRequest("GET", base+"/waitevent?timeout=10ms&"+q, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	locked := startServer(t, "", func(o *Options) {
		o.SubscriberTokens = append(o.SubscriberTokens, Secret{Server: "subscriber", Value: []byte("rotated-subscriber-token")})
	})
	open := startServer(t, "", func(o *Options) { o.SubscriberTokens, o.OpenSubscribers = nil, true })
	for _, tc := range []struct {
		name     string
		base     string
		q, token string
		want     int
	}{
		{"token required", locked.URL, "", "", 401},
		{"wrong token", locked.URL, "", "nope", 401},
		{"token of the wrong length", locked.URL, "", testSubscriberToken + "x", 401},
		{"prefix of the token", locked.URL, "", testSubscriberToken[:5], 401},
		{"gerrit secret is no subscriber token", locked.URL, "", testGerritSecret, 401},
		{"right token", locked.URL, "", testSubscriberToken, 200},
		{"second token", locked.URL, "", "rotated-subscriber-token", 200},
		{"raw with token", locked.URL, "raw=1", testSubscriberToken, 200},
		{"open server", open.URL, "", "", 200},
		{"open server refuses raw", open.URL, "raw=1", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := get(tc.base, tc.q, tc.token); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
	c, _ := client.New(locked.URL, client.Options{Token: "nope"})
	err := c.Subscribe(context.Background(), pubsubtypes.Cursor{}, pubsubtypes.Filter{}, client.SubscribeOptions{}, func(context.Context, *pubsubtypes.Event) error { return nil })
	if !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("Subscribe with a wrong token: %v, want ErrUnauthorized", err)
	}
}

// TestClientRejectsMalformedToken: a token that cannot be sent as a
// header value is refused when the client is made, not on every poll.
func TestClientRejectsMalformedToken(t *testing.T) {
	for _, tok := range []string{"s3cr3t-value\n", " s3cr3t-value", "s3cr3t\r-value"} {
		if _, err := client.New("http://127.0.0.1:1", client.Options{Token: tok}); err == nil {
			t.Errorf("token %q accepted", tok)
		} else if strings.Contains(err.Error(), strings.TrimSpace(tok)) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
}

// TestSubscriberTokenRequired: a server must have subscriber tokens, or
// be told explicitly that its subscribers are open.
func TestSubscriberTokenRequired(t *testing.T) {
	j, err := journal.Open(journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := New(Options{Journal: j}); !errors.Is(err, ErrNoSubscriberToken) {
		t.Errorf("New without subscriber tokens: %v, want ErrNoSubscriberToken", err)
	}
	if _, err := New(Options{Journal: j, SubscriberTokens: []Secret{{Server: "s"}}}); err == nil {
		t.Error("New accepted an empty subscriber token")
	}
	if _, err := New(Options{Journal: j, OpenSubscribers: true}); err != nil {
		t.Errorf("New with OpenSubscribers: %v", err)
	}
}
