package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// inputsRepo is a real repository with nested directories, an executable,
// a symbolic link, two files of equal content and names that would mean
// something else as options or pathspecs.
type inputsRepo struct {
	*testenv.GitRepo
	old, rev string // the first and the second commit
}

var inputsFiles = map[string]string{
	"go.mod":             "module example.com/m\n",
	"go.sum":             "",
	"a/a.go":             "package a\n",
	"a/a_test.go":        "package a\n// test\n",
	"a/testdata/x.txt":   "x\n",
	"a/testdata/s/y.txt": "y\n",
	"b/b.go":             "package b\n",
	"b/copy.go":          "package b\n", // the same blob as b/b.go
	"README":             "read me\n",
	"-dash.txt":          "dash\n",
	":(glob)*":           "magic\n",
	"star*.txt":          "star\n",
	"w/a\\b":             "backslash\n", // no input may name it; a directory input brings it
}

func newInputsRepo(t *testing.T) *inputsRepo {
	r := &inputsRepo{GitRepo: testenv.NewGitRepo(t)}
	r.old = r.Commit("one", map[string]string{"go.mod": "module example.com/old\n", "a/a.go": "package old\n"})
	files := map[string]string{}
	for p, c := range inputsFiles {
		if c != "" {
			files[p] = c
		}
	}
	r.Commit("two", files)
	if err := os.WriteFile(filepath.Join(r.Dir, "run.sh"), []byte("#!/bin/sh\necho run\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/a.go", filepath.Join(r.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	r.rev = r.Commit("three", nil)
	return r
}

// blob returns the git object ID of path at rev.
func (r *inputsRepo) object(rev, path string) string { return r.Git("rev-parse", rev+":"+path) }

// listTree returns the files, links and directories under dir, with a
// suffix saying which: "/" for a directory, "@" for a link, "*" for an
// executable file.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			rel += "/"
		case d.Type()&fs.ModeSymlink != 0:
			rel += "@"
		case info.Mode()&0o100 != 0:
			rel += "*"
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

func TestCheckoutInputs(t *testing.T) {
	r := newInputsRepo(t)
	s := newStore(t)
	tests := []struct {
		name   string
		inputs []graph.Input
		want   []string // listTree of the checkout
	}{
		{
			name:   "files by SHA-256 as goplan states them",
			inputs: []graph.Input{{Path: "go.mod", Digest: sha(inputsFiles["go.mod"])}, {Path: "a/a.go", Digest: sha(inputsFiles["a/a.go"])}},
			want:   []string{"a/", "a/a.go", "go.mod"},
		},
		{
			name:   "file by git blob ID",
			inputs: []graph.Input{{Path: "README", Digest: r.object("HEAD", "README")}},
			want:   []string{"README"},
		},
		{
			name:   "directory by git tree ID brings its subtree",
			inputs: []graph.Input{{Path: "a/testdata", Digest: r.object("HEAD", "a/testdata")}},
			want:   []string{"a/", "a/testdata/", "a/testdata/s/", "a/testdata/s/y.txt", "a/testdata/x.txt"},
		},
		{
			name: "a directory and a file inside it",
			inputs: []graph.Input{{Path: "a", Digest: r.object("HEAD", "a")},
				{Path: "a/a.go", Digest: sha(inputsFiles["a/a.go"])}},
			want: []string{"a/", "a/a.go", "a/a_test.go", "a/testdata/", "a/testdata/s/", "a/testdata/s/y.txt", "a/testdata/x.txt"},
		},
		{
			name:   "two paths with the same content",
			inputs: []graph.Input{{Path: "b/b.go", Digest: sha("package b\n")}, {Path: "b/copy.go", Digest: sha("package b\n")}},
			want:   []string{"b/", "b/b.go", "b/copy.go"},
		},
		{
			name: "names that look like options or pathspecs are plain names",
			inputs: []graph.Input{{Path: "-dash.txt", Digest: sha("dash\n")}, {Path: ":(glob)*", Digest: sha("magic\n")},
				{Path: "star*.txt", Digest: sha("star\n")}},
			want: []string{"-dash.txt", ":(glob)*", "star*.txt"},
		},
		{
			name:   "directory holding a name no input may have",
			inputs: []graph.Input{{Path: "w", Digest: r.object("HEAD", "w")}},
			want:   []string{"w/", "w/a\\b"},
		},
		{
			name:   "executable keeps its mode",
			inputs: []graph.Input{{Path: "run.sh", Digest: sha("#!/bin/sh\necho run\n")}},
			want:   []string{"run.sh*"},
		},
		{
			name:   "symbolic link as git records it",
			inputs: []graph.Input{{Path: "link", Digest: r.object("HEAD", "link")}},
			want:   []string{"link@"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "src")
			commit, release, err := s.CheckoutInputs(context.Background(), r.URL(), r.rev, dst, tc.inputs)
			if err != nil {
				t.Fatalf("CheckoutInputs: %v", err)
			}
			if commit != r.rev {
				t.Errorf("commit = %s, want %s", commit, r.rev)
			}
			if got := listTree(t, dst); !slices.Equal(got, tc.want) {
				t.Errorf("checkout holds %q, want %q", got, tc.want)
			}
			for _, in := range tc.inputs {
				if want, ok := inputsFiles[in.Path]; ok && want != "" {
					if b, err := os.ReadFile(filepath.Join(dst, in.Path)); err != nil || string(b) != want {
						t.Errorf("%s = %q, %v; want %q", in.Path, b, err, want)
					}
				}
			}
			release()
			if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after release, %s: %v", dst, err)
			}
		})
	}
	if target, err := os.Readlink(filepath.Join(r.Dir, "link")); err != nil || target != "a/a.go" {
		t.Fatalf("test repository link: %q, %v", target, err)
	}
}

// TestCheckoutInputsRefused checks that an input whose digest does not
// describe the revision, that is missing there, has no digest or a path
// that could escape fails with the right kind of error naming it, and
// leaves no checkout behind.
func TestCheckoutInputsRefused(t *testing.T) {
	r := newInputsRepo(t)
	s := newStore(t)
	tests := []struct {
		name    string
		inputs  []graph.Input
		want    error
		wantMsg string
		noGit   bool // refused before the clone is even made
	}{
		{name: "old content's SHA-256 at a new revision", inputs: []graph.Input{{Path: "a/a.go", Digest: sha("package old\n")}},
			want: ErrInputMismatch, wantMsg: `input "a/a.go"`},
		{name: "old content's blob ID at a new revision", inputs: []graph.Input{{Path: "go.mod", Digest: r.object(r.old, "go.mod")}},
			want: ErrInputMismatch, wantMsg: `input "go.mod"`},
		{name: "old tree ID of a directory", inputs: []graph.Input{{Path: "a", Digest: r.object(r.old, "a")}},
			want: ErrInputMismatch, wantMsg: `input "a"`},
		{name: "SHA-256 of a directory", inputs: []graph.Input{{Path: "a/testdata", Digest: sha("x\n")}},
			want: ErrInputMismatch, wantMsg: `input "a/testdata"`},
		{name: "one good and one bad", inputs: []graph.Input{{Path: "README", Digest: sha("read me\n")}, {Path: "b/b.go", Digest: sha("package c\n")}},
			want: ErrInputMismatch, wantMsg: `input "b/b.go"`},
		{name: "missing at the revision", inputs: []graph.Input{{Path: "nope.go", Digest: sha("")}},
			want: ErrInputMismatch, wantMsg: `input "nope.go" does not exist`},
		{name: "unknown digest format", inputs: []graph.Input{{Path: "README", Digest: "md5:abc"}},
			want: ErrInputMismatch, wantMsg: `input "README"`},
		{name: "no digest", inputs: []graph.Input{{Path: "README"}}, want: ErrBadInput, wantMsg: `input "README" has no digest`, noGit: true},
		{name: "no inputs", want: ErrBadInput, noGit: true},
		{name: "dot dot", inputs: []graph.Input{{Path: "../x", Digest: sha("")}}, want: ErrBadInput, wantMsg: "../x", noGit: true},
		{name: "inner dot dot", inputs: []graph.Input{{Path: "a/../../x", Digest: sha("")}}, want: ErrBadInput, noGit: true},
		{name: "absolute", inputs: []graph.Input{{Path: "/etc/passwd", Digest: sha("")}}, want: ErrBadInput, wantMsg: "/etc/passwd", noGit: true},
		{name: "not clean", inputs: []graph.Input{{Path: "a//a.go", Digest: sha("")}}, want: ErrBadInput, noGit: true},
		{name: "dot", inputs: []graph.Input{{Path: ".", Digest: sha("")}}, want: ErrBadInput, noGit: true},
		{name: "git directory", inputs: []graph.Input{{Path: "a/.GIT/config", Digest: sha("")}}, want: ErrBadInput, noGit: true},
		{name: "NUL", inputs: []graph.Input{{Path: "a\x00b", Digest: sha("")}}, want: ErrBadInput, noGit: true},
		{name: "newline", inputs: []graph.Input{{Path: "a\nb", Digest: sha("")}}, want: ErrBadInput, noGit: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A store of its own, so that noGit can see whether a clone
			// was made.
			st := s
			if tc.noGit {
				st = newStore(t)
			}
			dst := filepath.Join(t.TempDir(), "src")
			_, release, err := st.CheckoutInputs(context.Background(), r.URL(), r.rev, dst, tc.inputs)
			if err == nil {
				release()
				t.Fatal("CheckoutInputs succeeded")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q, want %v mentioning %q", err, tc.want, tc.wantMsg)
			}
			if IsTransient(err) {
				t.Errorf("error %v counts as transient", err)
			}
			if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed checkout left %s: %v", dst, err)
			}
			if tc.noGit {
				if ents, _ := os.ReadDir(st.opts.Dir); len(ents) != 0 {
					t.Errorf("a refused input reached git: %s holds %v", st.opts.Dir, ents)
				}
			}
		})
	}
}

