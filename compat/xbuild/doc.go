// Package xbuild checks, from its own module, that tryd's mutation log is
// read correctly by golang.org/x/build/maintner, the client tryd promises
// compatibility with. It lives in a nested module so that the main module
// never depends on x/build's maintner package.
package xbuild
