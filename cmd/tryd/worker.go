package main

import "context"

func runWorker(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("worker", "--coordinator URL --token-file F [flags]", `Worker dials a coordinator, authenticates with its token and runs the jobs
it is given.`)
	_ = fs.String("coordinator", "", "coordinator base URL")
	_ = fs.String("token-file", "", "file holding this worker's token")
	_ = fs.Int("slots", 0, "jobs run at once (default: number of CPUs)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the worker", "issue #7 (coordinator and worker)")
}
