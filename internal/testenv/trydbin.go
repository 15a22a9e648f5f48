package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// trydBin is the one tryd binary of a test process: built by the first
// TrydBinary call, removed by Main. It is process-wide on purpose (one
// build serves every test of the package), so it is the one piece of
// package-level state here, guarded by its mutex.
var trydBin struct {
	mu       sync.Mutex
	mainRan  bool   // Main is running the tests (and will clean up)
	dir      string // temporary directory holding the build
	path     string // the binary, once built
	buildErr error  // a failed build fails every later caller the same way
}

// Main runs the tests of a package and then removes the tryd binary
// TrydBinary built, if any. A package whose tests call TrydBinary calls it
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	trydBin.mu.Lock()
	trydBin.mainRan = true
	trydBin.mu.Unlock()
	code := m.Run()
	trydBin.mu.Lock()
	defer trydBin.mu.Unlock()
	if trydBin.dir != "" {
		os.RemoveAll(trydBin.dir)
		trydBin.dir, trydBin.path = "", ""
	}
	return code
}

// TrydBinary returns the path of a tryd binary, for tests that run tryd
// subcommands as their own processes. $TRYD_E2E_BIN, if set, names a
// prebuilt binary (e.g. one built with extra logging, or the CI's own
// build). Otherwise cmd/tryd is built once per test process, without
// -race: the race detector slows the processes enough to hide the
// protocols' timing bugs these tests are there to catch (each component's
// own tests run under -race). The package's TestMain must call Main, which
// removes the build when the tests end; without it TrydBinary fails rather
// than leave a binary behind in the temporary directory.
func TrydBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("TRYD_E2E_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("testenv: TRYD_E2E_BIN: %v", err)
		}
		return bin
	}
	trydBin.mu.Lock()
	defer trydBin.mu.Unlock()
	switch {
	case trydBin.path != "":
		return trydBin.path
	case trydBin.buildErr != nil:
		t.Fatal(trydBin.buildErr)
	case !trydBin.mainRan:
		t.Fatal("testenv: TrydBinary needs the package's TestMain to call testenv.Main (which removes the build)")
	}
	NeedTool(t, "go")
	dir, err := os.MkdirTemp("", "tryd-testbin-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	trydBin.dir = dir
	start := time.Now()
	path, err := BuildTryd(context.Background(), dir)
	if err != nil {
		trydBin.buildErr = err
		t.Fatal(err)
	}
	t.Logf("testenv: built tryd in %v", time.Since(start).Round(time.Millisecond))
	trydBin.path = path
	return path
}

// BuildTryd builds this repository's cmd/tryd into dir/tryd and returns
// its path. It is TrydBinary's build step without the testing hooks, for
// programs (benchmark drivers) that need a binary of the same tree.
func BuildTryd(ctx context.Context, dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "tryd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/tryd")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: go build ./cmd/tryd in %s: %w\n%s", root, err, b)
	}
	return out, nil
}

// repoRoot is RepoRoot without a testing.TB.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}
