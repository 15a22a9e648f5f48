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
