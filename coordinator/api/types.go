// Package api defines the coordinator's HTTP API: the JSON wire types of
// the client API (submit graphs, follow builds, read logs and outputs) and
// of the worker protocol (register, long-poll for assignments, stream
// logs, report results), the artifact endpoints, the mapping of error
// kinds to HTTP status codes, and a Go client for all of it.
//
// PROTOCOL.md beside this file describes every endpoint. In short: all
// requests carry "Authorization: Bearer <token>"; bodies are JSON except
// artifact blobs and log chunks (raw bytes); errors are
// {"code": ..., "message": ...} with a status code per kind (see Error).
//
// This package imports only the standard library and coordinator/graph,
// so that workers, trybot and the dashboard can use it.
package api

import (
	"time"

	"github.com/tryd-ci/tryd/coordinator/graph"
)

// Priority orders builds: the scheduler runs jobs of a higher priority
// first and shares slots fairly among builds of equal priority.
type Priority string

// Priorities, highest first.
const (
	PriorityTry        Priority = "try"
	PriorityPostSubmit Priority = "post-submit"
	PriorityPeriodic   Priority = "periodic"
)

// Rank returns 0 for the highest priority, larger for lower ones, and -1
// for an unknown priority. The empty priority means PriorityTry.
func (p Priority) Rank() int {
	switch p {
	case PriorityTry, "":
		return 0
	case PriorityPostSubmit:
		return 1
	case PriorityPeriodic:
		return 2
	}
	return -1
}

// BuildState is the state of a whole build.
type BuildState string

// Build states. A build is finished in any state but running.
const (
	BuildRunning   BuildState = "running"
	BuildSucceeded BuildState = "succeeded"
	BuildFailed    BuildState = "failed"
	BuildCancelled BuildState = "cancelled"
)

// Finished reports whether no job of the build will run any more.
func (s BuildState) Finished() bool { return s != BuildRunning && s != "" }

// JobState is the state of one job within one build.
type JobState string

// Job states. Queued jobs wait for dependencies or a slot; cached jobs
// reused an earlier result; skipped jobs did not run because a
// dependency failed, was skipped or was cancelled.
const (
	JobWaiting   JobState = "waiting"
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobCached    JobState = "cached"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobSkipped   JobState = "skipped"
	JobCancelled JobState = "cancelled"
)

// Finished reports whether the job is in a final state.
func (s JobState) Finished() bool {
	switch s {
	case JobCached, JobSucceeded, JobFailed, JobSkipped, JobCancelled:
		return true
	}
	return false
}

// OK reports whether the job's outputs are available to dependents.
func (s JobState) OK() bool { return s == JobCached || s == JobSucceeded }

// AttemptState is the state of one attempt to run a job.
type AttemptState string

// Attempt states. An attempt is lost when its worker stopped heartbeating
// or re-registered without it; the job is then requeued (up to the
// attempt limit). Infrastructure errors (the worker could not fetch source
// or upload outputs) are retried like losses.
//
// An attempt is abandoned when the coordinator ended it for reasons of
// its own, not of the worker or the job: the replica running its build
// lost the build's lease while the database was unreachable (or, on the
// replica that claimed the build then, the worker never confirmed the
// attempt), or the worker started a prefetched attempt that the
// coordinator had just taken back (its run is recorded, its result
// refused). An abandoned attempt does not count against the attempt
// limit (see Charged), so that database outages cannot fail a job that
// never failed; a worker that disappears (a job that kills its worker)
// still loses its attempts, which count.
const (
	AttemptRunning   AttemptState = "running"
	AttemptSucceeded AttemptState = "succeeded"
	AttemptFailed    AttemptState = "failed"
	AttemptTimedOut  AttemptState = "timed_out"
	AttemptLost      AttemptState = "lost"
	AttemptError     AttemptState = "error"
	AttemptCancelled AttemptState = "cancelled"
	AttemptAbandoned AttemptState = "abandoned"
)

// Charged reports whether an attempt in this state counts against its
// job's attempt limit: every state but abandoned.
func (s AttemptState) Charged() bool { return s != AttemptAbandoned }

// LatestAttempt returns the attempt that stands for a job among its
// attempts (oldest first, as in JobStatus.Attempts): the last one that
// was not abandoned, else the last; nil if there is none. An abandoned
// run may have started after the attempt that decided the job (a worker
// started it as the coordinator gave the job to another), so the last
// attempt is not always the one whose state, log and error explain the
// job's.
func LatestAttempt(atts []Attempt) *Attempt {
	for i := len(atts) - 1; i >= 0; i-- {
		if atts[i].State != AttemptAbandoned {
			return &atts[i]
		}
	}
	if len(atts) == 0 {
		return nil
	}
	return &atts[len(atts)-1]
}

