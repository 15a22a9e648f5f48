package maintner_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// TestLoadProgress checks that LoadDir reports every segment, in order,
// and lists only files named as a store names segments.
func TestLoadProgress(t *testing.T) {
	// A small generated log cut into four segments (DirWriter would
	// need 16 MiB per segment).
	dir := t.TempDir()
	segs := make([][]byte, 4)
	i := 0
	if err := corpusgen.Generate(context.Background(), corpusgen.Options{Size: 1 << 20, Seed: 9}, func(p []byte) error {
		s := &segs[i%len(segs)]
		*s = reclog.AppendRecord(*s, int64(len(*s)), p)
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var files []string
	for n, b := range segs {
		sum := sha256.Sum224(b)
		name := mutlog.SealedName(n, hex.EncodeToString(sum[:]))
		if n == len(segs)-1 {
			name = mutlog.GrowingName(n)
		}
		files = append(files, filepath.Join(dir, name))
		if err := os.WriteFile(files[n], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Files that are not segments are ignored.
	for _, name := range []string{"README", "0001.mutlog", "x.growing.mutlog", "0002.abc.mutlog"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got [][2]int
	c := newCorpus(t, maintner.Options{LoadProgress: func(done, total int) { got = append(got, [2]int{done, total}) }})
	if err := c.LoadDir(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	checkUnmapped(t, dir)
	if st := c.Stats(); st.Records != int64(i) {
		t.Errorf("loaded %d records, wrote %d", st.Records, i)
	}
	var want [][2]int
	for i := range files {
		want = append(want, [2]int{i + 1, len(files)})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("progress = %v, want %v", got, want)
	}
}

// splitLog generates a small log and cuts it into n segments, round
// robin, returning their bytes and the number of records.
func splitLog(t *testing.T, n int, size int64) ([][]byte, int) {
	t.Helper()
	segs := make([][]byte, n)
	records := 0
	if err := corpusgen.Generate(context.Background(), corpusgen.Options{Size: size, Seed: 5}, func(p []byte) error {
		s := &segs[records%n]
		*s = reclog.AppendRecord(*s, int64(len(*s)), p)
		records++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return segs, records
}

// TestLoadManySegments loads logs of many small segments with more
// workers than segments in flight can keep busy, and with empty
// segments: workers finish segments in any order, and the load must
// neither stall (a worker holding a buffer the applier's next segment
// needs) nor lose a record.
func TestLoadManySegments(t *testing.T) {
	segs, records := splitLog(t, 40, 1<<20)
	segs = append(segs, nil, nil) // empty segments, read as nil
	for _, workers := range []int{1, 2, 3, 8} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			for round := 0; round < 5; round++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c := newCorpus(t, maintner.Options{LoadWorkers: workers})
				err := c.Load(ctx, len(segs), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
					if len(segs[i]) == 0 {
						return fmt.Sprint(i), nil, nil
					}
					return fmt.Sprint(i), append(buf[:0], segs[i]...), nil
				})
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if got := c.Stats().Records; got != int64(records) {
					t.Fatalf("loaded %d records, want %d", got, records)
				}
			}
		})
	}
}

// TestLoadCanceled cancels a load part-way: Load returns the context's
// error instead of waiting for segments no worker will send.
func TestLoadCanceled(t *testing.T) {
	segs, _ := splitLog(t, 8, 1<<20)
	for _, at := range []int{0, 1, 5} {
		t.Run(fmt.Sprintf("at segment %d", at), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := newCorpus(t, maintner.Options{LoadWorkers: 2})
			done := make(chan error, 1)
			go func() {
				done <- c.Load(ctx, len(segs), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
					if i == at {
						cancel()
						<-ctx.Done()
						return fmt.Sprint(i), nil, ctx.Err()
					}
					return fmt.Sprint(i), append(buf[:0], segs[i]...), nil
				})
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Load returned %v, want context.Canceled", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Load did not return after its context was canceled")
			}
		})
	}
}

