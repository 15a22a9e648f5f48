package main

import "context"

func runDashboard(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("dashboard", "[flags]", `Dashboard serves the web UI: the build grid, try runs, builds, live logs
and workers, each also as JSON.`)
	_ = fs.String("listen", ":8080", "address to serve HTTP on")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the dashboard component", "issue #10 (dashboard)")
}