// ---- Client API ----

// SubmitRequest is the body of POST /api/graphs.
type SubmitRequest struct {
	Graph graph.Graph `json:"graph"`
	// Priority defaults to try.
	Priority Priority `json:"priority,omitempty"`
	// Labels are free-form metadata (e.g. repo, change, builder) that
	// builds can be listed by.
	Labels map[string]string `json:"labels,omitempty"`
}

// SubmitResponse answers POST /api/graphs.
type SubmitResponse struct {
	BuildID int64 `json:"build_id"`
	// Jobs maps each job's name to its ID (the graph as normalized).
	Jobs map[string]string `json:"jobs"`
}

// MissingRequest is the body of POST /api/artifacts/missing: the digests
// a client (or worker) is about to rely on.
type MissingRequest struct {
	Digests []string `json:"digests"`
}

// MissingResponse lists the digests the store does not hold.
type MissingResponse struct {
	Missing []string `json:"missing"`
}

// Build is the answer of GET /api/builds/{id}.
type Build struct {
	ID       int64             `json:"id"`
	State    BuildState        `json:"state"`
	Priority Priority          `json:"priority"`
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
	Finished *time.Time        `json:"finished,omitempty"`
	// Counts maps each job state to how many jobs are in it.
	Counts map[JobState]int `json:"counts"`
	// Jobs is omitted from list answers.
	Jobs []JobStatus `json:"jobs,omitempty"`
	// Source is the build's source (files omitted).
	Source graph.Source `json:"source"`
	// Error explains a failed build that failed as a whole (e.g. a
	// planner's fragment was invalid).
	Error string `json:"error,omitempty"`
}

// JobStatus is one job of a build.
type JobStatus struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	State JobState `json:"state"`
	Deps  []string `json:"deps,omitempty"`
	// Worker ran (or runs) the latest attempt.
	Worker string `json:"worker,omitempty"`
	// OutputDigest names the output archive in the artifact store.
	OutputDigest string `json:"output_digest,omitempty"`
	ExitCode     *int   `json:"exit_code,omitempty"`
	Error        string `json:"error,omitempty"`
	// Attempts lists every attempt in this build, oldest first.
	Attempts []Attempt `json:"attempts,omitempty"`
	// CachedFrom names the build and attempt that computed a cached
	// job's result.
	CachedFrom *JobResult `json:"cached_from,omitempty"`
	// Started and Finished bound the job within this build.
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Planner  bool       `json:"planner,omitempty"`
}

// Attempt is one run of a job on a worker.
type Attempt struct {
	ID           string       `json:"id"`
	BuildID      int64        `json:"build_id"`
	JobID        string       `json:"job_id"`
	Worker       string       `json:"worker"`
	State        AttemptState `json:"state"`
	Started      time.Time    `json:"started"`
	Finished     *time.Time   `json:"finished,omitempty"`
	ExitCode     *int         `json:"exit_code,omitempty"`
	Error        string       `json:"error,omitempty"`
	OutputDigest string       `json:"output_digest,omitempty"`
	LogBytes     int64        `json:"log_bytes"`
	LogTruncated bool         `json:"log_truncated,omitempty"`
}

// BuildList answers GET /api/builds.
type BuildList struct {
	Builds []Build `json:"builds"`
}

// ListOptions filter GET /api/builds.
type ListOptions struct {
	// State filters by build state; empty means any.
	State BuildState
	// Labels keeps builds that have every one of these labels.
	Labels map[string]string
	// Limit bounds the answer (default 50, at most 1000); newest first.
	Limit int
	// Before lists builds with an ID lower than this (paging).
	Before int64
}

// JobResult answers GET /api/jobs/{id}: the cached result of a job ID.
type JobResult struct {
	JobID        string    `json:"job_id"`
	OutputDigest string    `json:"output_digest"`
	AttemptID    string    `json:"attempt_id"`
	BuildID      int64     `json:"build_id"`
	Finished     time.Time `json:"finished"`
}

// EventType names an entry of a build's event stream.
type EventType string

