// Package worker is the executing side of tryd: it dials a coordinator,
// authenticates with its token, announces its labels (os and arch added)
// and free slots, runs the jobs it is given in their own process groups
// with their sources and dependency outputs in place, streams their logs
// and uploads their outputs.
//
// The wire protocol is the coordinator's (coordinator/api/PROTOCOL.md):
// POST /api/worker/register, then a loop of POST /api/worker/poll, which
// is at once the heartbeat, the report of finished attempts and the
// long-poll for assignments. One poll waits at a time; a second goes out
// at once when there is news it does not carry (results, freed slots), so
// dispatch never waits for a polling interval. With a coordinator that
// offers them, polls ask for early answers (new work arrives before the
// reported results are committed, the acknowledgement follows) and
// accept pipelined assignments: the next job of a chain is held here
// while its dependency runs and starts the moment that dependency
// succeeds, with its output as left here. It also asks for prefetched
// assignments (up to Options.Prefetch beyond its free slots), starts
// them itself as slots free and reports results and starts in batches
// (Options.ReportDelay) while enough of them are queued; asked to
// release one for an idle worker, it drops it if it has not started it
// and says so at once (PROTOCOL.md, "Releasing prefetched
// assignments"). Logs are appended with
// POST /api/worker/attempts/{id}/log in chunks; outputs and inputs travel
// as content-addressed artifacts (/api/artifacts/{sha256}).
//
// Each job gets a clean directory with out/ ({{OUTPUT_DIR}}), tmp/
// (TMPDIR), src/ ({{SOURCE_DIR}}: a git worktree of the exact revision, see
// package source, or the uploaded files; for source_mode inputs only the
// job's inputs, verified against the revision) and deps/<n>/ ({{DEP:<id>}} of
// the job's n-th dependency, from 0: its unpacked outputs, from a
// size-bounded local cache). Outputs are packed and checked by package artifact, so that a
// hostile job cannot reach outside its directories through them.
//
// The worker survives coordinator restarts (it re-registers with backoff,
// listing what still runs and what it has not reported). While its
// reports fail it starts none of the prefetched or pipelined assignments
// it holds, which a restarted coordinator never knew; it starts them once
// a poll is answered again, or drops them when it must register again
// (PROTOCOL.md, "Assignments held during an outage"). The runs of a
// session that ended (running, or with results not acknowledged, or
// prefetched starts not reported) are reported to the next session with
// their builds and jobs, where the coordinator offers that, so that a
// run it forgot (a crash before it recorded the attempt) is in the
// job's history as abandoned. A poll without results that stays
// unanswered 5s past its wait is taken as lost on a broken link and sent
// again. The tryd_worker_held_assignments gauge counts what it holds.
// It shuts down
// gracefully: on cancellation of Run's context it stops taking work, lets
// running jobs finish for Options.DrainTimeout and gives back the rest.
//
// It imports only the coordinator's API and graph types.
package worker
