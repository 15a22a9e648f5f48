// Package goplan is tryd's Go planner: it turns the packages of a Go
// module (as `go list -e -json -deps ./...` describes them) into a
// coordinator graph fragment with one job per package for build and vet
// and one per package with tests for `go test`, so that the result cache
// reuses the jobs of every package a change leaves alone.
//
// # Shards
//
// A job costs a checkout and a go command that loads packages and links
// before it does any work (about a second or more), so a module whose
// per-package plan would have more than Options.MaxPackageJobs jobs
// (DefaultMaxPackageJobs) is planned in Options.Shards shards
// (DefaultShards) instead: contiguous runs of its packages in import
// path order, balanced by numbers of files, each one job running
// `go test -vet=all` on its packages (vet and test in one process; it
// vets the packages without tests too). A shard's inputs are the union
// of its packages' inputs (below) and it has no dependencies, so a
// change reruns exactly the shards whose packages read a changed file,
// and in a rerun shard the unchanged packages' compiles, vet results and
// test results come from the worker's Go build cache. Shard membership
// depends only on import paths and numbers of files: editing files never
// moves a package to another shard.
//
// # Job IDs and inputs
//
// Every job (of either plan) uses source mode "inputs" and lists every
// file of the module it may read; the worker gives it those files and
// nothing else, each verified against the revision, and the job's ID
// is derived from their contents (and from the IDs of the jobs it
// depends on: the vet jobs of the packages it imports), so a job whose
// files are unchanged keeps its ID from one revision to the next and
// its result comes from the cache. The inputs are:
//
//   - for every job, go.mod and go.sum (which pin everything outside the
//     module), go.work and go.work.sum when present, and the whole
//     vendor/ tree when vendor/modules.txt is present (the go command
//     then builds from it);
//   - for the vet job of a package, its own files (Go, assembly, cgo and
//     the like, tests included, since vet compiles the test packages, and
//     the embed files of the package and of its tests) and the source
//     files, embed files included, of every package of the module it
//     imports, directly or not, including through its tests (an external
//     test may import a package that imports the package under test, so
//     test imports are inputs rather than dependencies);
//   - for the test job, the same plus every other file of the module:
//     every file that is not the Go source of a package (a .go file
//     outside directories named testdata or starting with "_" or ".").
//     Go's own test cache records the files a test opens; the planner
//     cannot know them before the test runs, and tests do read files
//     outside their package (../testdata/..., ../test.txt), so it is
//     conservative. The trade-off: editing a README or any testdata
//     reruns every test job (not the vet jobs), while editing one
//     package's Go file reruns only the jobs of the packages that
//     import it.
//
// Nothing under a directory or file named .git is ever an input (no
// revision holds one; a worktree's .git file names the planner's
// checkout). An input's digest is its git blob ID at HEAD when the
// module is the top level of a git work tree with no change against
// HEAD (the planner job's checkout of the revision: one `git ls-tree`
// states them all, and the worker verifies them by comparing IDs,
// reading no content), else the SHA-256 of its content (an uploaded
// source, a file git does not track). Either describes the same content,
// so a job's ID is the same in every clean checkout of a revision, but
// not between a git checkout and an upload of the same files. A
// symbolic link is listed as git stores it: its digest is its blob ID
// or the SHA-256 of its target path (the content of its git blob), and
// a target inside the module (a file, or everything under a directory) is
// an input too, so the link resolves in the job's checkout; a target
// outside the module is not covered. Packages of other modules are not
// listed: go.sum pins them (a replace directive pointing at a local
// directory is not followed). The Go version planned with is part of
// every command (TRYD_GOPLAN_GOVERSION), so a new toolchain reruns
// everything.
//
// Because the worker gives a job only its inputs, a file the planner
// leaves out (a name no input may have, such as one with a backslash or
// a line break; a link's target outside the module) cannot make a
// cached result stale: the job never sees it, so at worst it fails or a
// test skips. Outside a clean git checkout the planner reads every file
// of the module once per plan to hash it.
//
// # Planner job
//
// PlannerJob returns the job a builder's graph holds: it runs
// `tryd goplan --source {{SOURCE_DIR}} --out {{OUTPUT_DIR}}/graph.json`
// on a worker, where "tryd" is found on the job's PATH (the worker puts
// its own executable there), and the coordinator splices the fragment in.
// A repository may instead check in a plain graph template, .tryd.yaml
// (see Template), which the planner job then turns into the graph.
//
// # Warm caches
//
// The jobs run plain `go vet` and `go test` in the worker's checkout, so
// the Go build cache (GOCACHE) and module cache (GOMODCACHE) are the
// worker's, outside job directories: by default under the worker's HOME,
// or wherever the worker's environment points them. Every command builds
// with -trimpath: each job checks the source out in a directory of its
// own, and without it the directory would be part of every compile's
// cache key, so nothing compiled for one job would serve the next.
package goplan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
)

