//go:build unix

package testenv

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// bindPlain binds a socket without SO_REUSEADDR to addr, as a program
// that does not share ports would, and reports the error.
func bindPlain(t *testing.T, addr string) error {
	t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}

// dial reports whether a connection to addr is accepted.
func dial(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

func TestHoldPort(t *testing.T) {
	addr, release, err := HoldPort()
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	if err := dial(t, addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a held port nobody listens on: got %v, want connection refused", err)
	}
	if err := bindPlain(t, addr); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind a held port without SO_REUSEADDR: got %v, want address in use", err)
	}
	// A server listens on it, goes away and comes back, as a restarted
	// server does.
	for round := range 2 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("round %d: listen on the held port: %v", round, err)
		}
		if err := dial(t, addr); err != nil {
			ln.Close()
			t.Fatalf("round %d: dial the listening server: %v", round, err)
		}
		ln.Close()
		if err := dial(t, addr); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d: dial after the server closed: got %v, want connection refused", round, err)
		}
		if err := bindPlain(t, addr); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("round %d: the port is not held after the server closed: bind got %v", round, err)
		}
	}

	release()
	release() // a second call does nothing
	if err := bindPlain(t, addr); err != nil {
		t.Fatalf("bind after release: %v (the port was not given back)", err)
	}
}

func TestReservePortReleasedAtCleanup(t *testing.T) {
	var addr string
	t.Run("hold", func(t *testing.T) {
		addr = ReservePort(t)
		if err := bindPlain(t, addr); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("bind a reserved port: got %v, want address in use", err)
		}
	})
	if err := bindPlain(t, addr); err != nil {
		t.Fatalf("bind after the subtest ended: %v (the port was not given back)", err)
	}
}
