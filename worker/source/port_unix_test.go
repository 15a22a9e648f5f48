//go:build unix

package source

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// reservePort returns a 127.0.0.1 address whose port this test process
// holds, bound but not listening, until the test ends. Connections to it
// are refused unless a server listens on it, and the kernel gives it to
// no other listener on port 0 and to no outgoing connection, so a server
// the test kills and starts again there (a gitmirror restart) is not
// replaced meanwhile by another test's server: a stranger answering 404
// would be a permanent failure, not an outage, and fail the test. The
// socket has SO_REUSEADDR, as the listeners of Go programs do, which is
// what lets such a server listen beside it.
func reservePort(t *testing.T) string {
	t.Helper()
	syscall.ForkLock.RLock() // no child inherits the socket
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
