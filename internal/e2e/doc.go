// Package e2e holds tryd's end-to-end tests: the tryd binary, built once
// per test run, runs each component as its own process (pubsubhelper,
// maintnerd, gitmirror, coordinator, workers, trybot, and tryd dev as a
// whole), talking real HTTP on 127.0.0.1 to each other and to the Gerrit
// and GitHub simulators that the test process serves, with real git
// underneath. The tests drive the simulators as people would (upload,
// vote, label, push), kill components with SIGKILL mid-run and restart
// them, and check what reaches Gerrit, GitHub and the corpus, as read by
// a tryd follower and by golang.org/x/build/maintner's own client (run as
// compat/xbuild's xfollow program, built with "go -C compat/xbuild", since
// the main module must not depend on x/build's maintner package).
//
// The package has no non-test code beyond this comment.
package e2e
