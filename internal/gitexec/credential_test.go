package gitexec

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
)

const testToken = "0123456789abcdef-mirror-token"

func TestCredentialValidate(t *testing.T) {
	tests := []struct {
		name    string
		c       Credential
		wantErr string // "" means valid
	}{
		{"http", Credential{URLPrefix: "http://gitmirror:8083/", Token: testToken}, ""},
		{"https with a path", Credential{URLPrefix: "https://mirror.example/git/", Token: testToken}, ""},
		{"no trailing slash", Credential{URLPrefix: "http://gitmirror:8083", Token: testToken}, "URL prefix"},
		{"not http", Credential{URLPrefix: "file:///srv/", Token: testToken}, "URL prefix"},
		{"ftp", Credential{URLPrefix: "ftp://mirror/", Token: testToken}, "URL prefix"},
		{"no host", Credential{URLPrefix: "http:///x/", Token: testToken}, "URL prefix"},
		{"user info", Credential{URLPrefix: "http://u:secret-pw@mirror/", Token: testToken}, "URL prefix"},
		{"query", Credential{URLPrefix: "http://mirror/?x=1/", Token: testToken}, "URL prefix"},
		{"fragment", Credential{URLPrefix: "http://mirror/#x/", Token: testToken}, "URL prefix"},
		{"line break in the prefix", Credential{URLPrefix: "http://mirror/\nx=y/", Token: testToken}, "URL prefix"},
		{"empty", Credential{}, "URL prefix"},
		{"empty token", Credential{URLPrefix: "http://mirror/"}, "empty token"},
		{"token with a newline", Credential{URLPrefix: "http://mirror/", Token: "t0123\nX-Evil: 1"}, "line break"},
		{"token with a CR", Credential{URLPrefix: "http://mirror/", Token: "t0123\rX"}, "line break"},
		{"token with a NUL", Credential{URLPrefix: "http://mirror/", Token: "t0123\x00X"}, "line break"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "gitexec: ") {
				t.Fatalf("Validate = %v, want a gitexec: error mentioning %q", err, tc.wantErr)
			}
			for _, secret := range []string{tc.c.Token, "secret-pw"} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows %q: %v", secret, err)
				}
			}
			if _, err := CredentialEnv([]Credential{{URLPrefix: "http://ok/", Token: testToken}, tc.c}); err == nil {
				t.Error("CredentialEnv accepted a list holding the credential")
			}
		})
	}
}

func TestCredentialEnv(t *testing.T) {
	env, err := CredentialEnv(nil)
	if err != nil || env != nil {
		t.Errorf("CredentialEnv(nil) = %q, %v; want nothing", env, err)
	}
	env, err = CredentialEnv([]Credential{
		{URLPrefix: "http://a:1/", Token: "tok-a"},
		{URLPrefix: "https://b/git/", Token: "tok-b"},
	})
	want := []string{
		"GIT_TRACE_REDACT=1",
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=http.http://a:1/.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Bearer tok-a",
		"GIT_CONFIG_KEY_1=http.https://b/git/.extraHeader", "GIT_CONFIG_VALUE_1=Authorization: Bearer tok-b",
	}
	if err != nil || !slices.Equal(env, want) {
		t.Errorf("CredentialEnv = %q, %v\nwant %q", env, err, want)
	}
}

// TestCredentialURLMatch asks git itself which URLs get the header: the
// prefix's own URLs, and neither another host, port, scheme nor a path
// outside the prefix's.
func TestCredentialURLMatch(t *testing.T) {
	testenv.NeedTool(t, "git")
	env, err := CredentialEnv([]Credential{{URLPrefix: "http://mirror:8083/git/", Token: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	env = append(os.Environ(), append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")...)
	tests := []struct {
		name, url string
		want      bool
	}{
		{"repository under the prefix", "http://mirror:8083/git/proj.git", true},
		{"deeper path", "http://mirror:8083/git/a/b.git", true},
		{"path outside the prefix", "http://mirror:8083/other/proj.git", false},
		{"other port", "http://mirror:8084/git/proj.git", false},
		{"other host", "http://evil:8083/git/proj.git", false},
		{"other scheme", "https://mirror:8083/git/proj.git", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Cmd{Env: env, Dir: t.TempDir(), Args: []string{"config", "--get-urlmatch", "http.extraHeader", tc.url}}.Output(context.Background())
			got := strings.TrimSpace(string(out))
			switch {
			case tc.want && (err != nil || got != "Authorization: Bearer "+testToken):
				t.Errorf("git config --get-urlmatch = %q, %v; want the header", got, err)
			case !tc.want && (ExitCode(err) != 1 || got != ""):
				t.Errorf("git config --get-urlmatch = %q, %v; want no match (exit 1)", got, err)
			}
		})
	}
}

// FuzzCredentialValidate: a credential Validate accepts gives git one
// setting per credential, with no line break that could add another.
func FuzzCredentialValidate(f *testing.F) {
	f.Add("http://gitmirror:8083/", testToken)
	f.Add("http://u:p@m/", "t")
	f.Add("http://m/\nx/", "t\r")
	f.Add("%zz", "")
	f.Fuzz(func(t *testing.T, prefix, token string) {
		c := Credential{URLPrefix: prefix, Token: token}
		err := c.Validate()
		if err != nil {
			if len(token) > 8 && strings.Contains(err.Error(), token) && !strings.Contains(prefix, token) {
				t.Errorf("error shows the token: %v", err)
			}
			return
		}
		env, err := CredentialEnv([]Credential{c})
		if err != nil || len(env) != 4 {
			t.Fatalf("CredentialEnv of a valid credential = %q, %v", env, err)
		}
		for _, e := range env {
			if strings.ContainsAny(e, "\n\r\x00") {
				t.Errorf("variable %q holds a line break", e)
			}
		}
	})
}