// TestCheckoutInputsConcurrent checks out inputs of two revisions from
// several goroutines at once (one tree listing per revision, shared).
func TestCheckoutInputsConcurrent(t *testing.T) {
	r := newInputsRepo(t)
	s := newStore(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev, in := r.rev, graph.Input{Path: "a/a.go", Digest: sha("package a\n")}
			if i%2 == 1 {
				rev, in = r.old, graph.Input{Path: "a/a.go", Digest: sha("package old\n")}
			}
			dst := filepath.Join(t.TempDir(), "src")
			_, release, err := s.CheckoutInputs(context.Background(), r.URL(), rev, dst, []graph.Input{in})
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			if got := listTree(t, dst); !slices.Equal(got, []string{"a/", "a/a.go"}) {
				t.Errorf("checkout %d holds %q", i, got)
			}
		}()
	}
	wg.Wait()
}

// TestCheckoutInputsBlobIDs checks that inputs stated by their git blob
// IDs (as goplan states them in a clean checkout) are verified against
// the tree listing alone: no blob is left to hash as it is read, where
// SHA-256 digests leave every blob. A wrong blob ID (another file's)
// fails naming the input.
func TestCheckoutInputsBlobIDs(t *testing.T) {
	r := newInputsRepo(t)
	s := newStore(t)
	ctx := context.Background()
	var byID, bySum []graph.Input
	blobs := map[string]bool{}
	for _, rec := range strings.Split(r.Git("ls-tree", "-r", "-z", r.rev), "\x00") {
		meta, p, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 || CheckInputPath(p) != nil {
			continue
		}
		byID = append(byID, graph.Input{Path: p, Digest: f[2]})
		bySum = append(bySum, graph.Input{Path: p, Digest: sha(r.Git("cat-file", "blob", f[2]) + "\n")})
		blobs[f[2]] = true
	}
	// r.Git trims the output: fix the digests of contents without a
	// final newline (the link's target).
	for i, in := range bySum {
		if in.Path == "link" {
			bySum[i].Digest = sha("a/a.go")
		}
	}
	if len(byID) < 10 {
		t.Fatalf("only %d inputs", len(byID))
	}
	dst := filepath.Join(t.TempDir(), "src")
	_, release, err := s.CheckoutInputs(ctx, r.URL(), r.rev, dst, byID)
	if err != nil {
		t.Fatalf("CheckoutInputs by blob ID: %v", err)
	}
	release()
	tests := []struct {
		name    string
		inputs  []graph.Input
		toHash  int
		wantErr string
	}{
		{name: "blob IDs", inputs: byID, toHash: 0},
		{name: "SHA-256", inputs: bySum, toHash: len(blobs)},
		{name: "another file's blob ID", inputs: []graph.Input{byID[0], {Path: "README", Digest: r.object(r.rev, "go.mod")}},
			wantErr: `input "README": digest ` + r.object(r.rev, "go.mod")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.planInputs(ctx, s.clonePath(r.URL()), r.rev, tc.inputs)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInputMismatch) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %v mentioning %q", err, ErrInputMismatch, tc.wantErr)
				}
				_, _, err := s.CheckoutInputs(ctx, r.URL(), r.rev, filepath.Join(t.TempDir(), "src"), tc.inputs)
				if !errors.Is(err, ErrInputMismatch) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("CheckoutInputs: error %v, want %v mentioning %q", err, ErrInputMismatch, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.wantSum) != tc.toHash {
				t.Errorf("%d blobs to hash, want %d", len(p.wantSum), tc.toHash)
			}
			if len(p.files) != len(tc.inputs) {
				t.Errorf("%d files to write, want %d", len(p.files), len(tc.inputs))
			}
		})
	}
}

