// Package coordinator runs build graphs: it accepts graphs of jobs from
// clients, schedules their jobs on the workers that dial in, caches
// results by job ID, stores job outputs, persists everything (SQLite by
// default, PostgreSQL when several coordinators share the load) so that a
// restart loses no build, and serves the client API.
//
// The wire format (HTTP/JSON, bearer tokens, the worker long-poll
// protocol) is defined by package coordinator/api and described in
// api/PROTOCOL.md; graphs by coordinator/graph. Subpackages: state (the
// durable record, with state/sqlite and the conformance suite
// state/statetest) and artifacts (content-addressed blobs on disk, with
// artifacts/storetest).
//
// The scheduler keeps its working state in memory under one lock and
// hands every change to a group committer that writes batches to the
// store (commits paced at most every Options.CommitInterval); only
// acknowledgements that promise durability (a submitted build's ID, a
// worker's results) wait for a commit, and a worker's new work does not
// wait for the acknowledgement of its results (early answers). Dispatch
// is driven by wake-ups, not polling: a worker's long-poll returns the
// moment a job it may run becomes ready, and a job whose dependencies all
// run on one worker is handed to that worker ahead of them (pipelined
// assignments, pipeline.go), so that a chain runs without a round trip
// between its jobs. When more jobs are ready than the workers have free
// slots, a worker may hold a few beyond its slots and start them itself
// as slots free (prefetched assignments, prefetch.go), so that it
// reports results in batches instead of one request per job.
//
// Every attempt to run a job is recorded. Attempts lost with their
// worker (it stopped heartbeating, or came back without them) or that
// the worker could not run are retried up to Options.MaxAttempts;
// attempts the coordinator abandons for reasons of its own (a replica's
// lease expiring during a database outage, a worker starting a
// prefetched attempt that was just taken back, a run the worker reports
// after registering again that the coordinator forgot: it restarted, or
// the replica that handed it out died) are recorded as
// api.AttemptAbandoned and do not count, so that outages and scheduling
// races never fail a job.
//
// The coordinator knows nothing of code review: it runs graphs.
//
// This package imports nothing else of tryd.
package coordinator