// Limits on the go list output and the files read, so that a hostile
// repository cannot make the planner exhaust a worker.
const (
	// MaxListBytes bounds the output of go list.
	MaxListBytes = 256 << 20
	// MaxPackages bounds the module's packages.
	MaxPackages = 20_000
	// MaxFileBytes bounds one input file (larger files are refused).
	MaxFileBytes = 1 << 30
	// maxListEntries bounds the file lists of one package.
	maxListEntries = 100_000
)

// ErrBadList marks go list output the planner cannot use.
var ErrBadList = errors.New("goplan: bad go list output")

// Options configures a plan.
type Options struct {
	// Labels are the worker labels every job requires (the builder's).
	Labels map[string]string
	// Timeout bounds each job; zero leaves the coordinator's default.
	Timeout time.Duration
	// TestFlags are added to every `go test` (e.g. -short, -race).
	TestFlags []string
	// VetFlags are added to every `go vet`.
	VetFlags []string
	// GoVersion is the toolchain's version (go env GOVERSION); it is part
	// of every job's ID.
	GoVersion string
	// NoTests leaves out the test jobs.
	NoTests bool
	// MaxPackageJobs bounds the per-package plan: when one vet job per
	// package plus one test job per package with tests would be more
	// jobs than this, the packages are planned in shards instead (see
	// Shards). Zero means DefaultMaxPackageJobs; a negative value always
	// plans per package.
	MaxPackageJobs int
	// Shards is the number of shard jobs of a sharded plan; zero means
	// DefaultShards.
	Shards int
}

// Defaults of Options. Every job pays for a checkout of the source and
// for a go command that loads the packages, links and, for tests, runs
// its own binaries: about a second or more before it does any work. A
// small module is planned per package (the finest reuse of results); a
// larger one in a few shards, so that this cost is paid a few times
// rather than twice per package, while a change still reruns only the
// shards whose inputs it touches, and the unchanged packages of those
// shards come from the worker's Go build and test caches.
const (
	DefaultMaxPackageJobs = 12
	DefaultShards         = 4
)

// listFields are the fields of Package, as go list -json=... selects them.
const listFields = "ImportPath,Dir,Standard,DepOnly,Module,GoFiles,CgoFiles,CFiles,CXXFiles,MFiles,HFiles,FFiles,SFiles,SwigFiles,SwigCXXFiles,SysoFiles,IgnoredGoFiles,EmbedFiles,TestEmbedFiles,XTestEmbedFiles,TestGoFiles,XTestGoFiles,Imports,TestImports,XTestImports,Error"

// Package is the part of `go list -json` output the planner reads.
type Package struct {
	ImportPath string
	Dir        string
	Standard   bool
	DepOnly    bool
	Module     *struct {
		Path  string
		Main  bool
		Dir   string
		GoMod string
	}
	GoFiles, CgoFiles, CFiles, CXXFiles, MFiles, HFiles, FFiles, SFiles, SwigFiles, SwigCXXFiles, SysoFiles []string
	IgnoredGoFiles                                                                                          []string
	EmbedFiles, TestEmbedFiles, XTestEmbedFiles                                                             []string
	TestGoFiles, XTestGoFiles                                                                               []string
	Imports, TestImports, XTestImports                                                                      []string
	Error                                                                                                   *struct{ Err string }
}

