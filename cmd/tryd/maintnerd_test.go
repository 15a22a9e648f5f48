package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
)

// startTestMaintnerd runs a maintnerd on 127.0.0.1:0 over dataDir and
// returns it with its base URL; the server stops at cleanup.
func startTestMaintnerd(t *testing.T, dataDir string) (*maintnerd, string) {
	t.Helper()
	var errb bytes.Buffer
	a := &app{stdout: &bytes.Buffer{}, stderr: &errb}
	fs, cf := a.flags("maintnerd", "", "")
	if err := a.parse(fs, cf, []string{"--data-dir", dataDir}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := startMaintnerd(ctx, a, a.log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpserver.New(httpserver.Options{Handler: m.Handler(), Component: "maintnerd", Registry: m.registry})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, srv.URL()
}

func TestMaintnerdServesLogAndQueries(t *testing.T) {
	dataDir := t.TempDir()
	m, url := startTestMaintnerd(t, dataDir)
	if err := m.corpus.LogBatch(context.Background(), corpusgen.Sample(false)...); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runTryd(t, "corpus", "ls", "--server", url, "--vote", "Run-TryBot=+1", "changes", corpusgen.SampleProject)
	if code != 0 || !strings.Contains(out, "1001") || strings.Contains(out, "1002") {
		t.Errorf("ls changes: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runTryd(t, "corpus", "ls", "--server", url, "--state", "open", "issues", "golang/go")
	if code != 0 || !strings.Contains(out, "runtime: crash") || strings.Contains(out, "net/http: fix") {
		t.Errorf("ls issues: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runTryd(t, "corpus", "show", "--server", url, "change", corpusgen.SampleProject, "1001")
	if code != 0 || !strings.Contains(out, "TryBot-Result+1 by 5976") || !strings.Contains(out, "merged") {
		t.Errorf("show change: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runTryd(t, "corpus", "show", "--server", url, "--json", "issue", "golang/go", "2")
	var is struct {
		PR struct {
			HeadSHA string `json:"head_sha"`
		} `json:"pr"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &is) != nil || is.PR.HeadSHA == "" {
		t.Errorf("show issue: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := runTryd(t, "corpus", "show", "--server", url, "issue", "golang/go", "77"); code != exitFailure || !strings.Contains(errOut, "not found") {
		t.Errorf("show missing issue: exit %d, %s", code, errOut)
	}
	code, out, _ = runTryd(t, "corpus", "stats", "--server", url)
	var st maintner.Stats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.GerritChanges != 2 {
		t.Errorf("stats: exit %d\n%s", code, out)
	}

	// tail --all prints every record; a record appended while tailing
	// shows up too.
	var buf testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tailDone := make(chan int, 1)
	go func() {
		tailDone <- run(ctx, []string{"corpus", "tail", "--server", url, "--all"}, &buf, &bytes.Buffer{})
	}()
	waitFor(t, func() bool { return strings.Count(buf.String(), "\n") >= len(corpusgen.Sample(false)) })
	b := corpusgen.NewBuilder()
	b.NewChange(2001, 7, "late change")
	if err := m.corpus.LogBatch(context.Background(), b.Take()...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(buf.String(), "refs/changes/01/2001/meta") })
	cancel()
	if code := <-tailDone; code != 0 {
		t.Errorf("tail exit %d", code)
	}
}

func TestMaintnerdReloadsLogOnRestart(t *testing.T) {
	dataDir := t.TempDir()
	var want maintner.Stats
	t.Run("first", func(t *testing.T) {
		m, _ := startTestMaintnerd(t, dataDir)
		if err := m.corpus.LogBatch(context.Background(), corpusgen.Sample(true)...); err != nil {
			t.Fatal(err)
		}
		want = m.corpus.Stats()
	})
	m, _ := startTestMaintnerd(t, dataDir)
	if got := m.corpus.Stats(); got != want {
		t.Errorf("after restart %+v, want %+v", got, want)
	}
	// The local commands read the same log from the data directory.
	// The local commands read the same log from the data directory while
	// maintnerd holds it (reading needs no lock).
	code, out, errOut := runTryd(t, "corpus", "ls", "--data-dir", dataDir, "changes", corpusgen.SampleProject)
	if code != 0 || !strings.Contains(out, "1001") {
		t.Errorf("local ls: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestCorpusGenAndStats(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	code, out, errOut := runTryd(t, "corpus", "gen", "--out", dir, "--size", "3MiB", "--seed", "7")
	if code != 0 || !strings.Contains(out, "wrote") || !strings.Contains(errOut, "gen: ") {
		t.Fatalf("gen: exit %d\n%s\n%s", code, out, errOut)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) == 0 {
		t.Fatal("no segments written")
	}
	code, out, errOut = runTryd(t, "corpus", "stats", "--dir", dir)
	var st maintner.Stats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.GitHubIssues == 0 || st.GerritChanges == 0 {
		t.Errorf("stats: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runTryd(t, "corpus", "tail", "--dir", dir, "-n", "3")
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Errorf("tail --dir: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no out", []string{"corpus", "gen"}},
		{"bad size", []string{"corpus", "gen", "--out", t.TempDir(), "--size", "lots"}},
		{"unknown sub", []string{"corpus", "frob"}},
		{"ls nothing", []string{"corpus", "ls", "--dir", dir}},
		{"show bad number", []string{"corpus", "show", "--dir", dir, "issue", "golang/go", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, _ := runTryd(t, tc.args...); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
		})
	}
	if code, _, _ := runTryd(t, "corpus", "gen", "--out", dir, "--size", "1MiB"); code != exitFailure {
		t.Errorf("gen into non-empty dir: exit %d", code)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1GiB", 1 << 30, true}, {"512MiB", 512 << 20, true}, {"1.5M", 3 << 19, true}, {"100", 100, true},
		{"2GB", 2e9, true}, {"", 0, false}, {"-1MiB", 0, false}, {"MiB", 0, false}, {"1PiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