// Event types. Every stream starts with EventHello (carrying Epoch and the
// number of events so far); EventBuildFinished is the last.
const (
	EventHello         EventType = "hello"
	EventJobQueued     EventType = "job_queued"
	EventJobStarted    EventType = "job_started"
	EventJobFinished   EventType = "job_finished"
	EventJobCached     EventType = "job_cached"
	EventJobSkipped    EventType = "job_skipped"
	EventJobRequeued   EventType = "job_requeued"
	EventJobsAdded     EventType = "jobs_added"
	EventLog           EventType = "log"
	EventBuildFinished EventType = "build_finished"
)

// Event is one line of GET /api/builds/{id}/events (newline-delimited
// JSON). Index numbers the events of a build from 0 within one Epoch (one
// run of the coordinator process); a client resumes with ?from=Index+1
// and the epoch it saw, and a stream whose hello carries another epoch
// starts again from the build's current state.
type Event struct {
	Index     int       `json:"index"`
	Type      EventType `json:"type"`
	Time      time.Time `json:"time"`
	Epoch     string    `json:"epoch,omitempty"`
	JobID     string    `json:"job_id,omitempty"`
	JobName   string    `json:"job_name,omitempty"`
	State     JobState  `json:"state,omitempty"`
	AttemptID string    `json:"attempt_id,omitempty"`
	Worker    string    `json:"worker,omitempty"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	Error     string    `json:"error,omitempty"`
	// Data is a log chunk (EventLog), at Offset in the attempt's log.
	Data   string `json:"data,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	// BuildState is set on EventBuildFinished.
	BuildState BuildState `json:"build_state,omitempty"`
	// Count is the number of jobs added (EventJobsAdded) or, on hello,
	// the number of events so far.
	Count int `json:"count,omitempty"`
}

// Worker answers GET /api/workers (as a list).
type Worker struct {
	Name      string            `json:"name"`
	ID        string            `json:"id"`
	Labels    map[string]string `json:"labels"`
	Slots     int               `json:"slots"`
	Running   []string          `json:"running"`
	Version   string            `json:"version,omitempty"`
	LastSeen  time.Time         `json:"last_seen"`
	Connected bool              `json:"connected"`
}

// WorkerList answers GET /api/workers.
type WorkerList struct {
	Workers []Worker `json:"workers"`
}

// ---- Worker protocol ----

// RegisterRequest is the body of POST /api/worker/register. The worker's
// name comes from its token; Name here must match it if given.
type RegisterRequest struct {
	Name    string            `json:"name,omitempty"`
	Labels  map[string]string `json:"labels"`
	Slots   int               `json:"slots"`
	Version string            `json:"version,omitempty"`
	// Running lists attempts the worker is still running from before
	// (after a coordinator restart or a reconnect); the coordinator
	// keeps those it still expects and answers the others in Cancel of
	// the next poll.
	Running []string `json:"running,omitempty"`
}

// RegisterResponse answers a registration.
type RegisterResponse struct {
	WorkerID string `json:"worker_id"`
	// HeartbeatIntervalMS is how often the worker must poll at the
	// latest; a worker silent for the coordinator's heartbeat timeout
	// loses its running attempts.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
	// PollTimeoutMS is how long a poll may wait for work.
	PollTimeoutMS int64 `json:"poll_timeout_ms"`
	// EarlyAssignments says that the coordinator accepts
	// PollRequest.Early (coordinators before it refuse the unknown
	// field, so a worker sends it only when this is set).
	EarlyAssignments bool `json:"early_assignments,omitempty"`
	// PrefetchAssignments says that the coordinator accepts
	// PollRequest.Prefetch and PollRequest.Started (a worker sends them
	// only when this is set). See PROTOCOL.md, "Prefetched
	// assignments".
	PrefetchAssignments bool `json:"prefetch_assignments,omitempty"`
	// ForgottenStarts says that the coordinator accepts BuildID and
	// JobID in PollRequest.Started and records the run of an attempt it
	// does not know (the coordinator that handed it out forgot it: a
	// crash, or the worker's session ended before the start was
	// reported) as an abandoned attempt of that job; see
	// PollResponse.StartsLater and PROTOCOL.md, "Assignments held
	// during an outage". A worker sends those fields only when this is
	// set.
	ForgottenStarts bool `json:"forgotten_starts,omitempty"`
	// ReleaseRequests says that the coordinator accepts
	// PollRequest.AnswersRelease and PollRequest.Released: a worker
	// that polls with AnswersRelease is asked to release a prefetched
	// attempt (PollResponse.Release) before another worker gets its
	// job, instead of having it taken back at once, so that a take-back
	// never crosses a start. A worker sends those fields only when this
	// is set. See PROTOCOL.md, "Releasing prefetched assignments".
	ReleaseRequests bool `json:"release_requests,omitempty"`
}