// FS reads the module's files: paths are slash-separated and relative to
// the module root. Symbolic links are read as links (os.DirFS and
// fstest.MapFS do).
type FS interface {
	fs.ReadFileFS
	fs.ReadDirFS
	fs.ReadLinkFS
}

// Run lists the packages of the module in dir with the go command and
// returns the fragment. goCmd is the go program (default "go"); env is
// the environment of go list (nil: the current one).
//
// A TemplateFile at the root of dir takes precedence: its steps are the
// graph (see Template).
//
// When dir is the top level of a git work tree with no change against
// HEAD, the inputs' digests are their git blob IDs at HEAD (see
// gitBlobs); otherwise, and for files git does not track, SHA-256.
func Run(ctx context.Context, dir, goCmd string, env []string, opts Options) (*graph.Graph, error) {
	if goCmd == "" {
		goCmd = "go"
	}
	if t, ok, err := LoadTemplate(dir); err != nil {
		return nil, err
	} else if ok {
		return t.Graph(opts.Labels, opts.Timeout), nil
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return nil, fmt.Errorf("goplan: %s is not a module root: %w", dir, err)
	}
	if opts.GoVersion == "" {
		out, err := goOutput(ctx, dir, goCmd, env, "env", "GOVERSION")
		if err != nil {
			return nil, err
		}
		opts.GoVersion = strings.TrimSpace(string(out))
	}
	// Only the fields Package reads: the standard library's entries
	// (most of the output) shrink to a few bytes each.
	out, err := goOutput(ctx, dir, goCmd, env, "list", "-e", "-json="+listFields, "-deps", "./...")
	if err != nil {
		return nil, err
	}
	pkgs, err := ParseList(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("goplan: %w", err)
	}
	return plan(pkgs, abs, os.DirFS(abs).(FS), gitBlobs(ctx, abs), opts)
}

func goOutput(ctx context.Context, dir, goCmd string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var stdout limitedBuffer
	var stderr bytes.Buffer
	stdout.max = MaxListBytes
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if stdout.over {
			return nil, fmt.Errorf("goplan: go %s: output larger than %d bytes: %w", strings.Join(args, " "), MaxListBytes, ErrBadList)
		}
		return nil, fmt.Errorf("goplan: go %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// limitedBuffer fails writes beyond max bytes (killing go list's output).
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.over = true
		return 0, errors.New("output too large")
	}
	return b.Buffer.Write(p)
}

// ParseList decodes the concatenated JSON objects go list -json prints.
// It keeps the packages of the main module (not standard library or
// other modules' packages, which go.sum pins) and checks their import
// paths and file names.
func ParseList(r io.Reader) ([]*Package, error) {
	dec := json.NewDecoder(io.LimitReader(r, MaxListBytes))
	var pkgs []*Package
	seen := map[string]bool{}
	for n := 0; ; n++ {
		var p Package
		err := dec.Decode(&p)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: package %d: %v", ErrBadList, n, err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		if len(pkgs) >= MaxPackages {
			return nil, fmt.Errorf("%w: more than %d packages", ErrBadList, MaxPackages)
		}
		if err := checkPackage(&p); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadList, err)
		}
		if seen[p.ImportPath] {
			return nil, fmt.Errorf("%w: package %q listed twice", ErrBadList, p.ImportPath)
		}
		seen[p.ImportPath] = true
		pkgs = append(pkgs, &p)
	}
	return pkgs, nil
}

func checkPackage(p *Package) error {
	if p.ImportPath == "" || len(p.ImportPath) > graph.MaxNameLen || strings.ContainsAny(p.ImportPath, "\x00\n\r{}\\ ") {
		return fmt.Errorf("bad import path %q", trunc(p.ImportPath))
	}
	if p.Dir == "" || p.Module.Dir == "" {
		return fmt.Errorf("package %q: no directory", p.ImportPath)
	}
	lists := [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.MFiles, p.HFiles, p.FFiles, p.SFiles,
		p.SwigFiles, p.SwigCXXFiles, p.SysoFiles, p.TestGoFiles, p.XTestGoFiles, p.EmbedFiles, p.TestEmbedFiles, p.XTestEmbedFiles}
	for _, l := range lists {
		if len(l) > maxListEntries {
			return fmt.Errorf("package %q: more than %d files", p.ImportPath, maxListEntries)
		}
		for _, f := range l {
			if !validRel(f) {
				return fmt.Errorf("package %q: bad file name %q", p.ImportPath, trunc(f))
			}
		}
	}
	return nil
}

