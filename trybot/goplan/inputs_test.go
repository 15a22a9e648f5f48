package goplan

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// linkFS holds symbolic links of every kind the planner meets.
func linkFS() fstest.MapFS {
	link := func(target string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}
	}
	return fstest.MapFS{
		"go.mod":           {Data: []byte("module example.com/l\n")},
		"l/l.go":           {Data: []byte("package l\n")},
		"l/gen.go":         link("../shared/gen.go"),
		"shared/gen.go":    {Data: []byte("package l\n")},
		"chain/1":          link("2"),
		"chain/2":          link("../go.mod"),
		"dir":              link("fixtures"),
		"fixtures/a.txt":   {Data: []byte("a")},
		"fixtures/b/c.txt": {Data: []byte("c")},
		"fixtures/b/loop":  link(".."),
		"via":              link("dir/b/c.txt"),
		"outside":          link("../../etc/passwd"),
		"absolute":         link("/etc/passwd"),
		"dangling":         link("nothing/here"),
		"gitlink":          link(".git/config"),
		".git/config":      {Data: []byte("[core]\n")},
		"self":             link("."),
	}
}

func sha256String(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestFileSetInputs checks how a job's files become inputs: a file by
// the SHA-256 of its content; a symbolic link by the SHA-256 of its
// target (the content of its git blob, which the worker verifies), with
// what it resolves to inside the module; nothing for paths that are
// neither, or for targets outside the module or under .git.
func TestFileSetInputs(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string // paths, space-separated
	}{
		{"file", []string{"l/l.go"}, "l/l.go"},
		{"link to a Go file in another directory", []string{"l/gen.go"}, "l/gen.go shared/gen.go"},
		{"chain of links", []string{"chain/1"}, "chain/1 chain/2 go.mod"},
		{"link to a directory: everything under it", []string{"dir"}, "dir fixtures/a.txt fixtures/b/c.txt fixtures/b/loop"},
		{"link through a linked directory", []string{"via"}, "dir fixtures/a.txt fixtures/b/c.txt fixtures/b/loop via"},
		{"target outside the module", []string{"outside", "absolute"}, "absolute outside"},
		{"dangling link", []string{"dangling"}, "dangling"},
		{"link into .git", []string{"gitlink"}, "gitlink"},
		{"link to the module root", []string{"self"}, "self"},
		{"missing file and directory are no inputs", []string{"nope.go", "fixtures"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := linkFS()
			set := map[string]bool{}
			for _, f := range tc.files {
				set[f] = true
			}
			in, err := newFileSet(fsys, nil).inputs(set)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, i := range in {
				got = append(got, i.Path)
				f := fsys[i.Path]
				if want := sha256String(string(f.Data)); i.Digest != want {
					t.Errorf("%s: digest %s, want %s (SHA-256 of the content, or of a link's target)", i.Path, i.Digest, want)
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("inputs %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
}

func TestDataFiles(t *testing.T) {
	fsys := linkFS()
	fsys["testdata/x.go"] = &fstest.MapFile{Data: []byte("data")}
	fsys["_tools/gen.go"] = &fstest.MapFile{Data: []byte("data")}
	fsys["l/.hidden.go"] = &fstest.MapFile{Data: []byte("data")}
	fsys["l/bad\\name"] = &fstest.MapFile{Data: []byte("no input can be named so")}
	fsys["l/.git"] = &fstest.MapFile{Data: []byte("gitdir: /x\n")}
	got, err := dataFiles(fsys)
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(got))
	want := "_tools/gen.go absolute chain/1 chain/2 dangling dir fixtures/a.txt fixtures/b/c.txt fixtures/b/loop gitlink go.mod l/.hidden.go outside self testdata/x.go via"
	if strings.Join(names, " ") != want {
		t.Errorf("data files\n%q\nwant\n%q", strings.Join(names, " "), want)
	}
}

func TestModuleFiles(t *testing.T) {
	tests := []struct {
		name  string
		extra []string
		want  string
	}{
		{"go.mod alone", nil, "go.mod"},
		{"go.sum and workspace", []string{"go.sum", "go.work", "go.work.sum"}, "go.mod go.sum go.work go.work.sum"},
		{"vendor without modules.txt is not used", []string{"vendor/x/x.go"}, "go.mod"},
		{"vendor tree", []string{"vendor/modules.txt", "vendor/x/x.go", "vendor/x/.git/HEAD"}, "go.mod vendor/modules.txt vendor/x/x.go"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"go.mod": {Data: []byte("module m\n")}}
			for _, f := range tc.extra {
				fsys[f] = &fstest.MapFile{Data: []byte(f)}
			}
			got, err := moduleFiles(fsys)
			if err != nil {
				t.Fatal(err)
			}
			names := slices.Sorted(maps.Keys(got))
			if strings.Join(names, " ") != tc.want {
				t.Errorf("got %q, want %q", strings.Join(names, " "), tc.want)
			}
		})
	}
}
