package main

import "context"

func runCoordinator(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("coordinator", "[flags]", `Coordinator accepts build graphs, schedules their jobs on workers, caches
results and stores outputs.`)
	_ = fs.String("listen", ":8084", "address to serve HTTP on")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the coordinator component", "issue #7 (coordinator and worker)")
}
