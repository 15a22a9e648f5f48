package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// tree writes files (name → content; a content of "->target" makes a
// symlink, "/" a directory) under a new directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case content == "/":
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case len(content) > 2 && content[:2] == "->":
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func TestPackDeterministicAndRoundTrip(t *testing.T) {
	files := map[string]string{"a.txt": "alpha", "sub/b.bin": "beta", "sub/deep/c": "gamma", "link": "->sub/b.bin", "empty/": "/"}
	d1, d2 := tree(t, files), tree(t, files)
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(d2, "a.txt"), later, later)
	var b1, b2 bytes.Buffer
	p1, err := Pack(d1, &b1, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Pack(d2, &b2, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Digest != p2.Digest || !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatalf("equal trees give different archives: %s vs %s", p1.Digest, p2.Digest)
	}
	if p1.Size != int64(b1.Len()) {
		t.Errorf("Size = %d, wrote %d", p1.Size, b1.Len())
	}
	out := t.TempDir()
	if err := Unpack(bytes.NewReader(b1.Bytes()), out, Limits{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a.txt": "alpha", "sub/b.bin": "beta", "sub/deep/c": "gamma", "link": "beta"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(out, "link")); err != nil || target != "sub/b.bin" {
		t.Errorf("link = %q, %v", target, err)
	}
	var b3 bytes.Buffer
	p3, err := Pack(out, &b3, Limits{})
	if err != nil || p3.Digest != p1.Digest {
		t.Errorf("repacking gives %s, %v; want %s", p3.Digest, err, p1.Digest)
	}
}

func TestPackEmpty(t *testing.T) {
	var b bytes.Buffer
	p, err := Pack(t.TempDir(), &b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Digest != EmptyDigest || p.Size != EmptySize || b.Len() != EmptySize {
		t.Errorf("empty archive: digest %s size %d (%d written), want %s size %d", p.Digest, p.Size, b.Len(), EmptyDigest, EmptySize)
	}
}

func TestPackRejectsEscapes(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		setup func(dir string) error
		want  error
	}{
		{name: "symlink to /etc", files: map[string]string{"etc": "->/etc"}, want: ErrEscape},
		{name: "symlink to parent", files: map[string]string{"up": "->../../x"}, want: ErrEscape},
		{name: "symlink through dot link", files: map[string]string{"s": "->.", "l": "->s/.."}, want: ErrEscape},
		{name: "dangling symlink", files: map[string]string{"d": "->nothere"}, want: ErrEscape},
		{name: "fifo", setup: func(dir string) error { return syscall.Mkfifo(filepath.Join(dir, "f"), 0o644) }, want: ErrUnsupported},
		{name: "output dir is a symlink", setup: func(dir string) error {
			os.Remove(dir + "/out")
			return os.Symlink("/etc", dir+"/out")
		}, want: ErrEscape},
		{name: "too large", files: map[string]string{"big": string(make([]byte, 2048))}, want: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tree(t, tt.files)
			if tt.setup != nil {
				if err := tt.setup(dir); err != nil {
					t.Fatal(err)
				}
			}
			if tt.name == "output dir is a symlink" {
				dir += "/out"
			}
			_, err := Pack(dir, &bytes.Buffer{}, Limits{MaxBytes: 1024})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Pack = %v, want %v", err, tt.want)
			}
		})
	}
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func mkTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

// checkNothingOutside fails if anything appeared in parent besides the
// extraction directory.
func checkNothingOutside(t testing.TB, parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "x" {
			t.Fatalf("unpack wrote %s outside its directory", e.Name())
		}
	}
}

func TestUnpackRejectsHostileArchives(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		want    error
	}{
		{name: "dotdot name", entries: []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}, want: ErrEscape},
		{name: "nested dotdot", entries: []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}, want: ErrEscape},
		{name: "absolute name", entries: []entry{{name: "/tmp/evil", typ: tar.TypeReg, body: "x"}}, want: ErrEscape},
		{name: "absolute symlink", entries: []entry{{name: "etc", link: "/etc", typ: tar.TypeSymlink}}, want: ErrEscape},
		{name: "climbing symlink", entries: []entry{{name: "up", link: "../", typ: tar.TypeSymlink}}, want: ErrEscape},
		{name: "write through dot-link", entries: []entry{
			{name: "s", link: ".", typ: tar.TypeSymlink},
			{name: "l", link: "s/..", typ: tar.TypeSymlink},
			{name: "l/evil", typ: tar.TypeReg, body: "x"},
		}},
		{name: "hard link", entries: []entry{{name: "h", link: "/etc/passwd", typ: tar.TypeLink}}, want: ErrUnsupported},
		{name: "device", entries: []entry{{name: "d", typ: tar.TypeChar}}, want: ErrUnsupported},
		{name: "overwrite via symlink", entries: []entry{
			{name: "f", link: "g", typ: tar.TypeSymlink},
			{name: "f", typ: tar.TypeReg, body: "x"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "x")
			os.Mkdir(dir, 0o755)
			err := Unpack(bytes.NewReader(mkTar(t, tt.entries)), dir, Limits{})
			if err == nil {
				t.Fatal("Unpack accepted a hostile archive")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			checkNothingOutside(t, parent)
		})
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(mkTar(f, []entry{{name: "a", typ: tar.TypeReg, body: "x"}, {name: "d/", typ: tar.TypeDir}}))
	f.Add(mkTar(f, []entry{{name: "s", link: ".", typ: tar.TypeSymlink}, {name: "l", link: "s/..", typ: tar.TypeSymlink}, {name: "l/evil", typ: tar.TypeReg, body: "x"}}))
	f.Add(mkTar(f, []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "x")
		os.Mkdir(dir, 0o755)
		_ = Unpack(bytes.NewReader(data), dir, Limits{MaxBytes: 1 << 20, MaxFiles: 100})
		checkNothingOutside(t, parent)
	})
}