// PollRequest is the body of POST /api/worker/poll: a heartbeat, a
// report of finished attempts, and a request for up to FreeSlots new
// assignments. It returns as soon as there is work or a cancellation for
// the worker, else after WaitMS (capped by the server, default ~25 s).
type PollRequest struct {
	WorkerID  string `json:"worker_id"`
	FreeSlots int    `json:"free_slots"`
	// Running lists the attempts the worker is running now.
	Running []string `json:"running"`
	// Results reports finished attempts (the same as POST
	// /api/worker/attempts/{id}/result, batched): the server records them
	// durably before answering.
	Results []AttemptResult `json:"results,omitempty"`
	// Holds adds artifact digests the worker has in its local cache
	// (beyond the outputs it uploaded and the dependencies it fetched,
	// which the coordinator tracks itself); Evicted removes some.
	Holds   []string `json:"holds,omitempty"`
	Evicted []string `json:"evicted,omitempty"`
	// WaitMS bounds the wait; 0 means the server's default.
	WaitMS int64 `json:"wait_ms,omitempty"`
	// Early asks for the answer in two parts when it carries results
	// and assignments: the assignments (and cancellations) at once,
	// then the acknowledgement of the results once they are durable,
	// so that a job's dependent does not wait for the commit of the
	// job's result before it starts. See PollResponse.More. Send it
	// only to a coordinator whose RegisterResponse.EarlyAssignments is
	// set.
	Early bool `json:"early,omitempty"`
	// Prefetch asks for up to that many assignments beyond FreeSlots,
	// which the worker queues and starts by itself when slots free
	// (Assignment.Prefetched), so that it can report results in
	// batches without leaving slots idle. Send it only to a
	// coordinator whose RegisterResponse.PrefetchAssignments is set.
	Prefetch int `json:"prefetch,omitempty"`
	// Started lists prefetched attempts the worker started since its
	// last acknowledged poll (sent again after a failed poll: a
	// repeated or unknown one is ignored).
	Started []StartedAttempt `json:"started,omitempty"`
	// AnswersRelease says that the worker answers PollResponse.Release
	// for the prefetched assignments this poll gets. Send it only to a
	// coordinator whose RegisterResponse.ReleaseRequests is set.
	AnswersRelease bool `json:"answers_release,omitempty"`
	// Released lists prefetched attempts that the worker dropped
	// unstarted when PollResponse.Release asked for them: it will never
	// start them (sent again after a failed poll). A poll with Released
	// is answered at once, like one with Started.
	Released []string `json:"released,omitempty"`
}

// StartedAttempt says that the worker started a prefetched attempt,
// AgoMS milliseconds before it sent the poll.
type StartedAttempt struct {
	AttemptID string `json:"attempt_id"`
	AgoMS     int64  `json:"ago_ms,omitempty"`
	// BuildID and JobID name the attempt's build and job (from its
	// Assignment), so that a coordinator that no longer knows the
	// attempt can still record its run (see
	// RegisterResponse.ForgottenStarts).
	BuildID int64  `json:"build_id,omitempty"`
	JobID   string `json:"job_id,omitempty"`
}

// PollResponse carries new work and attempts to stop.
type PollResponse struct {
	Assignments []Assignment `json:"assignments"`
	// Cancel lists attempts the worker must kill and forget (the build
	// was cancelled, the attempt was given up as lost, or it is unknown).
	Cancel []string `json:"cancel,omitempty"`
	// Rejected lists attempt IDs of Results the coordinator did not
	// accept (unknown or no longer current); nothing is to be done.
	Rejected []string `json:"rejected,omitempty"`
	// StartsLater lists attempt IDs of PollRequest.Started entries of
	// attempts the coordinator does not know, which it could not record
	// yet: their build is held by another replica or waits to be claimed.
	// The worker sends them again with a later poll.
	StartsLater []string `json:"starts_later,omitempty"`
	// ResultsLater lists attempt IDs of Results the coordinator could
	// not record yet: attempts the worker ran for a replica that died
	// (it failed over here), whose build this replica has not claimed
	// yet (PROTOCOL.md, "Failover between replicas"). They are not
	// acknowledged: the worker keeps them, lists them in
	// PollRequest.Running and sends them again with a later poll,
	// until they are acknowledged, rejected or cancelled.
	ResultsLater []string `json:"results_later,omitempty"`
	// Release asks the worker (one that polled with AnswersRelease) to
	// release these prefetched attempts: one not started yet it drops
	// and lists in PollRequest.Released of its next poll, sent at once;
	// one started already it keeps running and reports its start as
	// usual (in Started, or implied by its result). An attempt it does
	// not hold any more is ignored. The coordinator may ask again for
	// an attempt whose answer it has not seen after a while.
	Release []string `json:"release,omitempty"`
	// More is set on the first part of an answer to an Early poll:
	// the poll's Results are not durable yet, and a second JSON
	// object follows in the same body, PollAck, once they are (or
	// once recording them failed).
	More bool `json:"more,omitempty"`
}

