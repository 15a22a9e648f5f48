package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runTryd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsEverySubcommand(t *testing.T) {
	code, out, _ := runTryd(t, "--help")
	if code != 0 {
		t.Errorf("--help exit = %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "\t"+c.name) {
			t.Errorf("--help does not list %q", c.name)
		}
	}
}

func TestEverySubcommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runTryd(t, c.name, "--help")
			if code != 0 {
				t.Errorf("exit = %d", code)
			}
			if !strings.Contains(errOut, "Usage: tryd "+c.name) {
				t.Errorf("help lacks usage line:\n%s", errOut)
			}
		})
	}
}

func TestUnknownCommandAndFlag(t *testing.T) {
	if code, _, errOut := runTryd(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	if code, _, _ := runTryd(t, "version", "--bogus"); code == 0 {
		t.Error("unknown flag accepted")
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runTryd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "tryd ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestBadConfigNamesLine(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tryd.yaml")
	os.WriteFile(f, []byte("log:\n  level: info\nworkers: 3\n"), 0o644)
	code, _, errOut := runTryd(t, "dashboard", "--config", f)
	if code != exitFailure || !strings.Contains(errOut, "line 3") || !strings.Contains(errOut, `"workers"`) {
		t.Errorf("bad config: exit %d, %q", code, errOut)
	}
}

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "")
	listen := fs.String("listen", ":1", "")
	slots := fs.Int("slots", 0, "")
	if err := fs.Parse([]string{"--listen", ":9"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TRYD_DATA_DIR": "/d", "TRYD_LISTEN": ":7", "TRYD_SLOTS": "4"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := applyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if *dataDir != "/d" || *listen != ":9" || *slots != 4 {
		t.Errorf("got data-dir %q listen %q slots %d; want env for unset flags, command line first", *dataDir, *listen, *slots)
	}
	env["TRYD_SLOTS"] = "many"
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	fs2.Int("slots", 0, "")
	fs2.Parse(nil)
	if err := applyEnv(fs2, lookup); err == nil || !strings.Contains(err.Error(), "TRYD_SLOTS") {
		t.Errorf("bad env value: err = %v, want one naming TRYD_SLOTS", err)
	}
}
