package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

func digestOf(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestCacheFetchVerifiesAndDedupes(t *testing.T) {
	c, err := OpenCache(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("artifact bytes")
	d := digestOf(body)
	var calls atomic.Int32
	release := make(chan struct{})
	get := func(ctx context.Context, digest string, w io.Writer) error {
		calls.Add(1)
		<-release
		_, err := w.Write(body)
		return err
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := c.Fetch(context.Background(), d, get)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			got, _ := io.ReadAll(f)
			if string(got) != string(body) {
				t.Errorf("got %q", got)
			}
		}()
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("downloaded %d times, want 1", n)
	}
	bad := digestOf([]byte("other"))
	_, err = c.Fetch(context.Background(), bad, func(ctx context.Context, _ string, w io.Writer) error { _, err := w.Write(body); return err })
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("mismatch: err = %v", err)
	}
	if c.Has(bad) {
		t.Error("mismatched content entered the cache")
	}
}

func TestCacheEvictsLRUAndReopens(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, 250)
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for i := range 3 {
		body := []byte(fmt.Sprintf("%0100d", i))
		d := digestOf(body)
		ds = append(ds, d)
		if _, err := c.Fetch(context.Background(), d, func(_ context.Context, _ string, w io.Writer) error { _, err := w.Write(body); return err }); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			f, _ := c.Open(ds[0]) // touch 0 so that 1 is the oldest
			f.Close()
		}
	}
	if !c.Has(ds[0]) || c.Has(ds[1]) || !c.Has(ds[2]) {
		t.Fatalf("after eviction has = %v %v %v, want true false true", c.Has(ds[0]), c.Has(ds[1]), c.Has(ds[2]))
	}
	if ev := c.TakeEvicted(); len(ev) != 1 || ev[0] != ds[1] {
		t.Errorf("TakeEvicted = %v, want [%s]", ev, ds[1])
	}
	if c.Size() != 200 {
		t.Errorf("Size = %d, want 200", c.Size())
	}
	if _, err := os.Stat(dir + "/" + ds[1]); !os.IsNotExist(err) {
		t.Errorf("evicted file still on disk: %v", err)
	}
	os.WriteFile(dir+"/tmp-123", []byte("junk"), 0o644)
	c2, err := OpenCache(dir, 250)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(c2.Digests()); got != 2 || !c2.Has(ds[2]) {
		t.Errorf("reopened cache holds %d (%v)", got, c2.Digests())
	}
	if _, err := os.Stat(dir + "/tmp-123"); !os.IsNotExist(err) {
		t.Error("stray temporary file not removed")
	}
}

func TestCacheFetchRetryRewinds(t *testing.T) {
	c, err := OpenCache(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("complete contents")
	f, err := c.Fetch(context.Background(), digestOf(body), func(_ context.Context, _ string, w io.Writer) error {
		w.Write([]byte("partial garbage"))
		if _, err := w.(io.Seeker).Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := w.Write(body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != string(body) {
		t.Errorf("got %q", got)
	}
}
