package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/dashboard"
	tbclient "github.com/tryd-ci/tryd/trybot/client"
)

// Hostile data: every one of these must show as text and run nothing.
const (
	hostileSubject = `<script>window.pwned=1</script> fix "quotes" & <img src=x onerror="window.pwned=2">`
	hostileAuthor  = `Mallory <svg onload=window.pwned=3> <mallory@evil.example>`
	hostileBranch  = `x"><script>window.pwned=1</script>`
	hostileURL     = `javascript:window.pwned=6`
	// hostileLog mixes markup, colours, an OSC 8 hyperlink to a
	// javascript: URL and cursor movement.
	hostileLog = `printf 'plain <script>window.pwned=4</script>\n\033[1;92mGREEN-OK\033[0m \033]8;;javascript:window.pwned=5\007click\033]8;;\007 \033[2Kdone\n'`
)

// seeded is what seed put into the cluster.
type seeded struct {
	grid       map[string]int64 // "rev/builder" → build
	hostileLog int64            // build whose log is hostile
	live       int64            // build whose job waits for liveFile
	liveFile   string
	cached     [2]int64 // equal builds: the second is cached
	gated      int64    // build whose job waits for gateFile
	gateFile   string
	goodRun    tbclient.Run
	badRun     tbclient.Run
}

var gridBuilders = []string{"linux-amd64", "linux-amd64-race", "windows-amd64"}

