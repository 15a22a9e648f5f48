package proc

import "syscall"

// sysProcAttr puts the command in its own process group and, with
// Pdeathsig, makes it die with the worker (even when the worker is killed
// by SIGKILL) instead of running on unsupervised.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
