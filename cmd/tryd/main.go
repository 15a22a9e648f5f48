// Command tryd runs the tryd trybot service. Each subcommand runs one
// component (maintnerd, pubsubhelper, gitmirror, coordinator, worker,
// trybot, dashboard); "tryd dev" runs all of them in one process; the
// remaining subcommands are clients (corpus, try) and utilities.
//
// This package only parses flags and configuration and wires components
// together; the components live in their own packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tryd-ci/tryd/internal/heapfloor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if os.Getenv("GOGC") == "" {
		// Every subcommand keeps little live and allocates much.
		go heapfloor.Run(ctx, heapfloor.DefaultFloor)
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one tryd subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

// commands lists the subcommands in the order --help shows them.
func commands() []command {
	return []command{
		{"dev", "run every component in one process (demo mode without a review server)", runDev},
		{"maintnerd", "serve the corpus: mutation log, /logs sync and the query API", runMaintnerd},
		{"pubsubhelper", "receive GitHub and Gerrit webhooks and fan them out", runPubsubhelper},
		{"gitmirror", "mirror repositories and serve sources to workers", runGitmirror},
		{"coordinator", "schedule build graphs on workers", runCoordinator},
		{"worker", "run jobs for a coordinator", runWorker},
		{"trybot", "turn review votes and requests into builds and post results", runTrybot},
		{"dashboard", "serve the web UI", runDashboard},
		{"corpus", "inspect, follow and generate corpus logs", runCorpus},
		{"try", "submit a build graph or the local working tree to a coordinator", runTry},
		{"goplan", "plan a Go module's per-package build graph (a Go builder's planner job)", runGoplan},
		{"postsubmit", "build new commits of watched branches, periodic builds, and serve the force API", runPostsubmit},
		{"force", "build one commit × builder again", runForce},
		{"version", "print the version", runVersion},
	}
}

// exitUsage is the exit status for bad command lines; errNotBuilt's
// commands exit 3 so that scripts can tell them apart from failures.
const (
	exitFailure  = 1
	exitUsage    = 2
	exitNotBuilt = 3
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, a, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errHelp):
			return 0
		case errors.Is(err, errUsage):
			return exitUsage
		case errors.Is(err, errNotBuiltYet):
			fmt.Fprintf(stderr, "tryd %s: %v\n", c.name, err)
			return exitNotBuilt
		default:
			fmt.Fprintf(stderr, "tryd %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "tryd: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "tryd is a trybot (pre-submit CI) service for Gerrit and GitHub.\n\n")
	fmt.Fprintf(w, "Usage:\n\n\ttryd <command> [flags]\n\nCommands:\n\n")
	cmds := commands()
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.name))
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "\t%-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"tryd <command> --help\" for a command's flags. Every flag can also be\n")
	fmt.Fprintf(w, "set by an environment variable TRYD_<FLAG> (e.g. TRYD_DATA_DIR for --data-dir).\n")
}

// errNotBuiltYet marks subcommands whose component does not exist yet.
var errNotBuiltYet = errors.New("not built yet")

func notBuilt(what, issue string) error {
	return fmt.Errorf("%w: %s is tracked in %s", errNotBuiltYet, what, issue)
}
