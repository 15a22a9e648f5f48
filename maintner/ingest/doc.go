// Package ingest feeds a leader corpus (maintner.Corpus with an
// Appender) from the review systems: GitHub through its REST API
// (go-github) and Gerrit through git (NoteDb meta refs), the way
// golang.org/x/build/maintner does, so that x/build clients of the log
// see the same mutations.
//
// Each source is a syncer (GitHub for one GitHub server, Gerrit for one
// Gerrit server) with a worker per tracked repository or project. Work
// starts from a nudge (Nudge, typically from a pubsubhelper event) or
// from the periodic reconciliation pass (default 15 minutes for GitHub,
// 5 for Gerrit), which is the same code path, only wider: events are
// hints, the source of truth is re-read, compared with the corpus, and
// only real differences are logged. Duplicate or replayed nudges
// therefore log nothing new, and a lost webhook is repaired by the next
// pass.
//
// GitHub: issues and pull requests are listed by update time, and each
// changed one is fetched with its comments, events, reviews and pull
// request data (head/base SHAs and refs, in tryd's extension fields).
// GET requests are conditional (ETag/If-None-Match; a 304 does not count
// against GitHub's rate limit) and paginated; a 403/429 rate-limit answer
// stops the repository's work until the reset time given by GitHub,
// waiting on the injected Clock, never spinning. With GitHub App
// credentials each repository is read with a token of the App's
// installation on its owner's account (internal/ghapp), so one App
// serves the repositories of several users and organizations; a
// repository out of the App's reach (uninstalled from its account,
// suspended, or not in the installation) fails with ErrNoAccess, counted
// as result "no_access", while the others' syncs go on.
//
// Gerrit: each project is mirrored into a bare git repository with
// forced refspecs for refs/heads/*, refs/tags/* and refs/changes/*
// (patch sets and NoteDb meta refs); new commits are logged first, as
// maintpb.GitCommit with the raw commit and its numstat, then the moved
// refs and the deleted ones as GerritMutations.
//
// This package imports nothing of tryd outside maintner and internal.
package ingest
