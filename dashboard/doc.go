// Package dashboard serves tryd's web UI and its JSON views: repositories,
// the commits × builders grid, try runs, builds, live job logs and workers.
//
// It reads through the clients of the coordinator, maintner and trybot.
package dashboard
