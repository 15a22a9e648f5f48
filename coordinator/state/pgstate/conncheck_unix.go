//go:build unix

package pgstate

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the server has closed a connection that
// should be idle, or sent it something unasked (a terminated session's
// FATAL error before the end of the stream), without a round trip: a
// non-blocking peek at its socket. Data there on an idle connection
// means it is gone, or rarely that the server sent a message unasked (a
// notice): then the ping costs a round trip and succeeds. A socket it
// cannot peek at (not TCP or Unix) counts as alive.
func peerClosed(c net.Conn) bool {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	// Control, not Read: Read would wait for a read in progress (pgconn
	// may leave a background read blocked on an idle connection), and a
	// peek that does not wait needs no turn.
	err = raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// n > 0: a message waits; n == 0 without error: end of
		// stream; EAGAIN: nothing to read, alive.
		closed = n > 0 || (n == 0 && err == nil) || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
	})
	return closed || err != nil
}
