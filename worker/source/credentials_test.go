package source

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestCredentials checks that a repository requiring a token is checked
// out, by git and by tarball, with a credential for its URL prefix, and
// that the token goes to no other URL.
func TestCredentials(t *testing.T) {
	const token = "0123456789abcdef-worker-mirror-token"
	u := newUpstream(t)
	c1 := u.commit(map[string]string{"a.txt": "A"})
	tok := token
	u.token.Store(&tok)
	prefix := u.url[:strings.LastIndex(u.url, "/")+1] // http://127.0.0.1:N/

	tests := []struct {
		name    string
		creds   []Credential
		gitFail bool
		wantErr bool
	}{
		{"no credentials", nil, false, true},
		{"credential for another host", []Credential{{URLPrefix: "http://example.invalid/", Token: token}}, false, true},
		{"credential for another path", []Credential{{URLPrefix: prefix + "other/", Token: token}}, false, true},
		{"git with credential", []Credential{{URLPrefix: prefix, Token: token}}, false, false},
		{"tarball with credential", []Credential{{URLPrefix: prefix, Token: token}}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for len(u.auths) > 0 {
				<-u.auths
			}
			u.gitFail.Store(tc.gitFail)
			s, err := New(Options{Dir: t.TempDir(), Credentials: tc.creds})
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "src")
			got, release, err := s.Checkout(context.Background(), u.url, c1, dst)
			if tc.wantErr {
				if err == nil {
					release()
					t.Fatal("checkout without a matching credential succeeded")
				}
				if strings.Contains(err.Error(), token) {
					t.Errorf("error shows the token: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				defer release()
				if got != c1 || readFile(t, filepath.Join(dst, "a.txt")) != "A" {
					t.Errorf("checkout = %s with wrong contents, want %s", got, c1)
				}
			}
			for len(u.auths) > 0 {
				if a := <-u.auths; tc.wantErr && strings.Contains(a, token) {
					t.Errorf("token sent to a URL outside its prefix: %q", a)
				}
			}
		})
	}
}

// TestCredentialValidation checks that New refuses what
// gitexec.Credential.Validate refuses (its own test has the full table)
// with an error that names the package and not the token.
func TestCredentialValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Credential
	}{
		{"no trailing slash", Credential{URLPrefix: "http://mirror:8083", Token: "t0123456789abcdef"}},
		{"line break in the token", Credential{URLPrefix: "http://mirror/", Token: "t0123456789abcdef\nX-Evil: 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Dir: t.TempDir(), Credentials: []Credential{tc.c}})
			if err == nil || !strings.HasPrefix(err.Error(), "source: ") || strings.Contains(err.Error(), "t0123456789abcdef") {
				t.Errorf("New = %v, want a source: error without the token", err)
			}
		})
	}
}
