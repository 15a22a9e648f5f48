package gitmirror

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tryd-ci/tryd/gitmirror/client"
)

// tarEntries lists a gzip'd tar's entries as "name mode type size sha"
// lines (with link targets and contents), sorted.
func tarEntries(t testing.TB, gz []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %o %c %q %q", h.Name, h.Mode, h.Typeflag, h.Linkname, body))
	}
	sort.Strings(out)
	return out
}

func getTarball(t testing.TB, base, repo, rev string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(base + "/" + repo + ".tar.gz?rev=" + rev)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestNudgeThenTarballEqualsGitArchive(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}})
	ctx := ctxT(t)

	c := up.push("second")
	if err := tm.Nudge("proj"); err != nil {
		t.Fatal(err)
	}
	waitRefs(t, tm, "proj", "refs/heads/main", c)

	resp, body := getTarball(t, tm.url, "proj", c)
	if resp.StatusCode != 200 {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	if got := resp.Header.Get(client.HeaderCommit); got != c {
		t.Errorf("commit header %q, want %q", got, c)
	}
	if got, want := resp.Header.Get(client.HeaderTree), gitT(t, up.bare, "rev-parse", c+"^{tree}"); got != want {
		t.Errorf("tree header %q, want %q", got, want)
	}
	out, err := exec.Command("git", "-C", up.bare, "archive", "--format=tar.gz", c).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, out) {
		t.Errorf("tarball differs from git archive of the upstream (%d vs %d bytes)", len(body), len(out))
	}
	got, want := tarEntries(t, body), tarEntries(t, out)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries differ:\n got %q\nwant %q", got, want)
	}
	if len(got) < 5 {
		t.Errorf("only %d entries: %q", len(got), got)
	}

	// Later requests are cache hits with the same bytes; a ref name
	// and an abbreviated hash resolve to the same tarball.
	for _, rev := range []string{c, "refs/heads/main", c[:12]} {
		resp, body2 := getTarball(t, tm.url, "proj", rev)
		// "join" when it came just as the first build was being filed.
		cache := resp.Header.Get(client.HeaderCache)
		if resp.StatusCode != 200 || (cache != "hit" && cache != "join") || !bytes.Equal(body2, body) {
			t.Errorf("rev %s: status %s cache %q, equal bytes %v", rev, resp.Status, resp.Header.Get(client.HeaderCache), bytes.Equal(body2, body))
		}
		if cache == "hit" && resp.ContentLength != int64(len(body)) {
			t.Errorf("rev %s: cache hit with Content-Length %d, want %d", rev, resp.ContentLength, len(body))
		}
	}

	// The client downloads and unpacks the same files.
	dir := t.TempDir()
	commit, err := tm.client.Download(ctx, "proj", c, dir)
	if err != nil || commit != c {
		t.Fatalf("Download: %v, %s", err, commit)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sub", "dir", "x.go")); err != nil || string(b) != "package x\n" {
		t.Errorf("x.go: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("run.sh not executable: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "link")); err != nil || l != "README" {
		t.Errorf("link: %q %v", l, err)
	}
}