func validRel(p string) bool {
	return p != "" && len(p) <= graph.MaxNameLen && utf8.ValidString(p) && !strings.ContainsAny(p, "\x00\\\n\r") && path.Clean(p) == p &&
		!path.IsAbs(p) && p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// pkgInfo is a package being planned.
type pkgInfo struct {
	p     *Package
	rel   string          // directory relative to the module root, "." for the root
	src   map[string]bool // non-test files a dependent's build reads
	own   map[string]bool // src plus test files and test embeds: what vet reads of the package
	clos  map[string]bool // src of the package and everything it imports
	state int             // 0 new, 1 computing clos, 2 done
	vet   *graph.Job
}

// Plan returns the graph fragment for pkgs (from ParseList) of the module
// whose root is moduleDir, reading file contents through fsys (rooted at
// moduleDir).
// Every input's digest is the SHA-256 of its content (see Run for
// git blob IDs).
func Plan(pkgs []*Package, moduleDir string, fsys FS, opts Options) (*graph.Graph, error) {
	return plan(pkgs, moduleDir, fsys, nil, opts)
}

// plan is Plan, stating the digests of the files in blobs as their blob
// IDs.
func plan(pkgs []*Package, moduleDir string, fsys FS, blobs map[string]blob, opts Options) (*graph.Graph, error) {
	byPath := map[string]*pkgInfo{}
	var order []*pkgInfo
	// What pins the dependencies outside the module: every job reads it.
	modFiles, err := moduleFiles(fsys)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		rel, err := filepath.Rel(moduleDir, p.Dir)
		if err != nil || !filepath.IsLocal(rel) && rel != "." {
			return nil, fmt.Errorf("%w: package %q: directory %s is outside the module %s", ErrBadList, p.ImportPath, p.Dir, moduleDir)
		}
		rel = filepath.ToSlash(rel)
		nGo := len(p.GoFiles) + len(p.CgoFiles) + len(p.TestGoFiles) + len(p.XTestGoFiles)
		if nGo == 0 && (p.Error == nil || strings.Contains(p.Error.Err, "build constraints exclude all Go files")) {
			continue
		}
		info := &pkgInfo{p: p, rel: rel, src: maps.Clone(modFiles)}
		add := func(m map[string]bool, lists ...[]string) {
			for _, l := range lists {
				for _, f := range l {
					m[join(rel, f)] = true
				}
			}
		}
		add(info.src, p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.MFiles, p.HFiles, p.FFiles, p.SFiles,
			p.SwigFiles, p.SwigCXXFiles, p.SysoFiles, p.EmbedFiles)
		info.own = maps.Clone(info.src)
		add(info.own, p.TestGoFiles, p.XTestGoFiles, p.IgnoredGoFiles, p.TestEmbedFiles, p.XTestEmbedFiles)
		byPath[p.ImportPath] = info
		order = append(order, info)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].p.ImportPath < order[j].p.ImportPath })

	// clos: the source files of a package and of everything it imports
	// (the import graph is acyclic; a cycle is refused).
	var closure func(*pkgInfo) (map[string]bool, error)
	closure = func(pi *pkgInfo) (map[string]bool, error) {
		switch pi.state {
		case 1:
			return nil, fmt.Errorf("%w: import cycle through %q", ErrBadList, pi.p.ImportPath)
		case 2:
			return pi.clos, nil
		}
		pi.state = 1
		c := maps.Clone(pi.src)
		for _, imp := range local(pi.p.Imports, byPath, "") {
			ic, err := closure(imp)
			if err != nil {
				return nil, err
			}
			for f := range ic {
				c[f] = true
			}
		}
		pi.clos, pi.state = c, 2
		return c, nil
	}
	for _, pi := range order {
		if _, err := closure(pi); err != nil {
			return nil, err
		}
	}

	// data: what a test may read besides the Go source of packages,
	// listed only when a job runs tests.
	var data map[string]bool
	if !opts.NoTests {
		if data, err = dataFiles(fsys); err != nil {
			return nil, err
		}
	}
	files := newFileSet(fsys, blobs)
	// sets returns what pi's vet job (and with tests, its test job)
	// reads: its own files, its imports' closure and its test imports'.
	sets := func(pi *pkgInfo, tests bool) []map[string]bool {
		s := []map[string]bool{pi.own, pi.clos}
		for _, t := range local(append(slices.Clone(pi.p.TestImports), pi.p.XTestImports...), byPath, pi.p.ImportPath) {
			s = append(s, t.clos)
		}
		if tests {
			s = append(s, data)
		}
		return s
	}

	g := &graph.Graph{}
	env := []string{"TRYD_GOPLAN_GOVERSION=" + opts.GoVersion}
	if sharded(order, opts) {
		return planShards(order, files, sets, env, opts)
	}
	var vetJob func(*pkgInfo) (*graph.Job, error)
	vetJob = func(pi *pkgInfo) (*graph.Job, error) {
		if pi.vet != nil {
			return pi.vet, nil
		}
		var deps []string
		for _, imp := range local(pi.p.Imports, byPath, "") {
			d, err := vetJob(imp)
			if err != nil {
				return nil, err
			}
			deps = append(deps, d.Name)
		}
		in, err := files.inputs(sets(pi, false)...)
		if err != nil {
			return nil, err
		}
		argv := append(append([]string{"go", "vet", "-trimpath"}, opts.VetFlags...), pattern(pi.rel))
		pi.vet = &graph.Job{
			Name:       "vet " + pi.p.ImportPath,
			SourceMode: graph.SourceInputs,
			Inputs:     in,
			Deps:       deps,
			Commands:   []graph.Command{{Argv: argv, Env: slices.Clone(env)}},
			Labels:     opts.Labels,
			Timeout:    graph.Duration(opts.Timeout),
			Cacheable:  true,
		}
		g.Jobs = append(g.Jobs, pi.vet)
		return pi.vet, nil
	}
	for _, pi := range order {
		if _, err := vetJob(pi); err != nil {
			return nil, err
		}
	}
	if !opts.NoTests {
		for _, pi := range order {
			if !hasTests(pi) {
				continue
			}
			deps := []string{pi.vet.Name}
			for _, t := range local(append(slices.Clone(pi.p.TestImports), pi.p.XTestImports...), byPath, pi.p.ImportPath) {
				deps = append(deps, t.vet.Name)
			}
			in, err := files.inputs(sets(pi, true)...)
			if err != nil {
				return nil, err
			}
			argv := append(append([]string{"go", "test", "-trimpath"}, opts.TestFlags...), pattern(pi.rel))
			g.Jobs = append(g.Jobs, &graph.Job{
				Name:       "test " + pi.p.ImportPath,
				SourceMode: graph.SourceInputs,
				Inputs:     in,
				Deps:       deps,
				Commands:   []graph.Command{{Argv: argv, Env: slices.Clone(env)}},
				Labels:     opts.Labels,
				Timeout:    graph.Duration(opts.Timeout),
				Cacheable:  true,
			})
		}
	}
	if len(g.Jobs) == 0 {
		return nil, fmt.Errorf("goplan: module in %s has no packages to build", moduleDir)
	}
	return g, nil
}

