package worker

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// TestRestartReapsOrphans starts a process the way a job of a crashed
// worker would have left it (with the run's marker in its environment)
// and checks that the next worker on the same directory kills it.
func TestRestartReapsOrphans(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process reaping needs /proc")
	}
	sleep := testenv.NeedTool(t, "sleep")
	dir := t.TempDir()
	cl, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	first, err := New(Options{Client: cl, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// While it holds the directory, no other worker may use it.
	if _, err := New(Options{Client: cl, Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second worker on the same directory: err = %v", err)
	}
	first.Close() // as if it had crashed
	id, _ := os.ReadFile(filepath.Join(dir, "run"))
	orphan := exec.Command(sleep, "300")
	orphan.Env = []string{runVar + "=" + strings.TrimSpace(string(id))}
	bystander := exec.Command(sleep, "300")
	bystander.Env = []string{runVar + "=someone-else"}
	for _, c := range []*exec.Cmd{orphan, bystander} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer bystander.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	byDone := make(chan error, 1)
	go func() { byDone <- bystander.Wait() }()
	second, err := New(Options{Client: cl, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		orphan.Process.Kill()
		t.Fatal("the orphan of the previous run was not killed")
	}
	select {
	case <-byDone:
		t.Error("a process of another run was killed")
	case <-time.After(200 * time.Millisecond):
	}
}
