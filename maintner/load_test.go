package maintner_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"testing"

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
