//go:build !unix

package pgstate

import "net"

// peerClosed cannot peek at a socket here: connections idle less than
// a second are used unchecked (pgxpool pings the others).
func peerClosed(net.Conn) bool { return false }
