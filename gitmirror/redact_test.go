package gitmirror

import (
	"strings"
	"testing"
)

// TestRedactURL checks that no part of a URL's user information survives
// redaction, whatever characters the password holds.
func TestRedactURL(t *testing.T) {
	tests := []struct{ name, in, want, secret string }{
		{"token", "https://x-access-token:ghs_SECRET@github.com/o/r", "https://github.com/o/r", "SECRET"},
		{"user only", "https://bot@review.example.com/p", "https://review.example.com/p", "bot"},
		{"at sign in password", "https://bot:p@SECRET@host/r.git", "https://host/r.git", "SECRET"},
		{"in a git message", "fatal: unable to access 'https://u:pw@SECRET@host/r/': 401", "fatal: unable to access 'https://host/r/': 401", "SECRET"},
		{"two URLs", "https://a:S1@h1/x and ssh://b:S2@h2/y", "https://h1/x and ssh://h2/y", "S2"},
		{"no user info", "https://host/path@v1", "https://host/path@v1", ""},
		{"scp form untouched", "git@github.com:o/r.git", "git@github.com:o/r.git", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := redactURL(tc.in)
			if got != tc.want {
				t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.secret != "" && strings.Contains(got, tc.secret) {
				t.Errorf("redactURL(%q) = %q still shows %q", tc.in, got, tc.secret)
			}
		})
	}
}
