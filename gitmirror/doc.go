// Package gitmirror keeps bare mirrors of the repositories tryd builds
// (Gerrit projects with refs/changes/*, GitHub repositories with
// refs/pull/*/head), fetches them the moment they change, and serves any
// revision to workers as a cached tarball or over read-only git smart HTTP.
// It can also push heads and tags on to another remote.
//
// This package imports nothing else of tryd.
package gitmirror
