package main

import "context"

func runPubsubhelper(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("pubsubhelper", "[flags]", `Pubsubhelper receives GitHub webhooks (POST /github-webhook) and Gerrit
webhooks-plugin deliveries (POST /gerrit-webhook), journals each event before
acknowledging it, and serves subscribers at /waitevent and /recent.`)
	_ = fs.String("listen", ":8082", "address to serve HTTP on")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("the pubsubhelper component", "issue #5 (event intake)")
}
