package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "tryd.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.Builders); got != 2 {
		t.Errorf("builders = %d, want 2", got)
	}
	if cfg.Builders[1].InTrySet() || !cfg.Builders[0].InTrySet() {
		t.Errorf("trybot flags not honoured: %+v", cfg.Builders)
	}
	if got := cfg.Coordinator.HeartbeatTimeout.Or(time.Minute); got != 15*time.Second {
		t.Errorf("heartbeat_timeout = %v, want 15s", got)
	}
	if cfg.Maintnerd.Listen != ":8081" {
		t.Errorf("inline endpoint not decoded: %+v", cfg.Maintnerd)
	}
	if got := cfg.Gerrit[0].Password.String(); got != "file:/etc/tryd/gerrit-http-password" {
		t.Errorf("password ref = %q", got)
	}
	if got := cfg.Gitmirror.Token.String() + " " + cfg.Gitmirror.Tokens.String(); got != "file:/etc/tryd/gitmirror-token file:/etc/tryd/gitmirror-tokens" {
		t.Errorf("gitmirror token refs = %q", got)
	}
	if got := cfg.Trybot.APIToken.String(); got != "file:/etc/tryd/trybot-api-token" || cfg.Trybot.PublicAPI {
		t.Errorf("trybot api_token = %q, public_api %v", got, cfg.Trybot.PublicAPI)
	}
	if cfg.Trybot.URL != "http://trybot.internal:8085" {
		t.Errorf("trybot url = %q", cfg.Trybot.URL)
	}
	// Every listen address of the example binds all interfaces
	// explicitly, as a production deployment behind a network boundary
	// does; the built-in defaults are loopback.
	for name, l := range map[string]string{"maintnerd": cfg.Maintnerd.Listen, "pubsubhelper": cfg.Pubsubhelper.Listen, "gitmirror": cfg.Gitmirror.Listen, "coordinator": cfg.Coordinator.Listen, "dashboard": cfg.Dashboard.Listen} {
		if !strings.HasPrefix(l, ":") {
			t.Errorf("%s.listen = %q", name, l)
		}
	}
}

