package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/mutlog/storetest"
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
