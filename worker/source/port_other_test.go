//go:build !unix

package source

import (
	"net"
	"testing"
)

// reservePort returns a free 127.0.0.1 address. Unlike the Unix version
// it does not hold the port: another process may take it meanwhile.
func reservePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
