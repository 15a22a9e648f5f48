//go:build unix

package testenv

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
)

func holdPort() (string, func(), error) {
	// Under ForkLock, so that no child started meanwhile inherits the
	// socket before it is close-on-exec (not every Unix has
	// SOCK_CLOEXEC); a child holding it would keep the port past release.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return "", nil, fmt.Errorf("testenv: hold a port: socket: %w", err)
	}
	fail := func(what string, err error) (string, func(), error) {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("testenv: hold a port: %s: %w", what, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail("bind", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		return fail("getsockname", fmt.Errorf("unexpected address %T", sa))
	}
	var once sync.Once
	release := func() { once.Do(func() { syscall.Close(fd) }) }
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(in4.Port)), release, nil
}