func TestPushMirrorKnownHosts(t *testing.T) {
	cfg, err := Parse("tryd.yaml", []byte("repos:\n  - name: r\n    url: https://x/y\n    push_mirror:\n      url: git@mirror.example.com:y.git\n      credentials: file:/k\n      known_hosts: /etc/tryd/mirror-known-hosts\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pm := cfg.Repos[0].PushMirror; pm == nil || pm.KnownHosts != "/etc/tryd/mirror-known-hosts" {
		t.Errorf("push_mirror.known_hosts not decoded: %+v", pm)
	}
}

func TestSecretLines(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(f, []byte("# rotated 2026-11\n  first-token-0123456789  \n\n#old\nsecond-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := FileSecret(f).Lines()
	if err != nil || strings.Join(got, ",") != "first-token-0123456789,second-token-0123456789" {
		t.Errorf("Lines() = %q, %v", got, err)
	}
	if _, err := FileSecret(filepath.Join(t.TempDir(), "missing")).Lines(); err == nil {
		t.Error("Lines() of a missing file gave no error")
	}
}

func TestEmptyConfig(t *testing.T) {
	cfg, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Repos) != 0 || cfg.DataDir != "" {
		t.Errorf("empty config not zero: %+v", cfg)
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "data_dir: x\nbogus: 1\n", []string{"line 2", `unknown key "bogus"`}},
		{"unknown nested key", "builders:\n  - name: a\n    planner: go\n    colour: red\n", []string{"line 4", `unknown key "colour"`}},
		{"bad duration", "coordinator:\n  heartbeat_timeout: soon\n", []string{"line 2", `bad duration "soon"`}},
		{"literal secret", "github:\n  - name: gh\n    token: ghp_abc123\n", []string{"line 3", "reference"}},
		{"duplicate builder", "builders:\n  - name: a\n    planner: go\n  - name: a\n    planner: go\n", []string{"line 4", "builders[1].name", `duplicate builder "a"`}},
		{"unknown planner", "builders:\n  - name: a\n    planner: bazel\n", []string{"line 3", `unknown planner "bazel"`}},
		{"builder without work", "builders:\n  - name: a\n", []string{"line 2", "needs planner or steps"}},
		{"unknown repo in builder", "builders:\n  - name: a\n    planner: go\n    repos: [nope]\n", []string{"line 4", `unknown repository "nope"`}},
		{"repo with unknown gerrit", "repos:\n  - name: r\n    gerrit: g\n    project: p\n", []string{"line 3", `unknown gerrit server "g"`}},
		{"hostile repo name", "repos:\n  - name: ../etc\n    url: https://x/y\n", []string{"line 2", "bad repository name"}},
		{"bad slug", "github:\n  - name: gh\n    token: env:T\nrepos:\n  - name: r\n    github: gh\n    slug: nope\n", []string{"line 7", "owner/repo"}},
		{"alias of unknown builder", "trybot:\n  aliases:\n    x: [missing]\n", []string{"line 3", `unknown builder "missing"`}},
		{"bad vote", "trybot:\n  preexisting_vote: 2\n", []string{"line 2", "-1, 0 or 1"}},
		{"bad store", "maintnerd:\n  store: s3\n", []string{"line 2", `unknown store "s3"`}},
		{"bad url", "gerrit:\n  - name: g\n    url: review.example.com\n", []string{"line 3", "bad URL"}},
		{"bad trybot url", "trybot:\n  trigger_label: Run-TryBot\n  url: trybot:8085\n", []string{"line 3", "trybot.url", "bad URL"}},
		{"postgres without dsn", "coordinator:\n  database: postgres\n", []string{"line 1", "coordinator.postgres_dsn"}},
		{"malformed yaml", "repos: [\n", []string{"tryd.yaml"}},
		{"wrong type", "worker:\n  slots: many\n", []string{"line 2"}},
		{"literal gitmirror token", "gitmirror:\n  token: abcdefghijklmnopq\n", []string{"line 2", "reference"}},
		{"app_key without app_id", "github:\n  - name: gh\n    installation_id: 7\n    app_key: file:/k.pem\n", []string{"line 2", "github[0]", "app_key needs app_id"}},
		{"negative installation_id", "github:\n  - name: gh\n    app_id: 1\n    installation_id: -7\n    app_key: file:/k.pem\n", []string{"line 2", "must not be negative"}},
		{"installation_id without app_key", "github:\n  - name: gh\n    token: env:T\n    installation_id: 7\n", []string{"line 4", "installation_id", "needs app_key"}},
		{"known_hosts with a newline", "repos:\n  - name: r\n    url: https://x/y\n    push_mirror:\n      url: ssh://m/y\n      known_hosts: \"a\\nb\"\n", []string{"line 6", "push_mirror.known_hosts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("tryd.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestGitHubAppInstallationOptional checks that a GitHub App needs its
// app_id and app_key, and installation_id only optionally: without it
// (or 0) the installation of each repository owner's account is found;
// with it, it is only where each owner starts.
func TestGitHubAppInstallationOptional(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want int64
	}{
		{"absent", "github:\n  - name: gh\n    app_id: 12345\n    app_key: file:/etc/tryd/app.pem\n", 0},
		{"zero", "github:\n  - name: gh\n    app_id: 12345\n    installation_id: 0\n    app_key: file:/etc/tryd/app.pem\n", 0},
		{"given", "github:\n  - name: gh\n    app_id: 12345\n    installation_id: 67890\n    app_key: file:/etc/tryd/app.pem\n", 67890},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("tryd.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			s := cfg.GitHub[0]
			if s.AppID != 12345 || s.InstallationID != tc.want || s.AppKey.String() != "file:/etc/tryd/app.pem" {
				t.Errorf("decoded app_id %d installation_id %d app_key %q", s.AppID, s.InstallationID, s.AppKey.String())
			}
		})
	}
}

func TestSecretValue(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tok")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := FileSecret(f).Value(); err != nil || v != "s3cret" {
		t.Errorf("file secret = %q, %v", v, err)
	}
	t.Setenv("TRYD_TEST_SECRET", "abc")
	if v, err := EnvSecret("TRYD_TEST_SECRET").Value(); err != nil || v != "abc" {
		t.Errorf("env secret = %q, %v", v, err)
	}
	if _, err := EnvSecret("TRYD_TEST_UNSET_SECRET").Value(); err == nil {
		t.Error("unset env secret gave no error")
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := FileSecret(empty).Value(); err == nil {
		t.Error("empty secret file gave no error")
	}
	if s := FileSecret(f).String(); strings.Contains(s, "s3cret") {
		t.Errorf("String() leaks the secret: %q", s)
	}
}
