//go:build !unix

package gitexec

import "os/exec"

// setProcessGroup is a no-op where process groups do not exist; the
// command itself is killed on cancellation.
func setProcessGroup(cmd *exec.Cmd) {}
