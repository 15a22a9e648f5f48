// Package gitmirror keeps bare mirrors of the repositories tryd builds
// (Gerrit projects with refs/changes/*, GitHub repositories with
// refs/pull/*/head), fetches them the moment they change, and serves any
// revision to workers as a cached tarball or over read-only git smart HTTP.
// It can also push heads and tags on to another remote.
//
// A Mirror owns, under Options.Dir:
//
//	repos/<name>.git     one bare mirror per repository ("git clone --mirror",
//	                     then "git fetch --prune --atomic" of forced refspecs)
//	tarballs/<tree>.tar.gz  git archive output keyed by tree hash, LRU-evicted
//	tmp/                 clones, tarballs and key files being written
//
// Fetches run one at a time per repository: on start, on Nudge (the Go
// API, POST /<repo>/nudge, or an event from pubsubhelper's long-poll
// GET /waitevent), and every Options.Poll as a safety net. Nudges that
// arrive while a fetch runs are coalesced into one more fetch; failures
// back off exponentially. The HTTP wire format (tarballs, refs, nudges,
// smart HTTP, /debug) is documented in package gitmirror/client, which
// also holds the shared wire types and name validation.
//
// The pubsubhelper subscription reads x/build's event JSON: an object with
// "Time" (RFC 3339), "LongPollTimeout", and either
// "Gerrit": {"URL","Project","CommitHash","ChangeNumber"} or
// "GitHub": {"Action","RepoOwner","Repo","IssueNumber","PullRequestNumber"}.
//
// This package imports nothing else of tryd except internal helpers.
package gitmirror
