// Package dashboard serves tryd's web UI and its JSON views: repositories,
// the commits × builders grid, try runs, builds, live job logs and
// workers. It owns no state: every page is read on request through the
// clients of the coordinator (coordinator/api), the trybot
// (trybot/client) and the corpus (maintner/query); the grid keeps the
// finished builds it has read, which never change.
//
// Pages are server-rendered html/template (automatic contextual
// escaping) with CSS and one small script embedded; everything but live
// log updates works without JavaScript. Every page sets a
// Content-Security-Policy that allows only the dashboard's own script and
// style files, so even markup that slipped through could not run.
//
// # URLs and wire format
//
// Links are stable; each page answers as JSON with ?format=json (the
// view's fields, see the *View types and Grid):
//
//	GET  /                                   home: repositories, try runs, queue, worker pool, recent builds
//	GET  /grid/{repo...}?branch=B&page=P&n=N grid of post-submit builds (page from 1, n ≤ 200 commits)
//	GET  /try?repo=&change=&patch_set=&review=&state=&limit=&before=
//	                                         try runs; with change, the newest matching run's page
//	GET  /try/{id}                           a try run: builders, failed jobs with log tails
//	GET  /builds/{id}                        a build: jobs, attempts, timeline
//	GET  /builds/{id}/events                 job state changes as server-sent events
//	POST /builds/{id}/force                  rebuild the build's builder at its source (admin)
//	GET  /logs/{attempt}[?build=ID]          a job attempt's log as HTML, live while it runs
//	GET  /logs/{attempt}/raw[?download=1]    the log as text/plain
//	GET  /logs/{attempt}/events?offset=N     the log from byte N as server-sent events
//	GET  /workers                            the worker pool
//	GET, POST /login; POST /logout           admin session (the admin token)
//
// Live logs: /logs/{attempt}/events is text/event-stream. Each message's
// id is the byte offset of the log reached (a reconnecting EventSource
// resumes there through Last-Event-ID) and its data is
// {"ops": [{"t": text, "c": classes} | {"nl": true}, ...]}: text in ANSI
// style classes (package ansi) and line ends. The stream ends with an
// "end" event when the attempt has finished. The log page ends with
// <div id="logstate" data-offset data-line data-open>, from which its
// script continues; the script adds text with textContent only.
//
// Build events: /builds/{id}/events is text/event-stream of
// {"type", "job_id", "job_name", "state", "worker", "attempt_id",
// "build_state"} (the coordinator's job events, replayed from the start
// of the build, log chunks left out), ending with an "end" event when the
// build has finished.
//
// Grid data comes from a GridSource; CoordinatorGrid reads post-submit
// builds labelled repo, branch, revision and builder (optionally
// platform, commit_author, commit_subject, commit_time), leaving out
// builds labelled kind=try.
//
// Force builds need Options.AdminToken and Options.Planner. A browser
// signs in at /login (an HMAC-signed, HttpOnly, SameSite=Strict session
// cookie; no server state) and posts the force form with the session's
// CSRF token; programs send "Authorization: Bearer <admin token>". The
// forced build has the original's labels (but not trybot_run) plus
// forced=1 and forced_from=<build ID>.
//
// Errors from the clients map to statuses: not found 404, bad request
// 400, forbidden 403, anything from an unavailable upstream 502.
package dashboard
