package main

import "context"

func runDev(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("dev", "[flags]", `Dev runs every component in one process, talking over loopback HTTP, with
embedded defaults under the data directory. With no review server
configured it runs a demo: a built-in Gerrit simulator with a sample
repository and changes voted Run-TryBot+1.`)
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("tryd dev", "issue #11 (tryd dev)")
}
