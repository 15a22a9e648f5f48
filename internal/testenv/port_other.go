//go:build !unix

package testenv

import "errors"

// holdPort needs BSD socket semantics (SO_REUSEADDR lets a listener bind
// beside a bound, non-listening socket), which Windows does not share:
// there SO_REUSEADDR would let two listeners steal each other's port.
func holdPort() (string, func(), error) {
	return "", nil, errors.New("testenv: HoldPort needs a Unix system: elsewhere a port cannot be held for a server to listen on")
}
