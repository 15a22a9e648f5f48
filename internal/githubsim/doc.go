// Package githubsim is a GitHub simulator for tryd's tests and for the
// `tryd dev` demo: real bare git repositories served over smart HTTP, a
// subset of GitHub's REST API v3 and webhooks, faithful enough that
// go-github (v60) and git cannot tell it from GitHub on what tryd uses.
//
// It owns, for each repository "owner/name":
//
//   - git: a bare repository Dir/owner/name.git served by `git
//     http-backend` at <URL>/owner/name.git (clone, fetch, ls-remote),
//     with refs/heads/*, refs/pull/N/head for every pull request and
//     refs/pull/N/merge (a test merge into the base) while it merges cleanly;
//   - REST under <URL>/api/v3/ (GitHub Enterprise layout, so go-github's
//     WithEnterpriseURLs works): repositories, issues, pulls, issue
//     comments, reviews, labels, milestones, issue events, check runs and
//     suites, commit statuses, collaborator permission, the authenticated
//     user, rate limit, hooks (list, create) and hook deliveries (list,
//     get, redeliver). Responses use GitHub's JSON field names and nulls,
//     Link pagination, ETag/If-None-Match (a 304 does not count against
//     the rate limit), X-RateLimit-* headers, and GitHub's error bodies:
//     401 "Bad credentials", 404 "Not Found", 422 "Validation Failed", 400
//     "Problems parsing JSON", 403/429 when the rate limit is exhausted,
//     422 "No commit found for SHA: …" for check runs and statuses on a
//     commit the repository does not have (or that ForgetCommit made it
//     forget, as after a repository is re-created);
//   - webhooks: JSON POSTs with X-GitHub-Event, X-GitHub-Delivery (a
//     GUID), X-GitHub-Hook-ID, X-GitHub-Hook-Installation-Target-ID/Type,
//     X-Hub-Signature-256 and the legacy X-Hub-Signature, User-Agent
//     GitHub-Hookshot/…, with payloads shaped as the real ones (see the
//     contract tests), a delivery log, redelivery with the same GUID and
//     body, and an option to drop deliveries on purpose.
//
// The Go API (CreateRepo, AddUser, AddApp, AddHook, Push, OpenPR,
// PushToPR, AddLabel, Comment, MergePR, …) plays the people and the
// GitHub web UI; clients under test use HTTP like they would with GitHub.
// Check runs may only be created by a GitHub App's token (AddApp), as on
// GitHub; commit statuses by any user with write permission. Apps also
// authenticate as on GitHub: an RS256 JWT signed with the key from
// AppCredentials calls the /app endpoints and exchanges itself for a
// one-hour installation token (POST /app/installations/{id}/access_tokens). Pushes
// create a check suite for every app subscribed to check_suite and send
// it check_suite requested, as GitHub does. An app is installed once on
// each account (user or organization) that owns a repository, and the
// installation's account is that owner (Sim.InstallationID; GET
// /app/installations and GET /installation/repositories page like every
// list). An installation's token sees its account's repositories only.
// An installation covers every repository of its account until
// RemoveFromInstallation takes one out (AddToInstallation
// puts it back): the installation's token then gets 404 "Not Found" for
// it, exactly as for a repository that does not exist (install.go); a
// public repository (SetPublic) stays readable, and writes to it get 403
// "Resource not accessible by integration". The installation's lifecycle
// is modelled too, per account: SuspendInstallation,
// UnsuspendInstallation, DeleteInstallation and CreateInstallation (a new
// installation ID; the old one's tokens are revoked), each announced by an
// installation event.
//
// Events sent: ping, push, pull_request (opened, synchronize, labeled,
// unlabeled, closed, reopened), pull_request_review submitted,
// issue_comment created, issues (opened, labeled, unlabeled, closed,
// reopened), status, check_run (created, completed, rerequested),
// check_suite (requested, completed, rerequested) and, to apps,
// installation_repositories (added, removed) and installation (created,
// deleted, suspend, unsuspend).
//
// Issues, pull requests, users and hooks live in memory; only the git
// repositories are on disk, so each Sim needs a fresh Options.Dir.
// Webhooks leave in order from one delivery goroutine; a Go API call
// waits for the deliveries it caused (unless Options.AsyncDelivery),
// REST calls do not (as on GitHub), and Flush waits for all.
package githubsim
