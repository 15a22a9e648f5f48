// Command gomodule is the driver of bench/go-module.sh: it times a real
// Go module's try build with the Go planner (trybot/goplan) on a real
// coordinator and worker (in this process, over HTTP on loopback; the
// planner job runs the tryd binary given by -tryd), cold, after a
// one-file change in a leaf package, and after no change, each beside
// `go vet ./... && go test ./...` run directly on the same tree.
//
// Both sides use the machine's Go build cache, warm with the standard
// library as a worker's is after its first Go job; with -rename the
// module gets a fresh module path in every run, so nothing of it is in
// that cache from an earlier run, and the two sides cannot share compiled
// packages (the direct side builds in its own directory, the planned jobs
// with -trimpath). Module downloads come from the module cache only
// (GOPROXY=off).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
	"github.com/tryd-ci/tryd/trybot/goplan"
	"github.com/tryd-ci/tryd/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gomodule:", err)
		os.Exit(1)
	}
}

var (
	tryd      = flag.String("tryd", "", "tryd binary (required)")
	module    = flag.String("module", "", "module directory to copy (required)")
	dir       = flag.String("dir", "", "scratch directory (required)")
	dropTests = flag.String("drop-tests", "", "comma-separated package directories whose tests are removed on both sides (time budget)")
	leaf      = flag.String("leaf", "", "file (relative to the module) of a leaf package changed in the second run (required)")
	rename    = flag.String("rename", "", "module path to replace by a fresh one in every file (so that the shared Go build cache holds nothing of it)")
	slots     = flag.Int("slots", 2, "worker slots")
	testFlags = flag.String("test-flags", "-short", "flags of go test on both sides (space-separated)")
)

const (
	workerToken = "worker-token-0123456789"
	clientToken = "client-token-0123456789"
)

func run() error {
	flag.Parse()
	if *tryd == "" || *module == "" || *dir == "" || *leaf == "" {
		return errors.New("-tryd, -module, -dir and -leaf are required")
	}
	ctx := context.Background()
	src := filepath.Join(*dir, "repo")
	if err := sh(*dir, nil, "cp", "-r", *module+"/.", src); err != nil {
		return err
	}
	if err := sh(*dir, nil, "chmod", "-R", "u+w", src); err != nil {
		return err
	}
	if *rename != "" {
		// A module path of its own for this run, so that nothing the
		// shared Go build cache holds from an earlier run is reused.
		to := fmt.Sprintf("bench.example/r%d/m", rand.Int64())
		if err := sh(src, nil, "sh", "-c", `grep -rlF "$0" --include='*.go' --include=go.mod . | xargs sed -i "s#$0#$1#g"`, *rename, to); err != nil {
			return err
		}
	}
	for _, d := range strings.Split(*dropTests, ",") {
		if d == "" {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(src, d, "*_test.go"))
		for _, f := range files {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	gitEnv := []string{"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=b@example.com"}
	// The repository is packed, as a mirror's are (a fetch from
	// upstream arrives as a pack, and gitmirror serves it as such): a
	// freshly committed tree is 48 MB of loose objects, which the
	// worker's first fetch would make git compress from scratch (about
	// 1.5 s more of the cold build here), something no deployment does.
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "import"}, {"repack", "-a", "-d", "-q"}} {
		if err := sh(src, gitEnv, "git", args...); err != nil {
			return err
		}
	}
	n, err := out(src, goEnv(""), "go", "list", "./...")
	if err != nil {
		return err
	}
	fmt.Printf("module %s: %d packages\n", *module, len(strings.Fields(n)))

	// The baseline's tree: a second clone, changed in step.
	base := filepath.Join(*dir, "base")
	if err := sh(*dir, nil, "git", "clone", "-q", src, base); err != nil {
		return err
	}

	baseCache, trydCache := "", ""
	cc, stop, err := startStack(ctx, trydCache)
	if err != nil {
		return err
	}
	defer stop()

	baseline := func() (float64, error) {
		t := time.Now()
		if err := sh(base, goEnv(baseCache), "go", "vet", "./..."); err != nil {
			return 0, fmt.Errorf("baseline go vet: %w", err)
		}
		args := append([]string{"test"}, strings.Fields(*testFlags)...)
		if err := sh(base, goEnv(baseCache), "go", append(args, "./...")...); err != nil {
			return 0, fmt.Errorf("baseline go test: %w", err)
		}
		return time.Since(t).Seconds(), nil
	}
	rev := func(d string) (string, error) {
		s, err := out(d, nil, "git", "rev-parse", "HEAD")
		return strings.TrimSpace(s), err
	}
	measure := func(name string) (tr, gt float64, err error) {
		r, err := rev(src)
		if err != nil {
			return 0, 0, err
		}
		if gt, err = baseline(); err != nil {
			return 0, 0, err
		}
		var ran, cached int
		if tr, ran, cached, err = tryBuild(ctx, cc, "file://"+src, r); err != nil {
			return 0, 0, err
		}
		fmt.Printf("%-16s tryd %6.1fs (%d jobs ran, %d cached)   go vet+test %6.1fs   ratio %.2f\n", name, tr, ran, cached, gt, tr/gt)
		return tr, gt, nil
	}

	// What one job's source checkout costs here (the worker makes a git
	// worktree of the whole revision for every job).
	if bare := filepath.Join(*dir, "probe.git"); sh(*dir, nil, "git", "clone", "-q", "--bare", src, bare) == nil {
		t := time.Now()
		for i := 0; i < 3; i++ {
			if err := sh(bare, nil, "git", "worktree", "add", "-q", "--detach", filepath.Join(*dir, fmt.Sprintf("wt%d", i)), "HEAD"); err != nil {
				return err
			}
		}
		fmt.Printf("a full checkout (git worktree add) of the module takes %.2fs here\n", time.Since(t).Seconds()/3)
	}
	coldT, coldG, err := measure("cold")
	if err != nil {
		return err
	}
	// One-file change in a leaf package, the same on both sides.
	for _, d := range []string{src, base} {
		f, err := os.OpenFile(filepath.Join(d, *leaf), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(f, "\n// Changed by bench/go-module.sh.\nfunc benchChanged() int { return %d }\n", 42)
		f.Close()
		if err := sh(d, gitEnv, "git", "commit", "-q", "-am", "one-file change"); err != nil {
			return err
		}
	}
	chT, chG, err := measure("one-file change")
	if err != nil {
		return err
	}
	ncT, ncG, err := measure("no change")
	if err != nil {
		return err
	}
	fmt.Printf("RESULT cold_tryd=%.2f cold_go=%.2f change_tryd=%.2f change_go=%.2f nochange_tryd=%.2f nochange_go=%.2f\n",
		coldT, coldG, chT, chG, ncT, ncG)
	return nil
}

// goEnv is the environment of go commands: offline, with the given build
// cache.
func goEnv(cache string) []string {
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local")
	if cache != "" {
		env = append(env, "GOCACHE="+cache)
	}
	return env
}

func sh(d string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = d
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(b)))
	}
	return nil
}

