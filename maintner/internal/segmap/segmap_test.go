package segmap

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestMap(t *testing.T) {
	want := bytes.Repeat([]byte("REC@0+5=hello"), 1000)
	for _, tc := range []struct {
		name     string
		size     int64
		populate bool
		wantErr  bool
	}{
		{"populated", int64(len(want)), true, false},
		{"lazy", int64(len(want)), false, false},
		{"empty", 0, false, true},
		{"too large", MaxSize + 1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0000.sealed.mutlog")
			if err := os.WriteFile(path, want, 0o444); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Map(f, tc.size, tc.populate)
			f.Close()
			if runtime.GOOS != "linux" {
				if err == nil {
					t.Fatal("mapped where mapping is unsupported")
				}
				if !tc.wantErr && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("Map: %v, want ErrUnsupported", err)
				}
				return
			}
			if tc.wantErr {
				if err == nil {
					Unmap(m)
					t.Fatal("Map accepted a bad size")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The mapping outlives the file's name and descriptor.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m, want) {
				t.Error("mapped bytes differ from the file")
			}
			if err := Unmap(m); err != nil {
				t.Fatal(err)
			}
		})
	}
}
