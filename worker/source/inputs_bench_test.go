package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/worker/artifact"
)

// BenchmarkCheckoutInputs compares ways to give a source_mode inputs job
// its inputs, on a real module (github.com/klauspost/compress from the
// module cache, or the module in TRYD_BENCH_MODULE, made a git
// repository) with the inputs of one of goplan's shards (every file of
// flate, zlib, gzip and internal, plus go.mod and go.sum):
//
//   - whole: what a job got before, `git worktree add` of the revision;
//   - inputs: CheckoutInputs (a cached ls-tree, one cat-file --batch,
//     digests verified), with SHA-256 digests;
//   - inputs-blobids: the same with git blob IDs as digests (compared
//     with the tree listing, no content hashed);
//   - worktree-pathspec: `git worktree add --no-checkout`, then
//     `git checkout <commit> --pathspec-from-file` with literal pathspecs;
//   - archive: `git archive <commit> -- paths` unpacked by artifact.Unpack.
//
// The last two do not verify the digests (that would read the files
// once more). Besides ns/op it reports cpu-ms/op: user+sys of the
// benchmark and its git children, steadier than wall time on a shared
// machine.
func BenchmarkCheckoutInputs(b *testing.B) {
	mod := os.Getenv("TRYD_BENCH_MODULE")
	if mod == "" {
		out, _ := exec.Command("go", "env", "GOMODCACHE").Output()
		ms, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "github.com/klauspost/compress@v1.*"))
		if len(ms) == 0 {
			b.Skip("no module: set TRYD_BENCH_MODULE or put github.com/klauspost/compress in the module cache")
		}
		mod = ms[len(ms)-1]
	}
	repo := b.TempDir()
	if err := os.CopyFS(repo, os.DirFS(mod)); err != nil {
		b.Fatal(err)
	}
	var inputs []graph.Input
	var paths []string
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		rel = filepath.ToSlash(rel)
		dir, _, _ := strings.Cut(rel, "/")
		if rel == "go.mod" || rel == "go.sum" || strings.Contains(rel, "/") && (dir == "flate" || dir == "zlib" || dir == "gzip" || dir == "internal") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			inputs = append(inputs, graph.Input{Path: rel, Digest: hex.EncodeToString(sum[:])})
			paths = append(paths, rel)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		b.Fatal(err)
	}
	git := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@b", "GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@b")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(repo, "init", "-q")
	git(repo, "add", "-A")
	git(repo, "commit", "-q", "-m", "m")
	rev := git(repo, "rev-parse", "HEAD")
	// The same inputs stated by git blob ID, as goplan states them in a
	// clean checkout: verified by comparing IDs, no content hashed.
	oids := map[string]string{}
	for _, line := range strings.Split(git(repo, "ls-tree", "-r", "HEAD"), "\n") {
		meta, p, _ := strings.Cut(line, "\t")
		if f := strings.Fields(meta); len(f) == 3 {
			oids[p] = f[2]
		}
	}
	blobInputs := make([]graph.Input, len(inputs))
	for i, in := range inputs {
		blobInputs[i] = graph.Input{Path: in.Path, Digest: oids[in.Path]}
	}
	s, err := New(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	url := "file://" + repo
	// Fetch once, outside the measurements.
	if _, release, err := s.Checkout(ctx, url, rev, filepath.Join(b.TempDir(), "warm")); err != nil {
		b.Fatal(err)
	} else {
		release()
	}
	gitDir := s.clonePath(url)
	b.Logf("%d inputs of %s", len(inputs), mod)

	methods := []struct {
		name string
		run  func(dst string) (release func(), err error)
	}{
		{"whole", func(dst string) (func(), error) {
			_, release, err := s.Checkout(ctx, url, rev, dst)
			return release, err
		}},
		{"inputs", func(dst string) (func(), error) {
			_, release, err := s.CheckoutInputs(ctx, url, rev, dst, inputs)
			return release, err
		}},
		{"inputs-blobids", func(dst string) (func(), error) {
			_, release, err := s.CheckoutInputs(ctx, url, rev, dst, blobInputs)
			return release, err
		}},
		{"worktree-pathspec", func(dst string) (func(), error) {
			if _, err := s.git(ctx, gitDir, "worktree", "add", "--no-checkout", "--detach", "--force", "--quiet", dst, rev); err != nil {
				return nil, err
			}
			release := func() { s.git(ctx, gitDir, "worktree", "remove", "--force", dst) }
			cmd := exec.Command("git", "--literal-pathspecs", "checkout", "--quiet", rev, "--pathspec-from-file=-", "--pathspec-file-nul")
			cmd.Dir = dst
			cmd.Stdin = strings.NewReader(strings.Join(paths, "\x00"))
			if out, err := cmd.CombinedOutput(); err != nil {
				release()
				return nil, &exec.Error{Name: string(out), Err: err}
			}
			return release, nil
		}},
		{"archive", func(dst string) (func(), error) {
			cmd := exec.Command("git", append([]string{"--git-dir=" + gitDir, "--literal-pathspecs", "archive", rev, "--"}, paths...)...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				return nil, err
			}
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			os.Mkdir(dst, 0o755)
			uerr := artifact.Unpack(out, dst, artifact.Limits{})
			if err := cmd.Wait(); err != nil {
				return nil, err
			}
			return func() { os.RemoveAll(dst) }, uerr
		}},
	}
	for _, m := range methods {
		b.Run(m.name, func(b *testing.B) {
			tmp := b.TempDir()
			cpu0 := cpuTime()
			for b.Loop() {
				dst := filepath.Join(tmp, "src")
				release, err := m.run(dst)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime returns the user+sys time of this process and its waited-for
// children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}
