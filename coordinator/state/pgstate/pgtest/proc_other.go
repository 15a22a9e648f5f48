//go:build unix && !linux

package pgtest

import "syscall"

// serverAttr runs the server as cred's user. Only Linux can tie the
// server's life to the test process (Pdeathsig); elsewhere an orphan
// lives until the next Launch reaps it.
func serverAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}

// processStart is "1" for a live process and "" for none: without /proc
// a reused PID cannot be told apart.
func processStart(pid int) string {
	if syscall.Kill(pid, 0) == nil || syscall.Kill(pid, 0) == syscall.EPERM {
		return "1"
	}
	return ""
}

// isPostmaster cannot tell without /proc: a live PID from a
// postmaster.pid is taken to be the server.
func isPostmaster(pid int) bool { return true }
