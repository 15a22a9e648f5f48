// Package e2e holds the worker's end-to-end tests: a real coordinator
// process and real "tryd worker" processes (built once per test run with
// go build) on loopback, running real jobs with real git. It has no
// non-test code.
package e2e