func out(d string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = d
	if env != nil {
		cmd.Env = env
	}
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(b), nil
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// startStack starts a coordinator and one worker whose jobs find the
// tryd binary on PATH and use the given Go build cache.
func startStack(ctx context.Context, gocache string) (*api.Client, func(), error) {
	cdir := filepath.Join(*dir, "coordinator")
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(*dir, "state.db")})
	if err != nil {
		return nil, nil, err
	}
	arts, err := artifacts.OpenDisk(artifacts.DiskOptions{Dir: filepath.Join(cdir, "artifacts")})
	if err != nil {
		return nil, nil, err
	}
	c, err := coordinator.New(ctx, coordinator.Options{Store: st, Artifacts: arts, Dir: cdir,
		WorkerTokens: map[string]string{"w1": workerToken}, ClientToken: clientToken})
	if err != nil {
		return nil, nil, err
	}
	srv := httptest.NewServer(c.Handler())
	bin, err := filepath.Abs(filepath.Dir(*tryd))
	if err != nil {
		return nil, nil, err
	}
	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local"}
	if gocache != "" {
		env = append(env, "GOCACHE="+gocache)
	}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		if v, ok := os.LookupEnv(k); ok && (k != "GOCACHE" || gocache == "") {
			env = append(env, k+"="+v)
		}
	}
	wc, _ := api.NewClient(srv.URL, workerToken, nil)
	w, err := worker.New(worker.Options{Client: wc, Dir: filepath.Join(*dir, "worker"), Slots: *slots, BaseEnv: env, DrainTimeout: -1})
	if err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	cc, _ := api.NewClient(srv.URL, clientToken, nil)
	return cc, func() {
		cancel()
		<-done
		w.Close()
		srv.Close()
		c.Close()
		st.Close()
	}, nil
}

// tryBuild submits the Go planner graph of rev and waits for it.
func tryBuild(ctx context.Context, cc *api.Client, repo, rev string) (secs float64, ran, cached int, err error) {
	g := graph.Graph{Source: graph.Source{Repo: repo, Revision: rev},
		Jobs: []*graph.Job{goplan.PlannerJob(goplan.PlannerOptions{Timeout: 10 * time.Minute, TestFlags: strings.Fields(*testFlags)})}}
	t := time.Now()
	resp, err := cc.Submit(ctx, api.SubmitRequest{Graph: g})
	if err != nil {
		return 0, 0, 0, err
	}
	b, err := cc.Wait(ctx, resp.BuildID, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	secs = time.Since(t).Seconds()
	if b.State != api.BuildSucceeded {
		var failed []string
		for _, j := range b.Jobs {
			if j.State == api.JobFailed {
				failed = append(failed, j.Name+": "+j.Error)
			}
		}
		for _, j := range b.Jobs {
			if j.State == api.JobFailed {
				if rc, err := cc.JobLog(ctx, j.ID); err == nil {
					log, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
					rc.Close()
					fmt.Fprintf(os.Stderr, "log of %s:\n%s\n", j.Name, tail(string(log)))
				}
			}
		}
		return 0, 0, 0, fmt.Errorf("build %d %s (%s); failed jobs %q", b.ID, b.State, b.Error, failed)
	}
	var busy, plan float64
	for _, j := range b.Jobs {
		if j.State == api.JobCached {
			cached++
		} else {
			ran++
		}
		if j.Started != nil && j.Finished != nil && j.State != api.JobCached {
			d := j.Finished.Sub(*j.Started).Seconds()
			busy += d
			if j.Planner {
				plan = d
			}
		}
	}
	fmt.Printf("  build %d: planner %.1fs; jobs busy %.1fs in all (incl. source checkout), %.1fs per job that ran\n", b.ID, plan, busy, busy/float64(max(ran, 1)))
	return secs, ran, cached, nil
}
