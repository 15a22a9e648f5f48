package main

import "context"

func runGitmirror(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("gitmirror", "[flags]", `Gitmirror keeps bare mirrors of every configured repository and serves any
revision to workers as a tarball or over read-only git smart HTTP.`)
	_ = fs.String("listen", ":8083", "address to serve HTTP on")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the gitmirror component", "issue #6 (gitmirror)")
}