func TestSelectFiles(t *testing.T) {
	files := []graph.File{
		{Path: "z.go", Digest: sha("z")},
		{Path: "a/x.go", Digest: sha("x")},
		{Path: "a/sub/y.txt", Digest: sha("y")},
		{Path: "a.go", Digest: sha("a")},
		{Path: "ab/c", Digest: sha("c")},
	}
	tests := []struct {
		name    string
		inputs  []graph.Input
		want    []string
		wantErr error
	}{
		{name: "one file", inputs: []graph.Input{{Path: "a.go", Digest: sha("a")}}, want: []string{"a.go"}},
		{name: "file without digest", inputs: []graph.Input{{Path: "z.go"}}, want: []string{"z.go"}},
		{name: "directory", inputs: []graph.Input{{Path: "a", Digest: "tree:whatever"}}, want: []string{"a/sub/y.txt", "a/x.go"}},
		{name: "directory and a file in it", inputs: []graph.Input{{Path: "a"}, {Path: "a/x.go"}}, want: []string{"a/sub/y.txt", "a/x.go"}},
		{name: "wrong digest", inputs: []graph.Input{{Path: "a.go", Digest: sha("b")}}, wantErr: ErrInputMismatch},
		{name: "missing", inputs: []graph.Input{{Path: "b"}}, wantErr: ErrInputMismatch},
		{name: "prefix is not a directory", inputs: []graph.Input{{Path: "a/su"}}, wantErr: ErrInputMismatch},
		{name: "dot dot", inputs: []graph.Input{{Path: "../a.go"}}, wantErr: ErrBadInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectFiles(files, tc.inputs)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SelectFiles = %v, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range got {
				paths = append(paths, f.Path)
			}
			if !slices.Equal(paths, tc.want) {
				t.Errorf("SelectFiles = %q, want %q", paths, tc.want)
			}
		})
	}
}

