package corpusgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tryd-ci/tryd/maintner"
)

func generateDir(t testing.TB, size int64, seed uint64) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	w, err := NewDirWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Generate(context.Background(), Options{Size: size, Seed: seed}, w.Write); err != nil {
		t.Fatal(err)
	}
	files, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

func TestGenerateLoadsCleanly(t *testing.T) {
	dir, files := generateDir(t, 20<<20, 1)
	if len(files) < 2 {
		t.Fatalf("20 MiB made %d segments, want >= 2", len(files))
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > MaxSegment {
			t.Errorf("%s: %d bytes > %d", f, st.Size(), MaxSegment)
		}
	}
	c, err := maintner.New(maintner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadDir(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	s := c.Stats()
	t.Logf("stats: %+v", s)
	if s.BadRecords != 0 {
		t.Errorf("%d bad records", s.BadRecords)
	}
	if s.GitHubIssues < 100 || s.GitHubPRs == 0 || s.GitHubComments < 5*s.GitHubIssues/2 || s.GitHubEvents == 0 {
		t.Errorf("github shape off: %+v", s)
	}
	if s.GerritChanges < 100 || s.GerritPatchSets < s.GerritChanges*3/2 || s.GerritMessages < 3*s.GerritChanges {
		t.Errorf("gerrit shape off: %+v", s)
	}
	c.RLock()
	defer c.RUnlock()
	p := c.GerritProject("go.googlesource.com/go")
	if p == nil {
		t.Fatal("no gerrit project")
	}
	var votes, merged, abandoned int
	for _, ch := range p.Changes() {
		if ch.Err != "" {
			t.Fatalf("change %d: %s", ch.Number, ch.Err)
		}
		votes += len(ch.Votes)
		switch ch.Status {
		case "merged":
			merged++
		case "abandoned":
			abandoned++
		}
		if ps := ch.PatchSet(ch.CurrentPatchSet); ps == nil {
			t.Fatalf("change %d: no current patch set", ch.Number)
		} else if ref, ok := ch.PatchSetRef(ps.Number); !ok || ref != ps.Commit {
			t.Fatalf("change %d: patch set ref %v != %v", ch.Number, ref, ps.Commit)
		}
	}
	if votes == 0 || merged == 0 || abandoned == 0 {
		t.Errorf("votes %d merged %d abandoned %d", votes, merged, abandoned)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	sum := func(seed uint64) [32]byte {
		var buf bytes.Buffer
		if err := Generate(context.Background(), Options{Size: 1 << 20, Seed: seed}, func(p []byte) error { buf.Write(p); return nil }); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(buf.Bytes())
	}
	if sum(3) != sum(3) {
		t.Error("same seed, different output")
	}
	if sum(3) == sum(4) {
		t.Error("different seeds, same output")
	}
}

func TestOptionsValidated(t *testing.T) {
	for name, o := range map[string]Options{
		"no size":   {},
		"bad share": {Size: 10, GerritShare: 1.5},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Generate(context.Background(), o, func([]byte) error { return nil }); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	dir, _ := generateDir(b, 64<<20, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, _ := maintner.New(maintner.Options{})
		if err := c.LoadDir(context.Background(), dir); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTextFromLogMatchesMemory loads the same log twice, once leaving long
// text in the segment files (LoadDir) and once holding it in memory
// (Load), and compares every text.
func TestTextFromLogMatchesMemory(t *testing.T) {
	dir, files := generateDir(t, 6<<20, 5)
	ctx := context.Background()
	refs, err := maintner.New(maintner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer refs.Close()
	if err := refs.LoadDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	mem, _ := maintner.New(maintner.Options{})
	if err := mem.Load(ctx, len(files), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
		data, err := os.ReadFile(files[i])
		return files[i], data, err
	}); err != nil {
		t.Fatal(err)
	}
	if a, b := refs.Stats(), mem.Stats(); a != b {
		t.Errorf("stats of the corpus reading text from the log %+v, holding it in memory %+v", a, b)
	}
	refs.RLock()
	defer refs.RUnlock()
	mem.RLock()
	defer mem.RUnlock()
	same := func(what string, a, b maintner.Text) {
		t.Helper()
		sa, err := refs.Text(a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !b.InMemory() {
			t.Fatalf("%s: Load kept text in the log", what)
		}
		if sb := mem.MustText(b); sa != sb {
			t.Fatalf("%s: from log %q, in memory %q", what, sa, sb)
		}
	}
	inLog := 0
	for _, r := range mem.GitHubRepos() {
		rr := refs.GitHubRepo(r.Owner, r.Name)
		for _, is := range r.Issues() {
			ri := rr.Issue(is.Number)
			same(fmt.Sprintf("issue %d body", is.Number), ri.Body, is.Body)
			if !ri.Body.InMemory() {
				inLog++
			}
			for i := range is.Comments {
				same(fmt.Sprintf("issue %d comment %d", is.Number, is.Comments[i].ID), ri.Comments[i].Body, is.Comments[i].Body)
			}
			for i := range is.Reviews {
				same(fmt.Sprintf("issue %d review %d", is.Number, is.Reviews[i].ID), ri.Reviews[i].Body, is.Reviews[i].Body)
			}
		}
	}
	for _, p := range mem.GerritProjects() {
		rp := refs.GerritProject(p.Name)
		for _, ch := range p.Changes() {
			for _, ps := range ch.PatchSets {
				same(fmt.Sprintf("change %d patch set %d", ch.Number, ps.Number), rp.Commit(ps.Commit).Msg, p.Commit(ps.Commit).Msg)
			}
			if rc := rp.Change(ch.Number); !reflect.DeepEqual(rc.Votes, ch.Votes) || !reflect.DeepEqual(rc.Messages, ch.Messages) {
				t.Fatalf("change %d differs", ch.Number)
			}
		}
	}
	if inLog == 0 {
		t.Error("LoadDir kept every issue body in memory")
	}
}