// sharded reports whether the per-package plan of order would have more
// jobs than opts allow.
func sharded(order []*pkgInfo, opts Options) bool {
	maxJobs := opts.MaxPackageJobs
	if maxJobs == 0 {
		maxJobs = DefaultMaxPackageJobs
	}
	if maxJobs < 0 {
		return false
	}
	n := len(order)
	if !opts.NoTests {
		for _, pi := range order {
			if hasTests(pi) {
				n++
			}
		}
	}
	return n > maxJobs
}

func hasTests(pi *pkgInfo) bool { return len(pi.p.TestGoFiles)+len(pi.p.XTestGoFiles) > 0 }

// planShards plans order (sorted by import path) as shards: contiguous
// runs of packages, balanced by their numbers of files, each one job that
// vets and tests its packages in one go command (go test -vet=all, which
// vets packages without tests too). A shard's inputs are the union of
// its packages' (so a change reruns exactly the shards that read the
// changed file); shards have no dependencies, because contiguous runs of
// packages may import each other both ways, and a dependency would make
// a change to one shard rerun every shard after it. The assignment
// depends only on the packages' import paths and numbers of files, so
// editing files keeps every package in its shard.
func planShards(order []*pkgInfo, files *fileSet, setsOf func(*pkgInfo, bool) []map[string]bool,
	env []string, opts Options) (*graph.Graph, error) {
	k := opts.Shards
	if k <= 0 {
		k = DefaultShards
	}
	k = min(k, len(order))
	weight := func(pi *pkgInfo) int {
		w := 1 + len(pi.p.GoFiles) + len(pi.p.CgoFiles)
		if !opts.NoTests {
			w += len(pi.p.TestGoFiles) + len(pi.p.XTestGoFiles)
		}
		return w
	}
	total := 0
	for _, pi := range order {
		total += weight(pi)
	}
	shards := make([][]*pkgInfo, k)
	cum := 0
	for _, pi := range order {
		w := weight(pi)
		// The shard holding the package's midpoint on the line of all
		// weights cut into k equal parts.
		i := min(k-1, (2*cum+w)*k/(2*total))
		shards[i] = append(shards[i], pi)
		cum += w
	}
	g := &graph.Graph{}
	for _, members := range shards {
		if len(members) == 0 {
			continue
		}
		var sets []map[string]bool
		var pats, names []string
		for _, pi := range members {
			sets = append(sets, setsOf(pi, !opts.NoTests && hasTests(pi))...)
			pats = append(pats, pattern(pi.rel))
			names = append(names, pi.p.ImportPath)
		}
		in, err := files.inputs(sets...)
		if err != nil {
			return nil, err
		}
		var cmds []graph.Command
		vet := append(append([]string{"go", "vet", "-trimpath"}, opts.VetFlags...), pats...)
		switch {
		case opts.NoTests:
			cmds = append(cmds, graph.Command{Argv: vet, Env: slices.Clone(env)})
		case len(opts.VetFlags) > 0:
			// go test's -vet takes analyzers, not vet's flags.
			test := append(append([]string{"go", "test", "-trimpath", "-vet=off"}, opts.TestFlags...), pats...)
			cmds = append(cmds, graph.Command{Argv: vet, Env: slices.Clone(env)}, graph.Command{Argv: test, Env: slices.Clone(env)})
		default:
			test := append(append([]string{"go", "test", "-trimpath", "-vet=all"}, opts.TestFlags...), pats...)
			cmds = append(cmds, graph.Command{Argv: test, Env: slices.Clone(env)})
		}
		g.Jobs = append(g.Jobs, &graph.Job{
			Name:       shardName(opts.NoTests, names),
			SourceMode: graph.SourceInputs,
			Inputs:     in,
			Commands:   cmds,
			Labels:     opts.Labels,
			Timeout:    graph.Duration(opts.Timeout),
			Cacheable:  true,
		})
	}
	return g, nil
}

