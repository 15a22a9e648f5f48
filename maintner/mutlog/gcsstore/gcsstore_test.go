package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/mutlog/storetest"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// fakeGCS starts fake-gcs-server in-process (no listener: requests go
// through its handler) with one bucket.
func fakeGCS(t *testing.T, bucket string) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	return srv
}

func TestConformance(t *testing.T) {
	for _, prefix := range []string{"", "maintner/log/"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			storetest.Test(t, func(t *testing.T) func() mutlog.Store {
				srv := fakeGCS(t, "tryd-log")
				return func() mutlog.Store {
					s, err := New(Options{Client: srv.Client(), Bucket: "tryd-log", Prefix: prefix})
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
			})
		})
	}
}

func TestOptions(t *testing.T) {
	srv := fakeGCS(t, "b")
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no client", Options{Bucket: "b"}},
		{"no bucket", Options{Client: srv.Client()}},
		{"prefix without slash", Options{Client: srv.Client(), Bucket: "b", Prefix: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Fatal("New accepted bad options")
			}
		})
	}
}

// TestTakeOver checks that a forced takeover makes the old writer fail on
// its next commit instead of both writing.
func TestTakeOver(t *testing.T) {
	ctx := context.Background()
	srv := fakeGCS(t, "b")
	open := func(take bool) *Store {
		s, err := New(Options{Client: srv.Client(), Bucket: "b", TakeOverLock: take})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old, err := mutlog.Open(ctx, mutlog.Options{Store: open(false)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Append(ctx, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := mutlog.Open(ctx, mutlog.Options{Store: open(false)}); !errors.Is(err, mutlog.ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	} else {
		t.Logf("second writer: %v", err)
	}
	nl, err := mutlog.Open(ctx, mutlog.Options{Store: open(true)})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if _, err := nl.Append(ctx, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Append(ctx, []byte("lost")); !errors.Is(err, mutlog.ErrConflict) {
		t.Fatalf("old writer after takeover: %v, want ErrConflict", err)
	} else {
		t.Logf("old writer: %v", err)
	}
	var got []string
	nl.ForEach(ctx, mutlog.Position{}, func(_ mutlog.Position, p []byte) error { got = append(got, string(p)); return nil })
	if fmt.Sprint(got) != "[one two]" {
		t.Fatalf("records %v", got)
	}
}

func objectNames(t *testing.T, srv *fakestorage.Server, bucket string) []string {
	t.Helper()
	objs, _, err := srv.ListObjectsWithOptions(bucket, fakestorage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	sort.Strings(names)
	return names
}

func payloads(l *mutlog.Log, t *testing.T) []string {
	t.Helper()
	var got []string
	if err := l.ForEach(context.Background(), mutlog.Position{}, func(_ mutlog.Position, p []byte) error {
		got = append(got, string(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestChunksAndFolds checks that commits upload chunks, that folding
// keeps their number bounded, and that every state reopens intact.
func TestChunksAndFolds(t *testing.T) {
	ctx := context.Background()
	srv := fakeGCS(t, "b")
	open := func() *mutlog.Log {
		s, err := New(Options{Client: srv.Client(), Bucket: "b", FoldEvery: 4})
		if err != nil {
			t.Fatal(err)
		}
		l, err := mutlog.Open(ctx, mutlog.Options{Store: s, MaxSegmentSize: 1024})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	var want []string
	for i := range 120 {
		p := fmt.Sprintf("record %03d %s", i, strings.Repeat("z", i%7))
		want = append(want, p)
		if _, err := l.Append(ctx, []byte(p)); err != nil {
			t.Fatal(err)
		}
		if i%17 == 0 {
			chunks := 0
			for _, n := range objectNames(t, srv, "b") {
				if strings.Contains(n, ".growing.mutlog.") {
					chunks++
				}
			}
			if chunks > 4 {
				t.Fatalf("after %d appends: %d chunk objects, fold limit 4: %v", i+1, chunks, objectNames(t, srv, "b"))
			}
			l.Close()
			l = open()
			if got := payloads(l, t); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after reopen at %d: %d records, want %d", i, len(got), len(want))
			}
		}
	}
	if len(l.Segments()) < 2 {
		t.Fatal("expected a sealed segment")
	}
	l.Close()
	t.Logf("objects: %v", objectNames(t, srv, "b"))
}

// TestLeftovers recreates what crashes leave behind and checks that
// opening cleans up without losing or duplicating data.
func TestLeftovers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, srv *fakestorage.Server, names []string)
		wantErr error
	}{
		{"chunk already folded into the base", func(t *testing.T, srv *fakestorage.Server, names []string) {
			// An interrupted fold leaves chunks the base holds.
			for _, n := range names {
				if strings.HasSuffix(n, ".growing.mutlog") {
					o, err := srv.GetObject("b", n)
					if err != nil || o.Metadata[chunksKey] == "0" {
						t.Fatalf("want a folded base, have %v (%v)", o.Metadata, err)
					}
					putObject(t, srv, n+".00000001", []byte("REC@0+5=stale"))
					return
				}
			}
			t.Fatalf("no growing base in %v", names)
		}, nil},
		{"growing objects beside the sealed one", func(t *testing.T, srv *fakestorage.Server, names []string) {
			putObject(t, srv, "0000.growing.mutlog", []byte("REC@0+5=stale"))
		}, nil},
		{"missing chunk", func(t *testing.T, srv *fakestorage.Server, names []string) {
			var chunks []string
			for _, n := range names {
				if strings.Contains(n, ".growing.mutlog.") {
					chunks = append(chunks, n)
				}
			}
			if len(chunks) < 2 {
				t.Fatalf("want at least two chunks to make a gap, have %v", names)
			}
			if err := srv.Backend().DeleteObject("b", chunks[0]); err != nil {
				t.Fatal(err)
			}
		}, mutlog.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeGCS(t, "b")
			st, _ := New(Options{Client: srv.Client(), Bucket: "b", FoldEvery: 100})
			l, err := mutlog.Open(ctx, mutlog.Options{Store: st, MaxSegmentSize: 256})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 40 {
				if _, err := l.Append(ctx, []byte(fmt.Sprintf("r%02d", i))); err != nil {
					t.Fatal(err)
				}
			}
			want := payloads(l, t)
			l.Close()
			names := objectNames(t, srv, "b")
			tc.damage(t, srv, names)
			st2, _ := New(Options{Client: srv.Client(), Bucket: "b"})
			l2, err := mutlog.Open(ctx, mutlog.Options{Store: st2, MaxSegmentSize: 256})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open: %v, want %v", err, tc.wantErr)
				}
				t.Logf("Open: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if got := payloads(l2, t); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("records %v, want %v", got, want)
			}
			wantNames := append([]string{"LOCK"}, names...) // l2 holds the lock
			sort.Strings(wantNames)
			if after := objectNames(t, srv, "b"); fmt.Sprint(after) != fmt.Sprint(wantNames) {
				t.Fatalf("objects after cleanup %v, want %v", after, wantNames)
			}
		})
	}
}

func putObject(t *testing.T, srv *fakestorage.Server, name string, data []byte) {
	t.Helper()
	w := srv.Client().Bucket("b").Object(name).NewWriter(context.Background())
	if name == "0000.growing.mutlog" {
		w.Metadata = map[string]string{chunksKey: "0"}
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRetriedWriteLanded covers a conditional write whose first attempt
// landed but whose answer was lost: the retry fails its precondition, and
// the store must see its own bytes there and carry on, not stop the log.
func TestRetriedWriteLanded(t *testing.T) {
	ctx := context.Background()
	srv := fakeGCS(t, "b")
	st, err := New(Options{Client: srv.Client(), Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := reclog.AppendRecord(nil, 0, []byte("one"))
	if err := w.Append(ctx, 0, 0, first); err != nil {
		t.Fatal(err)
	}
	second := reclog.AppendRecord(nil, int64(len(first)), []byte("two"))
	// The "first attempt" of the next chunk, as if its answer was lost.
	ow := srv.Client().Bucket("b").Object(st.chunkName(0, 1)).NewWriter(ctx)
	ow.Write(second)
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, int64(len(first)), second); err != nil {
		t.Fatalf("Append after its own write landed: %v", err)
	}
	// Different bytes in the way are a conflict.
	third := reclog.AppendRecord(nil, int64(len(first)+len(second)), []byte("three"))
	ow = srv.Client().Bucket("b").Object(st.chunkName(0, 2)).NewWriter(ctx)
	ow.Write([]byte("someone else"))
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, int64(len(first)+len(second)), third); !errors.Is(err, mutlog.ErrConflict) {
		t.Fatalf("Append over a rival's chunk: %v, want ErrConflict", err)
	}
}
