package gitmirror

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushSSHHostKeys pushes to an SSH URL through a stand-in ssh that
// records how git ran it: with KnownHosts, only that file's keys are
// trusted (StrictHostKeyChecking=yes); without, the first key seen is.
func TestPushSSHHostKeys(t *testing.T) {
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, knownHosts, "mirror.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n", 0o644)
	tests := []struct {
		name       string
		knownHosts string
		want       []string
		bad        []string
	}{
		{"known hosts file", knownHosts, []string{"StrictHostKeyChecking=yes", "UserKnownHostsFile=" + knownHosts}, []string{"accept-new"}},
		{"trust on first use", "", []string{"StrictHostKeyChecking=accept-new"}, []string{"UserKnownHostsFile"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := t.TempDir()
			argsFile := filepath.Join(bin, "args")
			writeFile(t, filepath.Join(bin, "ssh"), "#!/bin/sh\nprintf '%s\\n' \"$@\" >> "+shellQuote(argsFile)+"\nexit 255\n", 0o755)
			t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			up := newUpstream(t)
			tm := startMirror(t, Options{Repos: []Repo{{Name: "proj", URL: up.bare, Push: &PushMirror{
				URL:         "ssh://git@mirror.example/proj.git",
				Credentials: func() (string, error) { return "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n", nil },
				KnownHosts:  tc.knownHosts,
			}}}})
			waitPushes(t, tm, 1)
			b, err := os.ReadFile(argsFile)
			if err != nil {
				t.Fatalf("git did not run ssh: %v (push status %+v)", err, tm.Status().Repos[0].Push)
			}
			args := string(b)
			for _, w := range tc.want {
				if !strings.Contains(args, w) {
					t.Errorf("ssh ran without %q:\n%s", w, args)
				}
			}
			for _, w := range tc.bad {
				if strings.Contains(args, w) {
					t.Errorf("ssh ran with %q:\n%s", w, args)
				}
			}
		})
	}
	t.Run("missing file refused", func(t *testing.T) {
		_, err := New(Options{Dir: t.TempDir(), Repos: []Repo{{Name: "proj", URL: "/nonexistent", Push: &PushMirror{
			URL: "ssh://git@mirror.example/proj.git", KnownHosts: filepath.Join(t.TempDir(), "absent")}}}})
		if err == nil || !strings.Contains(err.Error(), "KnownHosts") {
			t.Errorf("New with a missing known_hosts file: err = %v", err)
		}
	})
}
