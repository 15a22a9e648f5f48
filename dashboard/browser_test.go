package dashboard_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// newBrowser starts Debian's headless Chromium with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := testenv.NeedTool(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifactDir is where screenshots go: $TRYD_TEST_ARTIFACTS if set
// (kept, and every page is saved), else a test temporary directory
// (screenshots of failures only).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("TRYD_TEST_ARTIFACTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.TempDir()
}

// browser drives one tab; every failing step saves a screenshot.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("%s: screenshot failed: %v", name, err)
		return
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err == nil {
		b.t.Logf("%s: screenshot %s", name, p)
	}
}

func (b *browser) fail(name string, err error) {
	b.t.Helper()
	b.shot(name + "-failed")
	b.t.Fatalf("%s: %v", name, err)
}

// do runs steps, then checks that no hostile script ran: each would set
// window.pwned.
func (b *browser) do(name string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(name, err)
	}
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned !== undefined`))
	if err != nil {
		b.fail(name, err)
	}
	if pwned {
		b.shot(name + "-pwned")
		b.t.Errorf("%s: a hostile script ran (window.pwned is set)", name)
	}
	if os.Getenv("TRYD_TEST_ARTIFACTS") != "" {
		b.shot(name)
	}
}

// text returns the visible text of the first element matching a CSS
// selector.
func (b *browser) text(name, sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fail(name, err)
	}
	return s
}

func (b *browser) attr(name, sel, attr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), attr))
	if err != nil {
		b.fail(name, err)
	}
	return v.Value
}

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.fail("location", err)
	}
	return loc
}

func expect(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: visible text lacks %q:\n%s", what, w, got)
		}
	}
}

func browserTests(t *testing.T, e *env, s *seeded) {
	b := &browser{t: t, ctx: newBrowser(t), dir: artifactDir(t)}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	b.do("home", chromedp.Navigate(e.url+"/"))
	expect(t, "home", b.text("home", "main"), "Queue", "Workers", "proj", hostileBranch, "Try runs in progress", "Recent try runs", "Recent builds")

	b.do("grid", chromedp.Navigate(e.url+"/grid/proj?branch=main"))
	expect(t, "grid", b.text("grid", "table.grid"), "linux-amd64", "windows-amd64", "commit number 3", hostileSubject, hostileAuthor, "FAIL", "ok")
	// Clicking the first-failure cell leads to its build.
	first := strconv.FormatInt(s.grid[rev(2)+"/linux-amd64"], 10)
	b.do("grid-click", chromedp.Click(css(`td.first a`)), chromedp.WaitVisible(css(`table.jobs`)))
	if loc := b.location(); !strings.HasSuffix(loc, "/builds/"+first) {
		t.Errorf("first-failure cell led to %s, want build %s", loc, first)
	}

	b.do("build", chromedp.Navigate(e.url+"/builds/"+strconv.FormatInt(s.badRun.Builds[0].BuildID, 10)), chromedp.WaitVisible(css(`svg.timeline rect`)))
	expect(t, "build", b.text("build", "table.jobs"), "prepare", "test", "failed", "w1")

	b.do("try", chromedp.Navigate(e.url+"/try/"+strconv.FormatInt(s.badRun.ID, 10)))
	expect(t, "try run", b.text("try", "main"), "check", "failed", "FAIL: ok.txt is missing", "full log")

	b.do("workers", chromedp.Navigate(e.url+"/workers"))
	expect(t, "workers", b.text("workers", "table.workers"), "w1", "connected", "os=linux")

	hb, err := e.coord.Build(context.Background(), s.hostileLog)
	if err != nil {
		t.Fatal(err)
	}
	b.do("hostile-log", chromedp.Navigate(e.url+"/logs/"+hb.Jobs[0].Attempts[0].ID), chromedp.WaitVisible(css(`body[data-log-ended="true"]`)))
	expect(t, "hostile log", b.text("hostile-log", "#log"), "plain <script>window.pwned=4</script>", "GREEN-OK click done")
	if cls := b.attr("hostile-log", "#log span", "class"); cls != "f10 b" {
		t.Errorf("GREEN-OK class %q, want f10 b", cls)
	}

	t.Run("live build", func(t *testing.T) {
		b := &browser{t: t, ctx: b.ctx, dir: b.dir}
		gb, err := e.coord.Build(context.Background(), s.gated)
		if err != nil {
			t.Fatal(err)
		}
		row := `#job-` + gb.Jobs[0].ID
		b.do("build-running", chromedp.Navigate(e.url+"/builds/"+strconv.FormatInt(s.gated, 10)), chromedp.WaitVisible(css(row+` .st-running`)))
		if err := os.WriteFile(s.gateFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// The state changes without the user reloading.
		b.do("build-finished", chromedp.WaitVisible(css(row+` .st-succeeded`)), chromedp.WaitVisible(css(`svg.timeline rect`)))
	})

	t.Run("live log", func(t *testing.T) {
		b := &browser{t: t, ctx: b.ctx, dir: b.dir}
		var attempt string
		waitFor(t, "the live job to start", 30*time.Second, func() bool {
			lb, err := e.coord.Build(context.Background(), s.live)
			if err != nil || len(lb.Jobs) == 0 || len(lb.Jobs[0].Attempts) == 0 {
				return false
			}
			attempt = lb.Jobs[0].Attempts[0].ID
			return lb.Jobs[0].Attempts[0].LogBytes > 0
		})
		b.do("live-before", chromedp.Navigate(e.url+"/logs/"+attempt+"?build="+strconv.FormatInt(s.live, 10)), chromedp.WaitVisible(css(`#L1`)))
		if txt := b.text("live-before", "#log"); strings.Contains(txt, "LIVE-LINE-42") || !strings.Contains(txt, "first-line") {
			t.Fatalf("before the line is written the log shows %q", txt)
		}
		if err := os.WriteFile(s.liveFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// The line arrives over server-sent events, without a reload.
		b.do("live-after", chromedp.WaitVisible(css(`#L2`)), chromedp.WaitVisible(css(`body[data-log-ended="true"]`)))
		expect(t, "live log", b.text("live-after", "#log"), "first-line", "LIVE-LINE-42")
		if cls := b.attr("live-after", "#L2 + span", "class"); cls != "f3" {
			t.Errorf("live line class %q, want f3", cls)
		}
	})

	t.Run("force build", func(t *testing.T) {
		b := &browser{t: t, ctx: b.ctx, dir: b.dir}
		from := strconv.FormatInt(s.goodRun.Builds[0].BuildID, 10)
		b.do("force-signed-out", chromedp.Navigate(e.url+"/builds/"+from))
		if txt := b.text("force-signed-out", "main"); strings.Contains(txt, "Force build") || !strings.Contains(txt, "Sign in to force a build") {
			t.Errorf("signed out, the build page shows %q", txt)
		}
		b.do("force",
			chromedp.Navigate(e.url+"/login?next=/builds/"+from),
			chromedp.SendKeys(css(`input[name=token]`), adminToken),
			chromedp.Submit(css(`form.login`)),
			chromedp.WaitVisible(css(`#force`)),
			chromedp.Click(css(`#force`)),
			chromedp.WaitVisible(css(`a[href="/builds/`+from+`"]`)))
		loc := b.location()
		id, err := strconv.ParseInt(loc[strings.LastIndex(loc, "/")+1:], 10, 64)
		if err != nil || strconv.FormatInt(id, 10) == from {
			t.Fatalf("after force build the browser is at %s", loc)
		}
		if nb := e.wait(id); nb.Labels["forced_from"] != from {
			t.Errorf("forced build labels %v", nb.Labels)
		}
	})
}
