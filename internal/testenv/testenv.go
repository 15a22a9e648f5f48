// Package testenv holds helpers shared by tryd's tests: locating the
// recorded payloads in ../shared/fixtures, requiring external tools,
// knowing whether the test runs in CI, where nothing may be skipped for a
// missing tool or fixture, building the tryd binary once per test
// process, and holding loopback ports for servers that restart on a fixed
// address (HoldPort, ReservePort).
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// tool or fixture directory is a failure, not a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RepoRoot returns the root of the tryd repository (the directory holding
// go.mod), found from this source file's location.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// SharedDir returns the project's shared directory (../shared beside the
// repository, or $TRYD_SHARED). Without it the test is skipped with a
// message, except under CI where it fails.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TRYD_SHARED")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "..", "shared")
	}
	if st, err := os.Stat(filepath.Join(dir, "fixtures")); err != nil || !st.IsDir() {
		if InCI() {
			t.Fatalf("testenv: shared fixtures not found at %s (CI=true requires them)", dir)
		}
		t.Skipf("testenv: shared fixtures not found at %s; set TRYD_SHARED or clone ../shared to run this test", dir)
	}
	return dir
}

// Fixture returns the path of a file or directory under shared/fixtures,
// failing the test if it does not exist.
func Fixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(SharedDir(t), "fixtures", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: fixture %s: %v", rel, err)
	}
	return p
}

// NeedTool returns the path of an executable the test requires. When it is
// missing the test is skipped, except under CI where it fails: .ci/run must
// install it.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if InCI() {
			t.Fatalf("testenv: required tool %q not found in PATH (CI=true: .ci/run must install it)", name)
		}
		t.Skipf("testenv: tool %q not found in PATH; install it to run this test", name)
	}
	return p
}

// Short skips a long-running test under -short, except in CI.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() && !InCI() {
		t.Skip("testenv: long test skipped in -short mode")
	}
}
