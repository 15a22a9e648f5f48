package main

import "context"

func runTry(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("try", "[flags] [graph.json|graph.yaml]", `Try submits a build graph, or the local working tree, to a coordinator and
shows its progress.`)
	_ = fs.String("coordinator", "", "coordinator base URL")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	return notBuilt("tryd try", "issue #7 (coordinator and worker)")
}
