// Package pubsubhelper receives GitHub and Gerrit webhooks, verifies them,
// journals each event durably (package journal) before acknowledging it,
// and fans events out to subscribers that long-poll GET /waitevent or
// read GET /recent, in the JSON shape of golang.org/x/build's
// pubsubhelper plus tryd's extensions (package pubsubtypes; Go client in
// package client).
//
// Events are nudges: subscribers re-derive the truth from GitHub's REST API
// and Gerrit's git repositories, so a lost event delays but never corrupts.
//
// # Wire format
//
//	POST /github-webhook   a GitHub delivery: X-GitHub-Event,
//	                       X-GitHub-Delivery, X-Hub-Signature-256
//	                       (sha256=HMAC of the body); JSON or form body.
//	POST /gerrit-webhook   one Gerrit event as JSON (the webhooks plugin's
//	                       body, the same objects as stream-events), with
//	                       the shared secret as "Authorization: Bearer S"
//	                       or the basic-auth password.
//	GET  /waitevent        one event (or {"LongPollTimeout":true,…}) after
//	                       ?after=RFC3339Nano | ?afterseq=N&journal=ID.
//	GET  /recent           a JSON array of recent events, newest first.
//
// The two GET endpoints require "Authorization: Bearer TOKEN", one of
// Options.SubscriberTokens, compared in constant time (as SHA-256
// digests, so that neither time nor length tells how close a guess
// was); 401 without it. Only a server built with OpenSubscribers and no
// tokens serves them to anyone, as x/build's are, and refuses raw
// payloads (?raw=1, 403), which may hold private repositories' content;
// tryd pubsubhelper does that only on a loopback listen address.
//
// Accepted deliveries are answered 200 {"Seq":N,"JournalID":…} only after
// the fsync (the journal keeps the JSON payload: the body, or its
// "payload" field when GitHub sends a form); 401 means a bad or missing signature or secret, 400 a
// malformed body or missing headers, 413 a body over 25 MiB, 415 an
// unsupported content type, 503 a journal that cannot write.
//
// # Configuring Gerrit's webhooks plugin
//
// The plugin (plugins/webhooks) posts every event of a project to the
// remotes in that project's webhooks.config on refs/meta/config, e.g.
//
//	[remote "tryd"]
//	  url = https://pubsubhelper.example.com/gerrit-webhook
//	  maxTries = 5
//
// It cannot sign its requests and has no setting for extra headers, so
// the shared secret (tryd.yaml: gerrit[].webhook_secret) must reach
// pubsubhelper in the Authorization header by one of:
//
//   - credentials in the remote's URL,
//     "https://gerrit:SECRET@pubsubhelper.example.com/gerrit-webhook"
//     (basic auth with any user name; pubsubhelper answers 401 with a
//     Basic challenge, which HTTP clients that honour URL credentials
//     answer), or
//   - a reverse proxy in front of pubsubhelper that adds
//     "Authorization: Bearer SECRET" for requests from Gerrit's address.
//
// Either way use HTTPS outside loopback: the secret travels in the clear
// inside the TLS session.
//
// For a Gerrit server without the plugin, package sshstream follows
// `gerrit stream-events` over SSH into the same journal.
//
// pubsubhelper and its subpackages import nothing of tryd outside
// pubsubhelper/ and internal/.
package pubsubhelper