func TestTarballFetchesMissingRevision(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}})
	// Pushed without a nudge: the request fetches it.
	c := up.push("not nudged")
	resp, body := getTarball(t, tm.url, "proj", c)
	if resp.StatusCode != 200 || resp.Header.Get(client.HeaderCommit) != c {
		t.Fatalf("status %s commit %q: %s", resp.Status, resp.Header.Get(client.HeaderCommit), body)
	}
	// A branch named like a hex prefix cannot make that prefix serve
	// another commit (git itself would prefer the branch); the full hash
	// still works.
	gitT(t, up.work, "push", "-q", "origin", "HEAD~1:refs/heads/"+c[:10])
	if err := tm.Sync(ctxT(t), "proj"); err != nil {
		t.Fatal(err)
	}
	if resp, body := getTarball(t, tm.url, "proj", c[:10]); resp.StatusCode != 404 {
		t.Errorf("hex prefix shadowed by a branch: %s %q %s", resp.Status, resp.Header.Get(client.HeaderCommit), body)
	}
	if resp, _ := getTarball(t, tm.url, "proj", c); resp.StatusCode != 200 || resp.Header.Get(client.HeaderCommit) != c {
		t.Errorf("full hash with a shadowing branch: %s %q", resp.Status, resp.Header.Get(client.HeaderCommit))
	}
	// A revision that exists nowhere is a short 404.
	resp, body = getTarball(t, tm.url, "proj", strings.Repeat("ab", 20))
	if resp.StatusCode != 404 || strings.TrimSpace(string(body)) != "unknown revision" {
		t.Errorf("missing rev: %s %q", resp.Status, body)
	}
}

func TestGerritAndGitHubRefsAreMirrored(t *testing.T) {
	up := newUpstream(t)
	c := up.commit("patch set")
	gitT(t, up.work, "push", "-q", "origin", c+":refs/changes/01/1/1", c+":refs/pull/7/head", c+":refs/pull/7/merge", c+":refs/changes/01/1/meta")
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}})
	ctx := ctxT(t)
	refs, err := tm.client.Refs(ctx, "proj", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"refs/changes/01/1/1", "refs/changes/01/1/meta", "refs/pull/7/head"} {
		if refs[r] != c {
			t.Errorf("%s = %q, want %s", r, refs[r], c)
		}
	}
	if _, ok := refs["refs/pull/7/merge"]; ok {
		t.Errorf("refs/pull/7/merge mirrored")
	}
	// A meta ref rewritten (non-fast-forward) upstream is followed, and a
	// deleted change ref is pruned.
	meta := gitT(t, up.work, "commit-tree", "-m", "unrelated history", "HEAD^{tree}")
	gitT(t, up.work, "push", "-q", "--force", "origin", meta+":refs/changes/01/1/meta", ":refs/changes/01/1/1")
	if err := tm.client.Sync(ctx, "proj"); err != nil {
		t.Fatal(err)
	}
	refs, err = tm.client.Refs(ctx, "proj", "refs/changes/")
	if err != nil {
		t.Fatal(err)
	}
	if refs["refs/changes/01/1/meta"] != meta {
		t.Errorf("meta = %q, want %s", refs["refs/changes/01/1/meta"], meta)
	}
	if _, ok := refs["refs/changes/01/1/1"]; ok {
		t.Errorf("deleted change ref not pruned")
	}
	if _, ok := refs["refs/heads/main"]; ok {
		t.Errorf("prefix refs/changes/ returned refs/heads/main")
	}
}

func TestSmartHTTPIncrementalFetchAndReadOnly(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "org/proj", URL: up.bare}}})
	ctx := ctxT(t)
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	gitT(t, work, "clone", "-q", tm.client.RepoURL("org/proj"), clone)
	first := gitT(t, up.bare, "rev-parse", "main")
	if got := gitT(t, clone, "rev-parse", "HEAD"); got != first {
		t.Fatalf("clone HEAD %s, want %s", got, first)
	}

	c := up.push("incremental")
	if err := tm.client.Sync(ctx, "org/proj"); err != nil {
		t.Fatal(err)
	}
	out := gitT(t, clone, "fetch", "-v", "origin")
	if got := gitT(t, clone, "rev-parse", "origin/main"); got != c {
		t.Fatalf("after fetch origin/main = %s, want %s (%s)", got, c, out)
	}
	// A worker may fetch a commit by hash (reachable from a ref).
	gitT(t, clone, "fetch", "-q", "origin", c)

	// Pushing to the mirror is refused.
	writeFile(t, filepath.Join(clone, "evil"), "x", 0o644)
	gitT(t, clone, "add", "evil")
	gitT(t, clone, "commit", "-q", "-m", "evil")
	if out, err := gitRaw(clone, "push", "origin", "HEAD:refs/heads/main"); err == nil {
		t.Fatalf("push to mirror succeeded: %s", out)
	}
	resp, err := http.Get(tm.url + "/org/proj.git/info/refs?service=git-receive-pack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("receive-pack advertisement: %s", resp.Status)
	}
	if got := gitT(t, up.bare, "rev-parse", "main"); got != c {
		t.Errorf("upstream changed by a push through the mirror")
	}
}

