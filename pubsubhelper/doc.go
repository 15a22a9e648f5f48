// Package pubsubhelper receives GitHub and Gerrit webhooks, verifies them,
// journals each event durably before acknowledging it, and fans events out
// to subscribers that long-poll GET /waitevent (the JSON shape of
// golang.org/x/build's pubsubhelper) or read GET /recent.
//
// Events are nudges: subscribers re-derive the truth from GitHub's REST API
// and Gerrit's git repositories, so a lost event delays but never corrupts.
//
// This package imports nothing else of tryd.
package pubsubhelper