// seed submits real builds: a post-submit history of three commits ×
// three builders (a first failure on linux-amd64 at the second commit,
// which carries a hostile subject and author), one on a hostile branch,
// a job with a hostile log, a job that waits to print a line live, and
// two try runs through Gerrit and the trybot (one passing, one failing).
func seed(t *testing.T, e *env) *seeded {
	t.Helper()
	s := &seeded{grid: map[string]int64{}, liveFile: filepath.Join(e.dir, "go-live"), gateFile: filepath.Join(e.dir, "go-gated")}
	ctx := context.Background()
	good, _, err := e.stack.Gerrit.CreateChange(ctx, e.stack.Project, "main", e.stack.Owner, "good change", map[string]string{"ok.txt": "yes\n"})
	if err != nil {
		t.Fatal(err)
	}
	bad, _, err := e.stack.Gerrit.CreateChange(ctx, e.stack.Project, "main", e.stack.Owner, "bad change", map[string]string{"other.txt": "no\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{good, bad} {
		if err := e.stack.Gerrit.Vote(ctx, n, 1, e.stack.Reviewer, map[string]int{"Run-TryBot": 1}, "", ""); err != nil {
			t.Fatal(err)
		}
	}

	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var ids []int64
	for i := 1; i <= 3; i++ {
		for _, b := range gridBuilders {
			if i == 3 && b == "windows-amd64" {
				continue // not built
			}
			fail := b == "linux-amd64" && i >= 2
			script := "echo building " + rev(i) + " on " + b
			if fail {
				script += "; echo 'FAIL: broken' >&2; exit 1"
			}
			labels := map[string]string{"repo": "proj", "branch": "main", "revision": rev(i), "builder": b, "kind": "post-submit",
				"commit_time": base.Add(time.Duration(i) * time.Hour).Format(time.RFC3339), "commit_author": "Gopher " + strconv.Itoa(i), "commit_subject": "commit number " + strconv.Itoa(i)}
			if i == 2 {
				labels["commit_subject"], labels["commit_author"] = hostileSubject, hostileAuthor
			}
			id := e.submit(labels, sh("all", script))
			s.grid[rev(i)+"/"+b] = id
			ids = append(ids, id)
		}
	}
	ids = append(ids, e.submit(map[string]string{"repo": "proj", "branch": hostileBranch, "revision": rev(9), "builder": "linux-amd64", "commit_subject": hostileURL}, sh("all", "echo hostile branch")))
	s.hostileLog = e.submit(map[string]string{"repo": "logs", "builder": "hostile"}, sh("hostile", hostileLog))
	ids = append(ids, s.hostileLog)
	s.live = e.submit(map[string]string{"repo": "logs", "builder": "live"}, sh("live", "echo first-line; while [ ! -f '"+s.liveFile+"' ]; do sleep 0.05; done; printf '\\033[33mLIVE-LINE-42\\033[0m\\n'"))
	s.gated = e.submit(map[string]string{"repo": "gated"}, sh("gated", "while [ ! -f '"+s.gateFile+"' ]; do sleep 0.05; done; echo released"))
	for _, id := range ids {
		e.wait(id)
	}
	for i := range s.cached {
		s.cached[i] = e.submit(map[string]string{"repo": "cache"}, &graph.Job{Name: "same", SourceMode: graph.SourceNone, Cacheable: true, Commands: []graph.Command{{Argv: []string{"echo", "same"}}}})
		e.wait(s.cached[i])
	}
	waitFor(t, "both try runs to finish", 90*time.Second, func() bool {
		runs, err := e.runs.Runs(ctx, tbclient.ListOptions{})
		if err != nil || len(runs) != 2 {
			return false
		}
		for _, r := range runs {
			if !r.State.Finished() {
				return false
			}
			switch int(r.Change) {
			case good:
				s.goodRun = r
			case bad:
				s.badRun = r
			}
		}
		return true
	})
	return s
}

func TestDashboard(t *testing.T) {
	e := startEnv(t)
	s := seed(t, e)
	t.Cleanup(func() {
		os.WriteFile(s.liveFile, nil, 0o644)
		os.WriteFile(s.gateFile, nil, 0o644)
	})

	t.Run("home", func(t *testing.T) {
		code, body := e.get("/")
		if code != 200 {
			t.Fatalf("GET / = %d\n%s", code, body)
		}
		contains(t, "home", body, `href="/grid/proj"`, `href="/grid/proj?branch=main"`, `href="/try/`+strconv.FormatInt(s.badRun.ID, 10)+`"`,
			"Recent try runs", "1</b> of 4 connected", `<a href="/builds/`)
		contains(t, "home", body, `x&#34;&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;`)
		lacks(t, "home", body, "<script>window.pwned")
		var v struct {
			Repos   []dashboard.Repo `json:"repos"`
			Recent  []tbclient.Run   `json:"recent_try_runs"`
			Workers struct{ Connected, Slots int }
			Queue   struct {
				RunningBuilds int `json:"running_builds"`
			}
		}
		getJSON(t, e, "/?format=json", &v)
		if len(v.Repos) != 1 || len(v.Recent) != 2 || v.Workers.Connected != 1 || v.Workers.Slots != 6 || v.Queue.RunningBuilds < 1 {
			t.Errorf("home JSON: %+v", v)
		}
	})

	t.Run("grid", func(t *testing.T) {
		code, body := e.get("/grid/proj?branch=main")
		if code != 200 {
			t.Fatalf("grid = %d\n%s", code, body)
		}
		contains(t, "grid", body, "linux-amd64-race", "windows-amd64", `<th class="platform" colspan="2">linux-amd64</th>`,
			"commit number 3", "Gopher 1", rev(3)[:10],
			`&lt;script&gt;window.pwned=1&lt;/script&gt; fix &#34;quotes&#34; &amp; &lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;`,
			`Mallory &lt;svg onload=window.pwned=3&gt;`,
			`href="/builds/`+strconv.FormatInt(s.grid[rev(2)+"/linux-amd64"], 10)+`"`)
		lacks(t, "grid", body, "<script>window", "<img src=x", "<svg onload")
		if n := strings.Count(body, `<td class="c fail first">`); n != 1 {
			t.Errorf("%d first-failure cells, want 1", n)
		}
		var g dashboard.Grid
		getJSON(t, e, "/grid/proj?branch=main&format=json", &g)
		if len(g.Commits) != 3 || g.More {
			t.Fatalf("grid JSON: %d commits, more %v", len(g.Commits), g.More)
		}
		col := map[string]int{}
		i := 0
		for _, p := range g.Platforms {
			for _, b := range p.Builders {
				col[b] = i
				i++
			}
		}
		cell := func(row int, b string) dashboard.Cell { return g.Commits[row].Cells[col[b]] }
		for _, tc := range []struct {
			name  string
			row   int
			b     string
			state string
			first bool
		}{
			{"newest, still failing", 0, "linux-amd64", dashboard.CellFail, false},
			{"not built", 0, "windows-amd64", dashboard.CellNone, false},
			{"first failure", 1, "linux-amd64", dashboard.CellFail, true},
			{"ok", 2, "linux-amd64", dashboard.CellOK, false},
			{"race ok", 1, "linux-amd64-race", dashboard.CellOK, false},
		} {
			c := cell(tc.row, tc.b)
			if c.State != tc.state || c.FirstFailure != tc.first {
				t.Errorf("%s: cell %+v, want %s first=%v", tc.name, c, tc.state, tc.first)
			}
		}
		if g.Commits[0].Revision != rev(3) || g.Commits[1].Subject != hostileSubject || g.Commits[1].Author != hostileAuthor {
			t.Errorf("rows: %+v", g.Commits)
		}

		// Pagination: one commit per page.
		var p2 dashboard.Grid
		getJSON(t, e, "/grid/proj?branch=main&n=1&page=2&format=json", &p2)
		if len(p2.Commits) != 1 || p2.Commits[0].Revision != rev(2) || !p2.More || !p2.Commits[0].Cells[col["linux-amd64"]].FirstFailure {
			t.Errorf("page 2 of 1: %+v", p2)
		}
		_, body = e.get("/grid/proj?branch=main&n=1&page=2")
		contains(t, "page 2", body, `rel="prev"`, `rel="next"`, `page=3`)

		// A hostile branch name is text in the page and a query value
		// in links.
		_, body = e.get("/grid/proj?branch=" + url.QueryEscape(hostileBranch))
		contains(t, "hostile branch grid", body, `x&#34;&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;`, hostileURL)
		lacks(t, "hostile branch grid", body, "<script>window", `href="javascript`)

		// New builds and builds that finish show on the next view (the
		// grid keeps finished builds and asks only for what changed).
		gate := filepath.Join(e.dir, "go-grid")
		nid := e.submit(map[string]string{"repo": "proj", "branch": "main", "revision": rev(4), "builder": "windows-amd64", "commit_subject": "commit number 4"},
			sh("all", "while [ ! -f '"+gate+"' ]; do sleep 0.05; done"))
		var g4 dashboard.Grid
		waitFor(t, "the new build to run", 30*time.Second, func() bool {
			getJSON(t, e, "/grid/proj?branch=main&format=json", &g4)
			return len(g4.Commits) == 4 && g4.Commits[0].Cells[col["windows-amd64"]].State == dashboard.CellRunning
		})
		os.WriteFile(gate, nil, 0o644)
		e.wait(nid)
		getJSON(t, e, "/grid/proj?branch=main&format=json", &g4)
		if c := g4.Commits[0].Cells[col["windows-amd64"]]; c.State != dashboard.CellOK || c.BuildID != nid {
			t.Errorf("after the build finished the grid shows %+v", c)
		}
		if len(g4.Commits) != 4 || !g4.Commits[2].Cells[col["linux-amd64"]].FirstFailure {
			t.Errorf("grid after an update: %+v", g4.Commits)
		}

		for _, bad := range []string{"/grid/proj?page=0", "/grid/proj?n=100000", "/grid/proj?page=x"} {
			if code, _ := e.get(bad); code != 400 {
				t.Errorf("GET %s = %d, want 400", bad, code)
			}
		}
	})

	t.Run("build", func(t *testing.T) {
		bid := s.badRun.Builds[0].BuildID
		code, body := e.get("/builds/" + strconv.FormatInt(bid, 10))
		if code != 200 {
			t.Fatalf("build = %d\n%s", code, body)
		}
		contains(t, "build page", body, "prepare", "test", "st-failed", "w1", `<svg class="timeline"`, "builder=check", "exit 1",
			`/logs/`, `?build=`+strconv.FormatInt(bid, 10))
		var b struct {
			Build *api.Build `json:"build"`
			Jobs  []struct {
				Name       string `json:"name"`
				DurationMS int64  `json:"duration_ms"`
				Cached     bool   `json:"cached"`
			} `json:"jobs"`
		}
		getJSON(t, e, "/builds/"+strconv.FormatInt(bid, 10)+"?format=json", &b)
		if b.Build == nil || b.Build.ID != bid || len(b.Jobs) != 2 {
			t.Errorf("build JSON: %+v", b)
		}
		// The second of two equal builds reuses the first's result.
		_, body = e.get("/builds/" + strconv.FormatInt(s.cached[1], 10))
		contains(t, "cached build", body, `cached from <a href="/builds/`+strconv.FormatInt(s.cached[0], 10)+`">`, "st-cached")
		// Job events of a finished build: replayed, then the end.
		_, ev := e.get("/builds/" + strconv.FormatInt(bid, 10) + "/events")
		contains(t, "build events", ev, `"type":"job_started","job_id":`, `"job_name":"test","state":"failed"`, `"build_state":"failed"`, "event: end")
		if code, _ := e.get("/builds/99999/events"); code != 404 {
			t.Errorf("events of an unknown build: %d, want 404", code)
		}
		if code, _ := e.get("/builds/99999"); code != 404 {
			t.Errorf("unknown build: %d, want 404", code)
		}
		if code, _ := e.get("/builds/abc"); code != 404 {
			t.Errorf("bad build ID: %d, want 404", code)
		}
	})

	t.Run("log", func(t *testing.T) {
		b, err := e.coord.Build(context.Background(), s.hostileLog)
		if err != nil {
			t.Fatal(err)
		}
		att := b.Jobs[0].Attempts[0].ID
		code, body := e.get("/logs/" + att + "?build=" + strconv.FormatInt(s.hostileLog, 10))
		if code != 200 {
			t.Fatalf("log = %d\n%s", code, body)
		}
		contains(t, "log page", body, `<a class="n" id="L1" href="#L1">1</a>plain &lt;script&gt;window.pwned=4&lt;/script&gt;`,
			`<span class="f10 b">GREEN-OK</span> click done`, `id="L2"`, `data-offset="`, `data-open="false"`, "job <b>hostile</b>")
		lacks(t, "log page", body, "<script>window", "javascript:", "\x1b")
		_, raw := e.get("/logs/" + att + "/raw")
		if !strings.HasPrefix(raw, "plain <script>window.pwned=4</script>\n\x1b[1;92mGREEN-OK") {
			t.Errorf("raw log %q", raw)
		}
		resp, err := http.Get(e.url + "/logs/" + att + "/raw?download=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") || resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("raw download headers: %v", resp.Header)
		}
		// Server-sent events of a finished log: everything, then end.
		_, ev := e.get("/logs/" + att + "/events?offset=0")
		contains(t, "events", ev, `"t":"GREEN-OK","c":"f10 b"`, "event: end")
		_, ev = e.get("/logs/"+att+"/events", "Last-Event-ID", strconv.Itoa(len("plain <script>window.pwned=4</script>\n")))
		contains(t, "resumed events", ev, "GREEN-OK", "event: end")
		lacks(t, "resumed events", ev, "pwned=4")
		// A running job's quiet stream sends keep-alive comments.
		var live string
		waitFor(t, "the live job to start", 30*time.Second, func() bool {
			lb, err := e.coord.Build(context.Background(), s.live)
			if err == nil && len(lb.Jobs) > 0 && len(lb.Jobs[0].Attempts) > 0 {
				live = lb.Jobs[0].Attempts[0].ID
			}
			return live != ""
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/logs/"+live+"/events?offset=0", nil)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		var seen []string
		for sc.Scan() && len(seen) < 50 {
			seen = append(seen, sc.Text())
			if sc.Text() == ": keepalive" {
				break
			}
		}
		resp.Body.Close()
		if len(seen) == 0 || seen[len(seen)-1] != ": keepalive" || !strings.Contains(strings.Join(seen, "\n"), `"t":"first-line"`) {
			t.Errorf("live events: %q, want the first line then a keep-alive", seen)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("events Content-Type %q", ct)
		}

		for path, want := range map[string]int{"/logs/0123456789abcdef": 404, "/logs/bad%20id": 404, "/logs/" + att + "/events?offset=-1": 400} {
			if code, _ := e.get(path); code != want {
				t.Errorf("GET %s = %d, want %d", path, code, want)
			}
		}
	})

	t.Run("workers", func(t *testing.T) {
		code, body := e.get("/workers")
		if code != 200 {
			t.Fatalf("workers = %d", code)
		}
		contains(t, "workers", body, `<td class="name">w1</td>`, "connected", "os=linux", " ago</td>", ">never</td>")
		var v struct {
			Workers []api.Worker `json:"workers"`
		}
		getJSON(t, e, "/workers?format=json", &v)
		// w1 runs; w2–w4 have tokens but never connected.
		if len(v.Workers) != 4 || v.Workers[0].Name != "w1" || v.Workers[0].Slots != 6 || !v.Workers[0].Connected || v.Workers[1].Connected {
			t.Errorf("workers JSON %+v", v)
		}
	})

	t.Run("try", func(t *testing.T) {
		path := "/try/" + strconv.FormatInt(s.badRun.ID, 10)
		code, body := e.get(path)
		if code != 200 {
			t.Fatalf("try = %d\n%s", code, body)
		}
		contains(t, "try run", body, "check", "st-failed", "FAIL: ok.txt is missing", `<pre class="tail">`, "full log", s.badRun.Revision,
			`href="/builds/`+strconv.FormatInt(s.badRun.Builds[0].BuildID, 10)+`"`)
		if s.badRun.ChangeURL != "" {
			contains(t, "try run", body, `id="change-link" href="`+strings.ReplaceAll(s.badRun.ChangeURL, "+", "&#43;"))
		}
		lacks(t, "try run tail", body, "\x1b[31m")
		// The base revision lacks ok.txt too: the failure is pre-existing.
		contains(t, "try run classification", body, `<span class="label class-pre-existing" title="fails at the base revision too">pre-existing</span>`,
			"Pre-existing failures (fail at the base revision too): test")
		q := "/try?repo=proj&change=" + strconv.Itoa(int(s.goodRun.Change)) + "&patch_set=1"
		code, body = e.get(q)
		if code != 200 || !strings.Contains(body, "Try run "+strconv.FormatInt(s.goodRun.ID, 10)) || !strings.Contains(body, "st-succeeded") {
			t.Errorf("GET %s = %d, want the good run's page", q, code)
		}
		var v struct {
			Run *tbclient.Run `json:"run"`
		}
		getJSON(t, e, path+"?format=json", &v)
		if v.Run == nil || v.Run.ID != s.badRun.ID {
			t.Errorf("try JSON %+v", v)
		}
		var raw struct {
			Run struct {
				Base string `json:"base"`
			} `json:"run"`
			Builds []struct {
				Failed []map[string]any `json:"failed"`
			} `json:"builds"`
		}
		getJSON(t, e, path+"?format=json", &raw)
		if len(raw.Builds) != 1 || len(raw.Builds[0].Failed) != 1 || raw.Builds[0].Failed[0]["classification"] != "pre-existing" || raw.Run.Base == "" {
			t.Errorf("try JSON: failed jobs %+v, base %q; want the test job classified pre-existing and the base", raw.Builds, raw.Run.Base)
		}
		var good struct {
			Builds []struct {
				Failed []map[string]any `json:"failed"`
			} `json:"builds"`
		}
		getJSON(t, e, "/try/"+strconv.FormatInt(s.goodRun.ID, 10)+"?format=json", &good)
		if len(good.Builds) != 1 || len(good.Builds[0].Failed) != 0 {
			t.Errorf("good run's JSON %+v: want no failed jobs, hence no classification", good.Builds)
		}
		if code, _ := e.get("/try?change=99999"); code != 404 {
			t.Errorf("try run of unknown change: %d, want 404", code)
		}
		if code, _ := e.get("/try?state=bogus"); code != 400 {
			t.Errorf("bad filter: %d, want 400", code)
		}
	})

	t.Run("force", func(t *testing.T) {
		from := s.badRun.Builds[0].BuildID
		path := e.url + "/builds/" + strconv.FormatInt(from, 10) + "/force"
		for _, tc := range []struct {
			name string
			auth string
			want int
		}{
			{"no credentials", "", 403},
			{"wrong token", "Bearer nope", 403},
			{"admin token", "Bearer " + adminToken, 201},
		} {
			req, _ := http.NewRequest(http.MethodPost, path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var fv struct {
				BuildID int64 `json:"build_id"`
			}
			json.NewDecoder(resp.Body).Decode(&fv)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
				continue
			}
			if tc.want == 201 {
				nb := e.wait(fv.BuildID)
				if nb.Labels["forced_from"] != strconv.FormatInt(from, 10) || nb.Labels["builder"] != "check" || nb.Labels["trybot_run"] != "" || nb.Source.Revision != s.badRun.Revision {
					t.Errorf("forced build %+v", nb)
				}
			}
		}
		// A session cookie without the CSRF token is refused.
		jar := login(t, e)
		resp, err := (&http.Client{Jar: jar}).PostForm(path, url.Values{"csrf": {"forged"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("forged CSRF token: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("browser", func(t *testing.T) { browserTests(t, e, s) })
}

func getJSON(t *testing.T, e *env, path string, v any) {
	t.Helper()
	code, body := e.get(path)
	if code != 200 {
		t.Fatalf("GET %s = %d\n%s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// login signs in as admin and returns the cookie jar.
func login(t *testing.T, e *env) http.CookieJar {
	t.Helper()
	jar := newJar()
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(e.url+"/login", url.Values{"token": {adminToken}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	return jar
}