// shardName names a shard by its packages (shards are disjoint, so the
// first package makes the name unique), shortened when long.
func shardName(noTests bool, pkgs []string) string {
	verb := "test "
	if noTests {
		verb = "vet "
	}
	if name := verb + strings.Join(pkgs, " "); len(name) <= 300 {
		return name
	}
	return fmt.Sprintf("%s%s and %d more packages", verb, pkgs[0], len(pkgs)-1)
}

// local returns the packages of imports that belong to the module
// (except self), sorted and without duplicates.
func local(imports []string, byPath map[string]*pkgInfo, self string) []*pkgInfo {
	var out []*pkgInfo
	seen := map[string]bool{}
	for _, imp := range imports {
		if pi, ok := byPath[imp]; ok && imp != self && !seen[imp] {
			seen[imp] = true
			out = append(out, pi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p.ImportPath < out[j].p.ImportPath })
	return out
}

func pattern(rel string) string {
	if rel == "." {
		return "."
	}
	return "./" + rel
}

func join(dir, f string) string {
	if dir == "." {
		return f
	}
	return dir + "/" + f
}

// PlannerOptions configures the planner job of a builder.
type PlannerOptions struct {
	// Labels are the builder's worker labels (the planner and its jobs
	// run on the same kind of worker).
	Labels map[string]string
	// Timeout bounds the planner and each planned job.
	Timeout time.Duration
	// TestFlags are passed to every go test (e.g. -short).
	TestFlags []string
	// Tryd is the program that runs the planner (default "tryd", found
	// on the worker's PATH).
	Tryd string
}

// PlannerJob returns the planner job of a Go builder: it runs
// `tryd goplan` on a worker, whose fragment the coordinator splices in.
func PlannerJob(o PlannerOptions) *graph.Job {
	tryd := o.Tryd
	if tryd == "" {
		tryd = "tryd"
	}
	argv := []string{tryd, "goplan", "--source", "{{SOURCE_DIR}}", "--out", "{{OUTPUT_DIR}}/" + graph.PlannerOutput}
	keys := make([]string, 0, len(o.Labels))
	for k := range o.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, "--label", k+"="+o.Labels[k])
	}
	if o.Timeout > 0 {
		argv = append(argv, "--timeout", o.Timeout.String())
	}
	for _, f := range o.TestFlags {
		argv = append(argv, "--test-flag", f)
	}
	return &graph.Job{
		Name:      "plan",
		Planner:   true,
		Commands:  []graph.Command{{Argv: argv}},
		Labels:    o.Labels,
		Timeout:   graph.Duration(o.Timeout),
		Cacheable: true,
	}
}

