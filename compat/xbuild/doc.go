// Package xbuild checks, from its own module, that tryd's mutation log is
// read correctly by golang.org/x/build/maintner, the client tryd promises
// compatibility with. It lives in a nested module so that the main module
// never depends on x/build's maintner package.
//
// Beside the tests here, cmd/xfollow follows a live /logs URL with
// x/build's client and writes what its Corpus holds as JSON; the main
// module's end-to-end tests (internal/e2e) build it with
// "go -C compat/xbuild build" and compare it with tryd's own follower.
package xbuild
