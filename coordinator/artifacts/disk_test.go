package artifacts_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/artifacts/storetest"
)

func TestDiskConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) artifacts.Store {
		d, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestDiskReindexesOnOpen(t *testing.T) {
	dir := t.TempDir()
	d, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("persisted")
	if err := d.Put(context.Background(), storetest.Digest(data), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	d2, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := d2.Stat(context.Background(), storetest.Digest(data)); err != nil || n != int64(len(data)) {
		t.Errorf("after reopen: %d, %v", n, err)
	}
}

func TestDiskEvictsUnpinnedLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	pinned := map[string]bool{}
	d, err := artifacts.OpenDisk(artifacts.DiskOptions{
		Dir: t.TempDir(), MaxBytes: 300,
		Pinned: func(dg string) bool { return pinned[dg] },
		Now:    func() time.Time { now = now.Add(time.Second); return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blob := func(c byte) ([]byte, string) {
		b := bytes.Repeat([]byte{c}, 100)
		return b, storetest.Digest(b)
	}
	put := func(c byte) string {
		b, dg := blob(c)
		if err := d.Put(ctx, dg, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	a, b, c := put('a'), put('b'), put('c')
	pinned[a] = true // oldest, but a running build needs it
	// Use c so that b is the least recently used unpinned blob.
	if rc, _, err := d.Open(ctx, c); err == nil {
		rc.Close()
	}
	e := put('e') // 400 bytes > 300: evict down to 270
	for _, tt := range []struct {
		name   string
		digest string
		want   bool
	}{{"pinned kept", a, true}, {"lru evicted", b, false}, {"next lru evicted to reach 90%", c, false}, {"new kept", e, true}} {
		_, err := d.Stat(ctx, tt.digest)
		if got := err == nil; got != tt.want {
			t.Errorf("%s: present = %v, want %v", tt.name, got, tt.want)
		}
		if err != nil && !errors.Is(err, artifacts.ErrNotFound) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if d.Size() > 300 {
		t.Errorf("size %d over limit", d.Size())
	}
}
