package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mattn/go-isatty"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/worker/try"
)

func runTry(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("try", "[flags] [graph.json|graph.yaml]", `Try submits a build graph to a coordinator, shows its progress (a live line
on a terminal, plain lines otherwise), prints each failed job with the tail
of its log, and exits non-zero unless the build succeeds.

The graph comes from the file argument, or from --run command lines (one
job each, run with sh -c). A graph without a source whose jobs need one,
or any graph with --worktree, builds the local git working tree: the files git ls-files
lists (tracked and untracked, not ignored) are uploaded, only those the
coordinator does not already hold.`)
	coordURL := fs.String("coordinator", "", "coordinator base URL (default: coordinator.url from the config)")
	tokenFile := fs.String("token-file", "", "file holding the client token (default: coordinator.client_token from the config)")
	var runs listFlags
	fs.Var(&runs, "run", "shell command line to run as a job (repeatable; instead of a graph file)")
	worktree := fs.String("worktree", "", "use this git working tree as the source (default: . when the graph has no source)")
	priority := fs.String("priority", "try", "build priority: try, post-submit or periodic")
	labels := kvFlags{}
	fs.Var(labels, "label", "build label key=value (repeatable)")
	tail := fs.Int("tail", 20, "log lines shown for each failed job")
	keep := fs.Bool("keep", false, "leave the build running when interrupted (default: cancel it)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if (fs.NArg() == 1) == (len(runs) > 0) || fs.NArg() > 1 {
		fmt.Fprintln(a.stderr, "tryd try: give either one graph file or --run commands")
		return errUsage
	}
	if api.Priority(*priority).Rank() < 0 {
		fmt.Fprintf(a.stderr, "tryd try: unknown priority %q (want try, post-submit or periodic)\n", *priority)
		return errUsage
	}
	if *coordURL == "" {
		*coordURL = a.cfg.Coordinator.URL
	}
	if *coordURL == "" {
		fmt.Fprintln(a.stderr, "tryd try: --coordinator (or coordinator.url in the config) is required")
		return errUsage
	}
	secret := a.cfg.Coordinator.ClientToken
	if *tokenFile != "" {
		secret = config.FileSecret(*tokenFile)
	}
	if !secret.IsSet() {
		fmt.Fprintln(a.stderr, "tryd try: --token-file (or coordinator.client_token in the config) is required")
		return errUsage
	}
	token, err := secret.Value()
	if err != nil {
		return fmt.Errorf("client token: %w", err)
	}

	g := try.CommandGraph(runs)
	if fs.NArg() == 1 {
		if g, err = try.LoadGraph(fs.Arg(0)); err != nil {
			return err
		}
	}
	opts := try.Options{Graph: g, Priority: api.Priority(*priority), Labels: labels, Out: a.stdout, TailLines: *tail, KeepOnInterrupt: *keep}
	hasSource := g.Source.Repo != "" || g.Source.Revision != "" || len(g.Source.Files) > 0
	needsSource := false
	for _, j := range g.Jobs {
		needsSource = needsSource || j.Mode() != graph.SourceNone
	}
	if *worktree != "" || !hasSource && needsSource {
		dir := *worktree
		if dir == "" {
			dir = "."
		}
		files, open, err := try.WorkTree(ctx, dir)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("working tree %s has no files to upload", dir)
		}
		g.Source = graph.Source{Files: files}
		opts.Open = open
	}
	if f, ok := a.stdout.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		opts.Terminal = true
	}
	if opts.Client, err = api.NewClient(*coordURL, token, nil); err != nil {
		return err
	}
	// A failed build has been reported; the error only sets the exit
	// status (1).
	_, err = try.Run(ctx, opts)
	return err
}
