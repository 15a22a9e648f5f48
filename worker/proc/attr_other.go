//go:build unix && !linux

package proc

import "syscall"

// sysProcAttr puts the command in its own process group. (Only Linux can
// also tie its life to the worker's.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