// gitWrapper writes a script that logs each git subcommand to a file and
// runs the real git, to count git processes.
func gitWrapper(t testing.TB) (path, logFile string) {
	t.Helper()
	dir := t.TempDir()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found")
	}
	logFile = filepath.Join(dir, "calls")
	path = filepath.Join(dir, "git")
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do case $a in archive) echo archive >> %q;; esac; done\nexec %q \"$@\"\n", logFile, git)
	writeFile(t, path, script, 0o755)
	return path, logFile
}

func TestConcurrentRequestsRunGitArchiveOnce(t *testing.T) {
	up := newUpstream(t)
	// A bigger tree so that requests overlap the build.
	for i := range 200 {
		writeFile(t, filepath.Join(up.work, "data", fmt.Sprintf("f%03d", i)), strings.Repeat(fmt.Sprintf("line %d\n", i), 2000), 0o644)
	}
	wrapper, calls := gitWrapper(t)
	tm := startMirror(t, Options{Git: wrapper, Repos: []Repo{{Name: "proj", URL: up.bare}}})
	c := up.push("new revision")

	const n = 50
	var wg sync.WaitGroup
	bodies := make([][]byte, n)
	outcomes := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := http.Get(tm.url + "/proj.tar.gz?rev=" + c)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			bodies[i], errs[i] = io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				errs[i] = fmt.Errorf("status %s", resp.Status)
			}
			outcomes[i] = resp.Header.Get(client.HeaderCache)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("request %d got different bytes", i)
		}
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if runs := strings.Count(string(b), "archive"); runs != 1 {
		t.Errorf("git archive ran %d times for %d concurrent requests, want 1", runs, n)
	}
	if got := counterValue(t, tm.metrics.archives.WithLabelValues("proj", "ok")); got != 1 {
		t.Errorf("archive metric %v, want 1", got)
	}
	count := map[string]int{}
	for _, o := range outcomes {
		count[o]++
	}
	if count["miss"] != 1 || count["miss"]+count["join"]+count["hit"] != n {
		t.Errorf("cache outcomes %v, want one miss", count)
	}
	want, err := exec.Command("git", "-C", up.bare, "archive", "--format=tar.gz", c).Output()
	if err != nil || !bytes.Equal(bodies[0], want) {
		t.Errorf("tarball differs from git archive: %v", err)
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestHostileRequests(t *testing.T) {
	up := newUpstream(t)
	dir := t.TempDir()
	tm := startMirror(t, Options{Dir: dir, Repos: []Repo{{Name: "proj", URL: up.bare}}})
	for _, tc := range []struct {
		name, method, path string
		code               int
	}{
		{"dotdot repo", "GET", "/../proj.tar.gz?rev=main", 400},
		{"encoded dotdot", "GET", "/%2e%2e/proj.tar.gz?rev=refs/heads/main", 400},
		{"option repo", "GET", "/-proj.tar.gz?rev=refs/heads/main", 400},
		{"unknown repo", "GET", "/other.tar.gz?rev=refs/heads/main", 404},
		{"option rev", "GET", "/proj.tar.gz?rev=--output=/tmp/x", 400},
		{"exec rev", "GET", "/proj.tar.gz?rev=--exec=touch%20/tmp/pwned", 400},
		{"expression rev", "GET", "/proj.tar.gz?rev=HEAD~1", 400},
		{"reflog rev", "GET", "/proj.tar.gz?rev=main@%7B1%7D", 400},
		{"dotdot ref", "GET", "/proj.tar.gz?rev=refs/heads/../../etc", 400},
		{"range rev", "GET", "/proj.tar.gz?rev=aaaa..bbbb", 400},
		{"empty rev", "GET", "/proj.tar.gz", 400},
		{"newline rev", "GET", "/proj.tar.gz?rev=refs/heads/main%0Aabcd", 400},
		{"short hex", "GET", "/proj.tar.gz?rev=abc", 400},
		{"unknown hex", "GET", "/proj.tar.gz?rev=deadbeef", 404},
		{"unknown ref", "GET", "/proj.tar.gz?rev=refs/heads/nope", 404},
		{"bad refs prefix", "GET", "/proj/refs?prefix=--format=x", 400},
		{"receive-pack", "POST", "/proj.git/git-receive-pack", 405},
		{"receive-pack ad", "GET", "/proj.git/info/refs?service=git-receive-pack", 403},
		{"dumb http", "GET", "/proj.git/HEAD", 404},
		{"dumb objects", "GET", "/proj.git/objects/info/packs", 404},
		{"config file", "GET", "/proj.git/config", 404},
		{"nudge by GET", "GET", "/proj/nudge", 405},
		{"tarball by POST", "POST", "/proj.tar.gz?rev=refs/heads/main", 405},
		{"unknown path", "GET", "/etc/passwd", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tm.url+tc.path, nil)
			if strings.Contains(tc.path, "%2e%2e") || strings.HasPrefix(tc.path, "/..") {
				req.URL.RawPath = ""
				req.URL.Opaque = tc.path
				if i := strings.Index(tc.path, "?"); i >= 0 {
					req.URL.Opaque = tc.path[:i]
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d (%q)", resp.StatusCode, tc.code, body)
			}
			if resp.StatusCode >= 400 {
				if len(body) > 100 || strings.Contains(string(body), dir) || strings.Contains(string(body), "fatal") {
					t.Errorf("error body leaks detail: %q", body)
				}
			}
		})
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Errorf("/tmp/pwned exists")
	}
}

