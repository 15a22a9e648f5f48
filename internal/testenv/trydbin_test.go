package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestTrydBinary builds cmd/tryd (once: the second call returns the same
// path) and runs it; TRYD_E2E_BIN, when set, is returned as it is.
func TestTrydBinary(t *testing.T) {
	Short(t)
	if os.Getenv("TRYD_E2E_BIN") != "" {
		t.Skip("TRYD_E2E_BIN is set: this test checks the build")
	}
	bin := TrydBinary(t)
	if again := TrydBinary(t); again != bin {
		t.Errorf("second TrydBinary = %s, want the first build %s", again, bin)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), "tryd") {
		t.Errorf("tryd version printed %q, want it to name tryd", out)
	}

	prebuilt := filepath.Join(t.TempDir(), "prebuilt")
	if err := os.WriteFile(prebuilt, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRYD_E2E_BIN", prebuilt)
	if got := TrydBinary(t); got != prebuilt {
		t.Errorf("with TRYD_E2E_BIN=%s: TrydBinary = %s", prebuilt, got)
	}
}
