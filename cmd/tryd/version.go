package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime/debug"
)

func runVersion(ctx context.Context, a *app, args []string) error {
	fs, _ := a.flags("version", "", "Version prints tryd's version, from the binary's build information.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	fmt.Fprintln(a.stdout, versionString())
	return nil
}

// versionString describes the build: module version, VCS revision and Go
// version, as recorded by the Go toolchain.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "tryd (unknown version)"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	out := "tryd " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " " + rev + modified
	}
	return out + " " + info.GoVersion
}
