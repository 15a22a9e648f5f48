package client

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func makeTarGz(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body))}
		if e.typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, PAXRecords: map[string]string{"comment": "83d9e67e6905288eddbcaf39197c6b22cd62b503"}}
		} else if e.typ != tar.TypeReg {
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
	zw.Close()
	return buf.Bytes()
}

func TestExtract(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		bad     bool
		check   func(t *testing.T, dir string)
	}{
		{"git archive shape", []entry{
			{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
			{name: "a/", typ: tar.TypeDir},
			{name: "a/b.txt", typ: tar.TypeReg, body: "hi"},
			{name: "run.sh", typ: tar.TypeReg, body: "#!/bin/sh", mode: 0o755},
			{name: "link", typ: tar.TypeSymlink, link: "a/b.txt"},
			{name: "deep/x/y", typ: tar.TypeReg, body: "y"},
		}, false, func(t *testing.T, dir string) {
			if b, err := os.ReadFile(filepath.Join(dir, "link")); err != nil || string(b) != "hi" {
				t.Errorf("link: %q %v", b, err)
			}
			if fi, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("run.sh mode %v %v", fi, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "deep/x/y")); err != nil || string(b) != "y" {
				t.Errorf("deep: %q %v", b, err)
			}
		}},
		{"dotdot", []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}, true, nil},
		{"absolute", []entry{{name: "/tmp/evil", typ: tar.TypeReg, body: "x"}}, true, nil},
		{"inner dotdot", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}, true, nil},
		{"write through symlink", []entry{
			{name: "out", typ: tar.TypeSymlink, link: "../outside"},
			{name: "out/evil", typ: tar.TypeReg, body: "x"},
		}, true, nil},
		{"absolute symlink then write", []entry{
			{name: "out", typ: tar.TypeSymlink, link: "/tmp"},
			{name: "out/evil-tryd-extract", typ: tar.TypeReg, body: "x"},
		}, true, nil},
		{"duplicate file", []entry{
			{name: "f", typ: tar.TypeReg, body: "1"},
			{name: "f", typ: tar.TypeReg, body: "2"},
		}, true, nil},
		{"device", []entry{{name: "dev", typ: tar.TypeChar}}, true, nil},
		{"hard link", []entry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "x")
			os.Mkdir(dir, 0o755)
			err := Extract(bytes.NewReader(makeTarGz(t, tc.entries)), dir)
			if tc.bad && err == nil {
				t.Fatal("accepted")
			}
			if !tc.bad && err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Error("wrote outside the directory")
			}
			if _, err := os.Stat(filepath.Join(parent, "outside", "evil")); err == nil {
				t.Error("wrote outside the directory")
			}
			if _, err := os.Stat("/tmp/evil-tryd-extract"); err == nil {
				os.Remove("/tmp/evil-tryd-extract")
				t.Error("wrote to /tmp through a symlink")
			}
			if tc.check != nil {
				tc.check(t, dir)
			}
		})
	}
	if err := Extract(bytes.NewReader([]byte("not gzip")), t.TempDir()); !errors.Is(err, ErrBadArchive) {
		t.Errorf("not gzip: %v", err)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(makeTarGz(f, []entry{{name: "a/b", typ: tar.TypeReg, body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "a"}}))
	f.Add(makeTarGz(f, []entry{{name: "../x", typ: tar.TypeReg, body: "x"}}))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "x")
		os.Mkdir(dir, 0o755)
		Extract(bytes.NewReader(data), dir)
		des, _ := os.ReadDir(parent)
		if len(des) != 1 {
			t.Fatalf("extract created %d entries beside its directory", len(des)-1)
		}
	})
}