// FuzzCheckInputPath: a path CheckInputPath accepts stays inside any
// directory it is joined to and names no .git directory.
func FuzzCheckInputPath(f *testing.F) {
	for _, s := range []string{"a/b.go", "../x", "/abs", "a/../b", ".git", "a/.Git/x", "-x", ":(glob)*", "a//b", "./a", "a/", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckInputPath(p) != nil {
			return
		}
		if !filepath.IsLocal(filepath.FromSlash(p)) || strings.Contains(p, "\\") {
			t.Errorf("accepted %q, which is not local", p)
		}
		for _, part := range strings.Split(p, "/") {
			if strings.EqualFold(part, ".git") || part == "" || part == "." || part == ".." {
				t.Errorf("accepted %q with component %q", p, part)
			}
		}
	})
}

// FuzzParseTree: parseTree never panics, marks unsafe every entry whose
// path could leave the checkout, and returns entries in sorted order.
func FuzzParseTree(f *testing.F) {
	f.Add([]byte("100644 blob 0123456789abcdef0123456789abcdef01234567\ta/b.go\x00040000 tree 0123456789abcdef0123456789abcdef01234567\ta\x00"))
	f.Add([]byte("100644 blob 01234567\t../x\x00"))
	f.Add([]byte("100644 blob 01234567\ta/.git/x\x00100644 blob 01234567\ta\\b\x00"))
	f.Add([]byte("100644 blob zz\tx\x00"))
	f.Add([]byte("100644 blob 0123\tx"))
	f.Fuzz(func(t *testing.T, out []byte) {
		tr, err := parseTree(out)
		if err != nil {
			return
		}
		for i, e := range tr {
			if !isHex(e.oid) {
				t.Errorf("accepted entry %+v", e)
			}
			if !e.unsafe && (!filepath.IsLocal(e.path) || strings.Contains(e.path, "\x00") || hasGitComponent(e.path)) {
				t.Errorf("entry %q not marked unsafe", e.path)
			}
			if i > 0 && tr[i-1].path > e.path {
				t.Errorf("entries out of order: %q before %q", tr[i-1].path, e.path)
			}
		}
	})
}

// TestInputsMetric: a refused inputs checkout is counted as bad_inputs.
func TestInputsMetric(t *testing.T) {
	r := newInputsRepo(t)
	reg := prometheus.NewRegistry()
	s, err := New(Options{Dir: t.TempDir(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := []graph.Input{{Path: "README", Digest: sha("read me\n")}}
	bad := []graph.Input{{Path: "README", Digest: sha("other\n")}}
	for _, in := range [][]graph.Input{good, bad, bad} {
		dst := filepath.Join(t.TempDir(), "src")
		if _, release, err := s.CheckoutInputs(ctx, r.URL(), r.rev, dst, in); err == nil {
			release()
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "tryd_worker_source_checkouts_total" && l.GetValue() == "bad_inputs" {
					got = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got != 2 {
		t.Errorf("tryd_worker_source_checkouts_total{result=bad_inputs} = %v, want 2", got)
	}
}