// TestLoadMatchesApply loads a generated log cut into segments every way
// a corpus loads one (Load with as many decoders as segments and more,
// LoadDir mapping the segment files) and compares everything a reader
// sees with the corpus built by applying the same records one at a
// time: loading decodes chunks of records in parallel and applies them
// in log order, which must come to the same corpus.
func TestLoadMatchesApply(t *testing.T) {
	segs, records := splitLog(t, 7, 3<<20)
	applied := newCorpus(t, maintner.Options{})
	for i, seg := range segs {
		if _, err := reclog.Scan(fmt.Sprint(i), seg, 0, func(off int64, payload []byte) error { return applied.Apply(payload) }); err != nil {
			t.Fatal(err)
		}
	}
	want := corpusDump(t, applied)
	if got := applied.Stats().Records; got != int64(records) {
		t.Fatalf("applied %d records, want %d", got, records)
	}
	check := func(t *testing.T, c *maintner.Corpus) {
		t.Helper()
		if a, b := c.Stats(), applied.Stats(); a != b {
			t.Errorf("stats loaded %+v, applied %+v", a, b)
		}
		got := corpusDump(t, c)
		if len(got) != len(want) {
			t.Errorf("loaded corpus dumps to %d lines, applied %d", len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("line %d: loaded\n%s\napplied\n%s", i, got[i], want[i])
			}
		}
	}
	for _, workers := range []int{1, 2, 3, 9} {
		t.Run(fmt.Sprintf("Load, %d workers", workers), func(t *testing.T) {
			c := newCorpus(t, maintner.Options{LoadWorkers: workers})
			if err := c.Load(context.Background(), len(segs), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
				return fmt.Sprint(i), append(buf[:0], segs[i]...), nil
			}); err != nil {
				t.Fatal(err)
			}
			check(t, c)
		})
	}
	t.Run("LoadDir", func(t *testing.T) {
		dir := t.TempDir()
		for i, seg := range segs {
			sum := sha256.Sum224(seg)
			if err := os.WriteFile(filepath.Join(dir, mutlog.SealedName(i, hex.EncodeToString(sum[:]))), seg, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c := newCorpus(t, maintner.Options{})
		if err := c.LoadDir(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
}

// TestLoadBadRecord loads a log whose third segment holds a record that
// does not decode: the load stops with an error naming the segment and
// the record's offset, having applied the records of the segments
// before and at most those of its own segment before the bad record.
func TestLoadBadRecord(t *testing.T) {
	segs, _ := splitLog(t, 4, 1<<20)
	const bad = 2
	var before int64 // records of the segments before the bad one
	for _, seg := range segs[:bad] {
		if _, err := reclog.Scan("", seg, 0, func(int64, []byte) error { before++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// Re-frame the bad segment with a record that is not a protobuf
	// message (field 1 declares more bytes than follow) after its 150th.
	var payloads [][]byte
	if _, err := reclog.Scan("", segs[bad], 0, func(_ int64, p []byte) error { payloads = append(payloads, p); return nil }); err != nil {
		t.Fatal(err)
	}
	const at = 150
	if len(payloads) <= at {
		t.Fatalf("segment %d has only %d records", bad, len(payloads))
	}
	var seg []byte
	var badOff int64
	for i, p := range payloads {
		if i == at {
			badOff = int64(len(seg))
			seg = reclog.AppendRecord(seg, int64(len(seg)), []byte{0x0a, 0x7f, 'x'})
		}
		seg = reclog.AppendRecord(seg, int64(len(seg)), p)
	}
	segs[bad] = seg
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			c := newCorpus(t, maintner.Options{LoadWorkers: workers})
			err := c.Load(context.Background(), len(segs), func(ctx context.Context, i int, buf []byte) (string, []byte, error) {
				return fmt.Sprintf("seg%d", i), append(buf[:0], segs[i]...), nil
			})
			if !errors.Is(err, maintner.ErrBadRecord) {
				t.Fatalf("Load = %v, want an error wrapping ErrBadRecord", err)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("segment %d", bad)) || !strings.Contains(msg, fmt.Sprintf("seg%d offset %d", bad, badOff)) {
				t.Errorf("error does not name segment %d and offset %d: %v", bad, badOff, err)
			}
			if got := c.Stats().Records; got < before || got > before+at {
				t.Errorf("applied %d records, want %d to %d (the segments before, and at most the bad segment's records before the bad one)", got, before, before+at)
			}
		})
	}
}

// corpusDump renders what a reader of c sees, pointers followed and
// text read, one line per object in a fixed order, for comparing corpora
// built different ways: GitHub repositories with their labels,
// milestones, issues (comments, events, reviews, pull request data,
// statuses and check runs of head commits), and Gerrit projects with
// their refs, derived changes and the commits of their patch sets and
// meta histories.
func corpusDump(t testing.TB, c *maintner.Corpus) []string {
	t.Helper()
	c.RLock()
	defer c.RUnlock()
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	text := func(x maintner.Text) string {
		s, err := c.Text(x)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	user := func(u *maintner.GitHubUser) string {
		if u == nil {
			return "-"
		}
		return fmt.Sprintf("%d/%s", u.ID, u.Login)
	}
	for _, r := range c.GitHubRepos() {
		add("repo %s id=%d branch=%q private=%v", r.FullName(), r.ID, r.DefaultBranch, r.Private)
		for _, l := range r.Labels() {
			add("label %+v", *l)
		}
		for _, m := range r.Milestones() {
			add("milestone %+v", *m)
		}
		for _, is := range r.Issues() {
			var labels, assignees []string
			for _, l := range is.Labels {
				labels = append(labels, l.Name)
			}
			for _, u := range is.Assignees {
				assignees = append(assignees, user(u))
			}
			ms := "-"
			if is.Milestone != nil {
				ms = fmt.Sprintf("%+v", *is.Milestone)
			}
			add("issue %d id=%d notexist=%v pr=%v closed=%v locked=%v user=%s closedby=%s title=%q body=%q times=%d/%d/%d milestone=%s labels=%q assignees=%q",
				is.Number, is.ID, is.NotExist, is.PullRequest, is.Closed, is.Locked, user(is.User), user(is.ClosedBy), is.Title, text(is.Body),
				is.Created, is.Updated, is.ClosedAt, ms, labels, assignees)
			for _, cm := range is.Comments {
				add("comment %d user=%s times=%d/%d body=%q", cm.ID, user(cm.User), cm.Created, cm.Updated, text(cm.Body))
			}
			for _, e := range is.Events {
				add("event %d %s actor=%s at=%d subject=%q previous=%q other=%s", e.ID, e.Type, user(e.Actor), e.Created, e.Subject, e.Previous, user(e.Other))
			}
			for _, rv := range is.Reviews {
				add("review %d actor=%s at=%d state=%s commit=%s assoc=%s body=%q", rv.ID, user(rv.Actor), rv.Created, rv.State, rv.CommitID, rv.ActorAssociation, text(rv.Body))
			}
			if is.PR != nil {
				add("pr %+v", *is.PR)
				for _, st := range r.Statuses(is.PR.HeadSHA) {
					s := *st
					s.Creator = nil
					add("status %+v creator=%s", s, user(st.Creator))
				}
				for _, cr := range r.CheckRuns(is.PR.HeadSHA) {
					add("checkrun %+v", *cr)
				}
			}
		}
	}
	for _, p := range c.GerritProjects() {
		add("project %s", p.Name)
		for _, ref := range p.Refs() {
			h, _ := p.Ref(ref)
			add("ref %s %s", ref, h)
		}
		for _, ch := range p.Changes() {
			add("change %d meta=%s id=%s branch=%s subject=%q topic=%q status=%s owner=%d times=%d/%d private=%v wip=%v hashtags=%q current=%d err=%q",
				ch.Number, ch.Meta, ch.ChangeID, ch.Branch, ch.Subject, ch.Topic, ch.Status, ch.Owner, ch.Created, ch.Updated, ch.Private, ch.WorkInProgress, ch.Hashtags, ch.CurrentPatchSet, ch.Err)
			add("patch sets %+v", ch.PatchSets)
			add("messages %+v", ch.Messages)
			add("votes %+v", ch.Votes)
			hashes := []maintner.GitHash{}
			for _, ps := range ch.PatchSets {
				h, ok := ch.PatchSetRef(ps.Number)
				add("patch set ref %d %s %v", ps.Number, h, ok)
				hashes = append(hashes, ps.Commit)
			}
			for h := ch.Meta; !h.IsZero(); {
				hashes = append(hashes, h)
				gc := p.Commit(h)
				if gc == nil || len(gc.Parents) == 0 {
					break
				}
				h = gc.Parents[0]
			}
			for _, h := range hashes {
				gc := p.Commit(h)
				if gc == nil {
					add("commit %s missing", h)
					continue
				}
				v := *gc
				v.Author, v.Committer, v.Msg = nil, nil, maintner.Text{}
				add("commit %+v author=%s committer=%s msg=%q", v, gc.Author, gc.Committer, text(gc.Msg))
			}
		}
	}
	return out
}
