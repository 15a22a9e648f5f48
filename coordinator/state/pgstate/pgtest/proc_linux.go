package pgtest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// serverAttr ties the server's life to the thread that starts it: the
// kernel sends SIGQUIT (PostgreSQL's immediate shutdown) to the
// postmaster the moment that thread ends, which a killed test process
// (timeout, Ctrl-C, kill -9) always does. The kernel applies it after
// the switch to cred's user, so it holds in the root case too.
func serverAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
}

// processStart identifies process pid's current incarnation (its start
// time in clock ticks since boot, from /proc), so that a reused PID is
// not mistaken for the process that wrote an owner file; "" if there is
// no such process.
func processStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it follow the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// Field 22 (starttime) is the 20th after the command name.
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// isPostmaster reports whether process pid runs a PostgreSQL server
// binary (a PID in a stale postmaster.pid may since name another
// program).
func isPostmaster(pid int) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		// Another user's process (not root): its command line is
		// readable.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return false
		}
		exe, _, _ = strings.Cut(string(b), "\x00")
	}
	base := exe[strings.LastIndexByte(exe, '/')+1:]
	return base == "postgres" || base == "postmaster"
}
