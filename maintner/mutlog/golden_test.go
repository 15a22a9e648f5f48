package mutlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestGoldenV1 checks that a log directory written by the first version
// of this package (testdata/v1: a sealed and a growing segment, 256-byte
// segment limit) keeps loading, both read-only and as a writable log.
func TestGoldenV1(t *testing.T) {
	var want []string
	for i := range 12 {
		want = append(want, fmt.Sprintf("golden record %02d", i))
	}
	var got []string
	if err := ForEachDir("testdata/v1", DirOptions{VerifySHA224: true}, func(_ Position, p []byte) error {
		got = append(got, string(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ForEachDir = %q, want %q", got, want)
	}
	dir := t.TempDir()
	des, _ := os.ReadDir("testdata/v1")
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join("testdata/v1", de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, de.Name()), b, 0o644)
	}
	l := openDisk(t, dir, 256)
	segs := l.Segments()
	if len(segs) != 2 || !segs[0].Sealed || segs[1].Sealed || segs[0].SHA224 != "6f461a63335b446707740c6bd55b35e57c29fe4528bc585fa69f7bb5" {
		t.Fatalf("segments %+v", segs)
	}
	if _, err := l.Append(context.Background(), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if n := len(collect(t, l)); n != 13 {
		t.Fatalf("%d records after append", n)
	}
}

// FuzzOpenGrowing opens a log whose growing segment holds arbitrary bytes:
// Open must not panic, must either cut a torn tail or refuse with
// ErrCorrupt, and what it accepts must read back cleanly.
func FuzzOpenGrowing(f *testing.F) {
	f.Add([]byte("REC@0+5=helloREC@d+3=ab"))
	f.Add([]byte("REC@0+5=hello\x00\x00\x00"))
	f.Add([]byte("REC@0+5=helloJUNKREC@11+1=x"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, GrowingName(0)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		st, _ := NewDiskStore(dir)
		l, err := Open(context.Background(), Options{Store: st})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open refused with %v, want ErrCorrupt", err)
			}
			return
		}
		defer l.Close()
		if err := l.ForEach(context.Background(), Position{}, func(Position, []byte) error { return nil }); err != nil {
			t.Fatalf("opened log does not read back: %v", err)
		}
		if _, err := l.Append(context.Background(), []byte("more")); err != nil {
			t.Fatal(err)
		}
	})
}
