package client

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRepoName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"go", true},
		{"github.com/owner/repo", true},
		{"a_b-c.d", true},
		{"", false},
		{"..", false},
		{"a/../b", false},
		{"a..b", false},
		{"-x", false},
		{"/abs", false},
		{"a//b", false},
		{"a/", false},
		{".hidden", false},
		{"a/.git", false},
		{"a b", false},
		{"a\nb", false},
		{"a\\b", false},
		{strings.Repeat("a", 201), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRepoName(tc.name)
			if (err == nil) != tc.ok {
				t.Errorf("CheckRepoName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadName) {
				t.Errorf("error %v does not wrap ErrBadName", err)
			}
		})
	}
}

func TestCheckRev(t *testing.T) {
	for _, tc := range []struct {
		rev string
		ok  bool
	}{
		{"83d9e67e6905288eddbcaf39197c6b22cd62b503", true},
		{"83d9e67e", true},
		{"ABCDEF12", true},
		{strings.Repeat("a", 64), true},
		{"refs/heads/main", true},
		{"refs/changes/01/1/meta", true},
		{"refs/pull/3/head", true},
		{"refs/tags/v1.2.3-rc_1", true},
		{"abc", false},
		{strings.Repeat("a", 65), false},
		{"HEAD", false},
		{"main", false},
		{"HEAD~1", false},
		{"main@{1}", false},
		{"--output=x", false},
		{"-x", false},
		{"refs/heads/../x", false},
		{"refs/heads/.x", false},
		{"refs/heads/-x", false},
		{"refs/heads/x.lock", false},
		{"refs/heads//x", false},
		{"refs/heads/x/", false},
		{"refs/heads/a b", false},
		{"refs/heads/a:b", false},
		{"refs/heads/a^{tree}", false},
		{"aaaa..bbbb", false},
		{"", false},
	} {
		t.Run(tc.rev, func(t *testing.T) {
			if err := CheckRev(tc.rev); (err == nil) != tc.ok {
				t.Errorf("CheckRev(%q) = %v, want ok=%v", tc.rev, err, tc.ok)
			}
		})
	}
}

// FuzzCheckRev checks that whatever CheckRev accepts cannot be read by
// git as an option, a revision expression or a path outside refs/.
func FuzzCheckRev(f *testing.F) {
	for _, s := range []string{"refs/heads/main", "83d9e67e", "--exec=x", "refs/../x", "a@{1}", "refs/heads/x.lock"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rev string) {
		if CheckRev(rev) != nil {
			return
		}
		if strings.HasPrefix(rev, "-") || strings.Contains(rev, "..") || strings.ContainsAny(rev, " \t\n\r~^:?*[\\@{}") {
			t.Fatalf("accepted %q", rev)
		}
		if !IsHex(rev) && !strings.HasPrefix(rev, "refs/") {
			t.Fatalf("accepted %q, neither hex nor refs/", rev)
		}
	})
}

func FuzzCheckRepoName(f *testing.F) {
	for _, s := range []string{"go", "github.com/a/b", "../x", "-x", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckRepoName(name) != nil {
			return
		}
		if strings.HasPrefix(name, "-") || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || strings.Contains(name, "//") || strings.ContainsAny(name, " \\\x00\n%?#") {
			t.Fatalf("accepted %q", name)
		}
	})
}
