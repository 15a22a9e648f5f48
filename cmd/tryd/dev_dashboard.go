package main

// dashboardBuilt reports whether tryd dashboard exists yet; until it
// does, dev runs without it.
func dashboardBuilt() bool { return false }

// dashboardArgs are dev's flags for tryd dashboard.
func dashboardArgs(d *dev) []string { return nil }
