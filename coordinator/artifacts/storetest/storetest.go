// Package storetest is the conformance suite for artifacts.Store
// implementations: their tests call Run with a constructor of empty
// stores.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/artifacts"
)

// Digest returns the SHA-256 digest of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Run runs the suite. newStore returns an empty store.
func Run(t *testing.T, newStore func(t *testing.T) artifacts.Store) {
	ctx := context.Background()
	t.Run("PutOpenStat", func(t *testing.T) {
		s := newStore(t)
		data := []byte("hello, artifacts")
		d := Digest(data)
		if _, err := s.Stat(ctx, d); !errors.Is(err, artifacts.ErrNotFound) {
			t.Errorf("Stat before Put = %v, want ErrNotFound", err)
		}
		if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Stat(ctx, d); err != nil || n != int64(len(data)) {
			t.Errorf("Stat = %d, %v", n, err)
		}
		rc, n, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) || n != int64(len(data)) {
			t.Errorf("Open = %q (%d)", got, n)
		}
		// Idempotent.
		if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Errorf("second Put: %v", err)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		s := newStore(t)
		d := Digest(nil)
		if err := s.Put(ctx, d, bytes.NewReader(nil)); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Stat(ctx, d); err != nil || n != 0 {
			t.Errorf("Stat(empty) = %d, %v", n, err)
		}
	})
	t.Run("DigestMismatch", func(t *testing.T) {
		s := newStore(t)
		d := Digest([]byte("right"))
		err := s.Put(ctx, d, strings.NewReader("wrong"))
		if !errors.Is(err, artifacts.ErrDigestMismatch) {
			t.Errorf("Put(wrong content) = %v, want ErrDigestMismatch", err)
		}
		if _, err := s.Stat(ctx, d); !errors.Is(err, artifacts.ErrNotFound) {
			t.Errorf("mismatched blob was stored: %v", err)
		}
	})
	t.Run("BadDigest", func(t *testing.T) {
		s := newStore(t)
		for _, d := range []string{"", "../../etc/passwd", strings.Repeat("A", 64), strings.Repeat("a", 63)} {
			if err := s.Put(ctx, d, strings.NewReader("")); !errors.Is(err, artifacts.ErrBadDigest) {
				t.Errorf("Put(%q) = %v, want ErrBadDigest", d, err)
			}
			if _, _, err := s.Open(ctx, d); !errors.Is(err, artifacts.ErrBadDigest) {
				t.Errorf("Open(%q) = %v, want ErrBadDigest", d, err)
			}
		}
	})
	t.Run("Delete", func(t *testing.T) {
		s := newStore(t)
		data := []byte("to delete")
		d := Digest(data)
		if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Open(ctx, d); !errors.Is(err, artifacts.ErrNotFound) {
			t.Errorf("Open after Delete = %v", err)
		}
		if err := s.Delete(ctx, d); err != nil {
			t.Errorf("Delete of absent blob = %v", err)
		}
	})
	t.Run("ConcurrentPuts", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := []byte(fmt.Sprint("blob ", i%5))
				if err := s.Put(ctx, Digest(data), bytes.NewReader(data)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i := range 5 {
			data := []byte(fmt.Sprint("blob ", i))
			if n, err := s.Stat(ctx, Digest(data)); err != nil || n != int64(len(data)) {
				t.Errorf("blob %d: %d, %v", i, n, err)
			}
		}
	})
}
