package main

import "path/filepath"

// dashboardBuilt reports whether tryd dev runs the dashboard. It was
// false until tryd dashboard existed; it stays as the one switch should
// the dashboard ever need to be left out.
func dashboardBuilt() bool { return true }

// dashboardArgs are dev's flags for tryd dashboard: the coordinator with
// the client token, the trybot's try runs and maintnerd's corpus.
func dashboardArgs(d *dev) []string {
	return []string{
		"--coordinator", d.urls["coordinator"],
		"--coordinator-token-file", filepath.Join(d.dir, "client-token"),
		"--trybot", d.urls["trybot"],
		"--maintnerd", d.urls["maintnerd"],
	}
}
