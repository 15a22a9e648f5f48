package main

import "context"

func runCorpus(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("corpus", "<ls|show|tail|stats|gen> [flags]", `Corpus inspects, follows and generates mutation logs.`)
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("tryd corpus", "issue #4 (maintner)")
}