// Write writes a fragment as the JSON a planner job leaves in
// {{OUTPUT_DIR}}/graph.json.
func Write(w io.Writer, g *graph.Graph) error {
	enc := json.NewEncoder(w)
	if err := enc.Encode(g); err != nil {
		return fmt.Errorf("goplan: write fragment: %w", err)
	}
	return nil
}

// DefaultJobTimeout bounds the planner and planned jobs of a builder
// whose configuration sets no timeout (as trybot's plain graphs).
const DefaultJobTimeout = 20 * time.Minute

// BuilderGraph returns the graph of a builder with planner "go" for src:
// the planner job alone, on the builder's labels, with its timeout (the
// planned jobs get the same labels and timeout).
func BuilderGraph(c config.Builder, src graph.Source) *graph.Graph {
	timeout := time.Duration(c.Timeout)
	if timeout <= 0 {
		timeout = DefaultJobTimeout
	}
	return &graph.Graph{Source: src, Jobs: []*graph.Job{PlannerJob(PlannerOptions{Labels: c.Labels, Timeout: timeout})}}
}

// Planner is what plans a builder's graph (trybot.Builders).
type Planner interface {
	Plan(builder string, src graph.Source) (*graph.Graph, error)
}

// WithGoPlanner returns a Planner that plans the builders with planner
// "go" through BuilderGraph and every other builder through fallback.
func WithGoPlanner(builders []config.Builder, fallback Planner) Planner {
	p := goPlanner{fallback: fallback, goBuilders: map[string]config.Builder{}}
	for _, c := range builders {
		if c.Planner == "go" && len(c.Steps) == 0 {
			p.goBuilders[c.Name] = c
		}
	}
	return p
}

type goPlanner struct {
	fallback   Planner
	goBuilders map[string]config.Builder
}

func (p goPlanner) Plan(builder string, src graph.Source) (*graph.Graph, error) {
	if c, ok := p.goBuilders[builder]; ok {
		return BuilderGraph(c, src), nil
	}
	return p.fallback.Plan(builder, src)
}
