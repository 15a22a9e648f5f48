package main

import "path/filepath"

// dashboardBuilt reports whether tryd dashboard exists yet; until it
// does, dev runs without it.
func dashboardBuilt() bool { return true }

// dashboardArgs are dev's flags for tryd dashboard: the coordinator with
// the client token, the trybot's try runs and the corpus's repositories.
func dashboardArgs(d *dev) []string {
	return []string{
		"--coordinator", d.urls["coordinator"],
		"--coordinator-token-file", filepath.Join(d.dir, "client-token"),
		"--trybot", d.urls["trybot"],
		"--maintnerd", d.urls["maintnerd"],
	}
}
