// Package trybot turns review activity into builds and builds into review
// results: it follows the corpus log, finds Gerrit changes voted Run-TryBot+1
// and GitHub pull requests asked to run, plans a graph per builder, submits
// them to the coordinator and reports back (TryBot-Result on Gerrit, check
// runs or commit statuses on GitHub).
//
// It imports the maintner follower and query client, the coordinator client
// and the gitmirror client.
package trybot
