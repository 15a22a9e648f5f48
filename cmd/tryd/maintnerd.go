package main

import "context"

func runMaintnerd(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("maintnerd", "[flags]", `Maintnerd keeps the corpus: it appends GitHub and Gerrit activity to the
mutation log, serves the log to followers at /logs (compatible with
golang.org/x/build/maintner) and answers the query API.`)
	_ = fs.String("listen", ":8081", "address to serve HTTP on")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the maintnerd component", "issue #4 (maintner)")
}