func TestFailingFetchRecovers(t *testing.T) {
	up := newUpstream(t)
	tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare}}})
	ctx := ctxT(t)
	old := gitT(t, up.bare, "rev-parse", "main")
	// Upstream disappears (as when the disk is full or the server is
	// down): fetches fail, the error shows in /debug, old revisions are
	// still served, unknown ones give 502.
	moved := up.bare + ".away"
	if err := os.Rename(up.bare, moved); err != nil {
		t.Fatal(err)
	}
	err := tm.Sync(ctx, "proj")
	if !errors.Is(err, ErrUpstream) {
		t.Fatalf("Sync with upstream gone: %v, want ErrUpstream", err)
	}
	st := tm.Status().Repos[0]
	if st.LastError == "" || st.Failures == 0 {
		t.Errorf("status after failure: %+v", st)
	}
	if resp, body := getTarball(t, tm.url, "proj", old); resp.StatusCode != 200 {
		t.Errorf("old revision while upstream fails: %s %s", resp.Status, body)
	}
	resp, body := getTarball(t, tm.url, "proj", strings.Repeat("cd", 20))
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(body), moved) {
		t.Errorf("unknown revision while upstream fails: %s %q", resp.Status, body)
	}
	if err := os.Rename(moved, up.bare); err != nil {
		t.Fatal(err)
	}
	c := up.push("after recovery")
	eventually(t, func() error { return tm.Sync(ctx, "proj") })
	if resp, body := getTarball(t, tm.url, "proj", c); resp.StatusCode != 200 {
		t.Errorf("after recovery: %s %s", resp.Status, body)
	}
	if st := tm.Status().Repos[0]; st.LastError != "" || st.Failures != 0 {
		t.Errorf("status after recovery: %+v", st)
	}
}
