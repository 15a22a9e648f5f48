package main

import "context"

func runTrybot(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("trybot", "[flags]", `Trybot follows the corpus, starts try runs for Gerrit changes voted
Run-TryBot+1 and GitHub pull requests asked to run, and posts the results.`)
	_ = fs.String("listen", ":8085", "address to serve HTTP on")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the trybot component", "issue #8 (trybot)")
}
