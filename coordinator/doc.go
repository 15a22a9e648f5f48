// Package coordinator runs build graphs: it accepts graphs of jobs from
// clients, schedules their jobs on the workers that dial in, caches results
// by job ID, stores job outputs, persists everything (SQLite by default,
// PostgreSQL when several coordinators share the load) so that a restart
// loses no build, and serves the client API.
//
// The coordinator knows nothing of code review: it runs graphs.
//
// This package imports nothing else of tryd.
package coordinator