// PollAck is the second part of an answer to an Early poll (see
// PollResponse.More): {"acked": true} once the poll's results are
// durable, or an Error body ({"code": ..., "message": ...}) if they
// could not be recorded, in which case the worker sends them again.
type PollAck struct {
	Acked   bool   `json:"acked,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Assignment is one attempt of one job given to a worker.
type Assignment struct {
	AttemptID string    `json:"attempt_id"`
	BuildID   int64     `json:"build_id"`
	Job       graph.Job `json:"job"`
	// Source is where {{SOURCE_DIR}} comes from; nil for jobs with
	// source_mode none.
	Source *SourceRef `json:"source,omitempty"`
	// Deps gives, for each dependency's job ID, the digest of its output
	// archive in the artifact store.
	Deps []DepOutput `json:"deps,omitempty"`
	// TimeoutMS bounds the whole job (the job's timeout or the
	// coordinator's default): the worker kills the process group after it
	// and reports timed_out.
	TimeoutMS int64 `json:"timeout_ms"`
	// MaxLogBytes bounds the log the coordinator keeps; the worker should
	// truncate beyond it with a marker and set LogTruncated.
	MaxLogBytes int64 `json:"max_log_bytes"`
	// After, when set, lists attempts of this worker that the job
	// waits for: the worker starts it only once each has succeeded
	// here, taking their outputs (the Deps of those jobs have no
	// digest) from its own results, and drops it without a result if
	// one of them ends otherwise. Given only to workers that poll with
	// Early. See PROTOCOL.md, "Pipelined assignments".
	After []string `json:"after,omitempty"`
	// Prefetched marks an assignment beyond the poll's free slots: the
	// worker queues it, starts it when a slot frees (after the
	// assignments that are not prefetched) and says so in
	// PollRequest.Started; until then the coordinator may take it back
	// (Cancel). Given only to workers that poll with Prefetch.
	Prefetched bool `json:"prefetched,omitempty"`
}

// SourceRef says where a job's source comes from: a git repository at a
// revision, or an uploaded manifest (a JSON array of graph.File stored as
// an artifact whose digest is Manifest; each file's content is the
// artifact named by its digest).
type SourceRef struct {
	Repo     string `json:"repo,omitempty"`
	Revision string `json:"revision,omitempty"`
	Manifest string `json:"manifest,omitempty"`
}

// DepOutput names a dependency's output archive.
type DepOutput struct {
	JobID  string `json:"job_id"`
	Digest string `json:"digest"`
}

// AttemptResult is the body of POST /api/worker/attempts/{id}/result and an
// element of PollRequest.Results.
type AttemptResult struct {
	AttemptID string `json:"attempt_id"`
	// State is succeeded, failed (a command exited non-zero: not
	// retried), timed_out (not retried) or error (the worker could not
	// run the job: infrastructure, retried up to the attempt limit).
	State    AttemptState `json:"state"`
	ExitCode *int         `json:"exit_code,omitempty"`
	Error    string       `json:"error,omitempty"`
	// OutputDigest names the output archive, uploaded before the result
	// is reported (required for succeeded).
	OutputDigest string `json:"output_digest,omitempty"`
	OutputSize   int64  `json:"output_size,omitempty"`
	// DurationMS is how long the commands ran.
	DurationMS   int64 `json:"duration_ms,omitempty"`
	LogTruncated bool  `json:"log_truncated,omitempty"`
}

// ResultResponse answers POST /api/worker/attempts/{id}/result.
type ResultResponse struct {
	Accepted bool `json:"accepted"`
}

// LogResponse answers POST /api/worker/attempts/{id}/log.
type LogResponse struct {
	// Size is the log's length after the append.
	Size int64 `json:"size"`
}
