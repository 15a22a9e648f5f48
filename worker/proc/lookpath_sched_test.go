package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func writeProgram(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestPathCache checks the cache's promises step by step on a real
// PATH of two directories: a found program is remembered; one removed
// or no longer executable is searched for again at once; one installed
// in an earlier directory takes over after the TTL, not before.
func TestPathCache(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	pathList := d1 + string(filepath.ListSeparator) + d2
	now := time.Unix(1000, 0)
	c := NewPathCache(time.Second, func() time.Time { return now })
	in := func(dir string) string { return filepath.Join(dir, "prog") }
	steps := []struct {
		name    string
		change  func()
		advance time.Duration
		want    string // "" wants exec.ErrNotFound
	}{
		{name: "absent", want: ""},
		{name: "installed in the second directory", change: func() { writeProgram(t, in(d2)) }, want: in(d2)},
		{name: "installed in the first, within the TTL", change: func() { writeProgram(t, in(d1)) }, advance: 500 * time.Millisecond, want: in(d2)},
		{name: "after the TTL", advance: time.Second, want: in(d1)},
		{name: "made non-executable", change: func() { os.Chmod(in(d1), 0o644) }, want: in(d2)},
		{name: "removed", change: func() { os.Remove(in(d2)) }, want: ""},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		now = now.Add(s.advance)
		got, err := c.lookPath("prog", pathList)
		switch {
		case s.want == "" && !errors.Is(err, exec.ErrNotFound):
			t.Errorf("%s: got %q, %v; want ErrNotFound", s.name, got, err)
		case s.want != "" && (err != nil || got != s.want):
			t.Errorf("%s: got %q, %v; want %q", s.name, got, err, s.want)
		}
	}
	// A name with a slash is not searched for (nor remembered).
	if got, err := c.lookPath("./prog", pathList); err != nil || got != "./prog" {
		t.Errorf("./prog: got %q, %v", got, err)
	}
}

// TestRunWithPathCache runs a real command through a cache, twice, and
// checks that a different PATH is a different entry.
func TestRunWithPathCache(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	writeProgram(t, filepath.Join(d2, "prog"))
	c := NewPathCache(0, nil)
	for _, tc := range []struct {
		name    string
		path    string
		wantErr bool
	}{
		{name: "found", path: d2},
		{name: "found again", path: d2},
		{name: "other PATH", path: d1, wantErr: true},
	} {
		err := Run(context.Background(), Spec{Argv: []string{"prog"}, Env: []string{"PATH=" + tc.path}, Dir: t.TempDir(), Paths: c})
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.wantErr && !errors.Is(err, exec.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", tc.name, err)
		}
	}
}
