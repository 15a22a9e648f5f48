//go:build unix

package mutlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLockHeldByForkedChild: a writer that closed its store may still
// hold the lock through a copy of its descriptor in a child forked a
// moment ago that has not exec'd yet (seen as "store is locked by
// another writer" when a test reopened a log cache its follower had just
// closed while other goroutines ran git). The next writer waits for that
// copy to go rather than fail; a lock still held after lockWait fails.
func TestLockHeldByForkedChild(t *testing.T) {
	dir := t.TempDir()
	st, err := NewDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.OpenWriter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The forked child's copy: the same open file description.
	child, err := unix.Dup(int(w.(*diskWriter).lock.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, func() { unix.Close(child) }) // the child execs
	w2, err := st.OpenWriter(context.Background())
	if err != nil {
		t.Fatalf("writer after the child's copy closed: %v", err)
	}
	defer w2.Close()

	// A writer that keeps it: the next one fails, after lockWait.
	t0 := time.Now()
	_, err = st.OpenWriter(context.Background())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("writer while another holds the lock: %v, want ErrLocked", err)
	}
	if d := time.Since(t0); d < lockWait {
		t.Errorf("ErrLocked after %v, want after %v of retries", d, lockWait)
	}
}
