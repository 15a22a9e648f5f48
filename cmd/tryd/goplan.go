package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tryd-ci/tryd/trybot/goplan"
)

// runGoplan is the program of a Go builder's planner job: it lists the
// module's packages and writes the per-package graph fragment the
// coordinator splices into the build.
func runGoplan(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("goplan", "--source DIR --out FILE [flags]", `Goplan plans a Go module's build: one job per package for build and vet and
one per package with tests for go test, with IDs from the packages' files and
their dependencies' IDs, so unchanged packages hit the result cache. It runs
on a worker as a Go builder's planner job and writes the graph fragment
(JSON) to --out.`)
	source := fs.String("source", ".", "module root (holding go.mod)")
	out := fs.String("out", "", "file to write the graph fragment to (default: standard output)")
	goCmd := fs.String("go", "go", "the go command")
	timeout := fs.Duration("timeout", 0, "timeout of each planned job (default: the coordinator's)")
	labels := kvFlags{}
	fs.Var(labels, "label", "worker label key=value every planned job requires (repeatable)")
	var testFlags, vetFlags listFlags
	fs.Var(&testFlags, "test-flag", "flag added to every go test, e.g. -short (repeatable)")
	fs.Var(&vetFlags, "vet-flag", "flag added to every go vet (repeatable)")
	noTests := fs.Bool("no-tests", false, "plan build and vet jobs only")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *timeout < 0 || *timeout > 48*time.Hour {
		return fmt.Errorf("--timeout %v out of range", *timeout)
	}
	g, err := goplan.Run(ctx, *source, *goCmd, nil, goplan.Options{
		Labels: labels, Timeout: *timeout, TestFlags: testFlags, VetFlags: vetFlags, NoTests: *noTests,
	})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := goplan.Write(&buf, g); err != nil {
		return err
	}
	if *out == "" {
		_, err := a.stdout.Write(buf.Bytes())
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "goplan: %d jobs\n", len(g.Jobs))
	return nil
}
