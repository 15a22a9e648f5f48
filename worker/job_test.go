package worker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/worker/artifact"
)

func TestParseManifest(t *testing.T) {
	d := strings.Repeat("ab", 32)
	tests := []struct {
		name, data, wantErr string
	}{
		{name: "ok", data: `[{"path":"a/b.go","digest":"` + d + `","size":3},{"path":"c","digest":"` + d + `","size":0,"executable":true}]`},
		{name: "dotdot", data: `[{"path":"../x","digest":"` + d + `","size":1}]`, wantErr: "bad path"},
		{name: "absolute", data: `[{"path":"/etc/passwd","digest":"` + d + `","size":1}]`, wantErr: "bad path"},
		{name: "unclean", data: `[{"path":"a//b","digest":"` + d + `","size":1}]`, wantErr: "bad path"},
		{name: "bad digest", data: `[{"path":"a","digest":"xyz","size":1}]`, wantErr: "bad entry"},
		{name: "negative size", data: `[{"path":"a","digest":"` + d + `","size":-1}]`, wantErr: "bad entry"},
		{name: "duplicate", data: `[{"path":"a","digest":"` + d + `"},{"path":"a","digest":"` + d + `"}]`, wantErr: "twice"},
		{name: "not json", data: `{`, wantErr: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := parseManifest(strings.NewReader(tt.data))
			if tt.wantErr == "" {
				if err != nil || len(files) != 2 || !files[1].Executable {
					t.Fatalf("files %+v, err %v", files, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(`[{"path":"a/b","digest":"` + strings.Repeat("0", 64) + `","size":1}]`)
	f.Add(`[{"path":"..","digest":""}]`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, data string) {
		files, err := parseManifest(strings.NewReader(data))
		if err != nil {
			return
		}
		for _, file := range files {
			if !filepath.IsLocal(filepath.FromSlash(file.Path)) {
				t.Fatalf("accepted path %q", file.Path)
			}
		}
	})
}

func TestWriteFileStaysInside(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name  string
		setup func(jobDir string) error
		path  string
		ok    bool
	}{
		{name: "plain", path: "a/b.txt", ok: true},
		{name: "dotdot", path: "../x", ok: false},
		{name: "out replaced by a symlink", setup: func(d string) error {
			os.Remove(filepath.Join(d, "out"))
			return os.Symlink(outside, filepath.Join(d, "out"))
		}, path: "x", ok: false},
		{name: "symlinked subdirectory", setup: func(d string) error {
			return os.Symlink(outside, filepath.Join(d, "out", "sub"))
		}, path: "sub/x", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			os.Mkdir(filepath.Join(d, "out"), 0o755)
			if tt.setup != nil {
				if err := tt.setup(d); err != nil {
					t.Fatal(err)
				}
			}
			err := writeFile(d, &graph.WriteFile{Path: tt.path, Content: "c"})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("write_file wrote outside: %v", ents)
			}
		})
	}
}

func TestCleanJobDir(t *testing.T) {
	tests := []struct {
		name  string
		setup func(d string) error
		// kept lists the empty dependency directories expected to stay.
		kept []string
	}{
		{name: "untouched", setup: func(string) error { return nil }},
		{name: "empty dependency directories stay", setup: func(d string) error {
			for _, n := range []string{"0", "3"} {
				if err := os.Mkdir(filepath.Join(d, "deps", n), 0o755); err != nil {
					return err
				}
			}
			return nil
		}, kept: []string{"0", "3"}},
		{name: "full dependency directory goes", setup: func(d string) error {
			os.Mkdir(filepath.Join(d, "deps", "0"), 0o755)
			return os.WriteFile(filepath.Join(d, "deps", "0", "f"), []byte("x"), 0o644)
		}},
		{name: "odd names and files in deps go", setup: func(d string) error {
			for _, n := range []string{"00", "-1", "16", "x"} {
				os.Mkdir(filepath.Join(d, "deps", n), 0o755)
			}
			return os.WriteFile(filepath.Join(d, "deps", "1"), nil, 0o644)
		}},
		{name: "symlinked dependency directory goes", setup: func(d string) error {
			return os.Symlink(t.TempDir(), filepath.Join(d, "deps", "0"))
		}},
		{name: "deps replaced by a symlink", setup: func(d string) error {
			os.Remove(filepath.Join(d, "deps"))
			return os.Symlink(t.TempDir(), filepath.Join(d, "deps"))
		}},
		{name: "deps removed, outputs and other files left", setup: func(d string) error {
			os.Remove(filepath.Join(d, "deps"))
			os.WriteFile(filepath.Join(d, "out", "o"), nil, 0o644)
			os.WriteFile(filepath.Join(d, "tmp", "t"), nil, 0o644)
			return os.MkdirAll(filepath.Join(d, "src", "a"), 0o755)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			for _, sub := range jobSubdirs {
				if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.setup(d); err != nil {
				t.Fatal(err)
			}
			if err := cleanJobDir(d); err != nil {
				t.Fatal(err)
			}
			var got []string
			filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				if p != d {
					rel, _ := filepath.Rel(d, p)
					if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
						rel += " (not a directory)"
					}
					got = append(got, filepath.ToSlash(rel))
				}
				return nil
			})
			want := []string{"deps"}
			for _, k := range tc.kept {
				want = append(want, "deps/"+k)
			}
			want = append(want, "out", "tmp")
			if !slices.Equal(got, want) {
				t.Errorf("after cleaning: %q, want %q", got, want)
			}
		})
	}
}

// TestUploadOutputsEmpty checks the shortcut for an empty output
// directory: it gives the empty archive only once the store is known to
// hold it, and never for an output directory replaced by a symlink.
func TestUploadOutputsEmpty(t *testing.T) {
	tests := []struct {
		name     string
		uploaded bool
		setup    func(out string) error
		want     string // digest, or "" for an error
	}{
		{name: "empty, uploaded", uploaded: true, setup: func(string) error { return nil }, want: artifact.EmptyDigest},
		{name: "empty, store not known to hold it", setup: func(string) error { return nil }},
		{name: "symlink to an empty directory", uploaded: true, setup: func(out string) error {
			os.Remove(out)
			return os.Symlink(t.TempDir(), out)
		}},
		{name: "not empty", uploaded: true, setup: func(out string) error {
			return os.WriteFile(filepath.Join(out, "f"), []byte("x"), 0o644)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// An unreachable coordinator: any upload fails, so a digest
			// comes back only from the shortcut.
			cl, err := api.NewClient("http://127.0.0.1:1", "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			w, err := New(Options{Client: cl, Dir: t.TempDir(), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if tc.uploaded {
				w.markUploaded(artifact.EmptyDigest)
			}
			out := filepath.Join(t.TempDir(), "out")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(out); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			digest, size, err := w.uploadOutputs(ctx, out)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("uploadOutputs = %s, %d; want an error", digest, size)
			case tc.want != "" && (err != nil || digest != tc.want || size != artifact.EmptySize):
				t.Errorf("uploadOutputs = %s, %d, %v; want %s, %d", digest, size, err, tc.want, artifact.EmptySize)
			}
		})
	}
}
