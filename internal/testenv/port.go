package testenv

import "testing"

// Why ports are held, not merely found free
//
// Tests that kill a server (kill -9, a crash under test) and start it
// again must start it on the same address: its clients were configured
// with the URL. The usual way to get an address, listening on
// 127.0.0.1:0 and closing the listener, gives the port back to the
// kernel, which may hand it to any other program (another test's server
// on port 0, an outgoing connection) before the server starts, or while
// it is down. A stranger answering there is worse than an outage: a 404
// from the wrong server reads as a permanent failure (this was a real
// flake in worker/source: "revision not found (permanent)" while
// gitmirror was down).
//
// HoldPort instead keeps a socket bound to the port, but never listening,
// for as long as the caller wants the address. On Linux (where tryd's
// tests and CI run, and where TestHoldPort checks each point):
//
//   - Connections to the port are refused while no server listens on it
//     (a bound socket that does not listen accepts nothing), so a server
//     that is down looks down.
//   - The kernel does not choose the port for another bind to port 0 nor
//     for an outgoing connection: it is in use.
//   - The socket has SO_REUSEADDR, and so do the listeners of Go programs
//     (package net sets it on every listening socket on Unix). Two sockets
//     that both set SO_REUSEADDR may bind the same address as long as at
//     most one of them listens, so the server, in this process or a child,
//     can listen on the held port, be killed, and listen again.
//
// A program that does not set SO_REUSEADDR cannot bind the held port;
// tryd's components are Go programs (PostgreSQL sets it too). The BSDs
// and macOS are Unix but stricter: there two sockets may bind the very
// same address only with SO_REUSEPORT, which Go's listeners do not set,
// so a server may fail to listen on a held port with "address already in
// use"; the error names the port, nothing passes silently.

// HoldPort reserves a 127.0.0.1 port for the caller (see above): it
// returns the address ("127.0.0.1:PORT") and release, which gives the
// port back (calling it again does nothing). Servers may listen on the
// address, and stop and listen again, while it is held. It is for tests
// and benchmark harnesses that restart a server on a fixed address, and
// works only on Unix; elsewhere it returns an error.
func HoldPort() (addr string, release func(), err error) {
	return holdPort()
}

// ReservePort holds a 127.0.0.1 port (see HoldPort) until the test and its
// subtests end, and returns its address. Use it for a server the test
// restarts on the same address, or for an address that must refuse
// connections for the whole test. It fails the test where HoldPort fails
// (not on Unix).
func ReservePort(t testing.TB) string {
	t.Helper()
	addr, release, err := HoldPort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return addr
}
