// Package config defines tryd.yaml, the one file that holds what is
// structured in a tryd deployment: review servers, repositories, builders,
// and the settings of each component. Flags and TRYD_* environment
// variables cover the rest (see cmd/tryd).
//
// Parsing is strict: an unknown key or a bad value is an error that names
// the key and its line. Secrets never appear in the file itself; a secret
// field holds a reference, "file:/path" or "env:NAME", resolved by
// Secret.Value.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the content of tryd.yaml. Every field is optional; the zero
// Config runs tryd dev in demo mode.
type Config struct {
	// DataDir is where embedded defaults keep their files (default
	// ./tryd-data). The --data-dir flag and TRYD_DATA_DIR override it.
	DataDir string `yaml:"data_dir"`
	// Log configures logging; flags override it.
	Log Log `yaml:"log"`

	// Gerrit lists the Gerrit servers tryd watches.
	Gerrit []GerritServer `yaml:"gerrit"`
	// GitHub lists the GitHub (or GitHub Enterprise) servers tryd watches.
	GitHub []GitHubServer `yaml:"github"`
	// Repos lists the repositories tryd mirrors, indexes and builds.
	Repos []Repo `yaml:"repos"`
	// Builders lists the builders a try run or post-submit build uses.
	Builders []Builder `yaml:"builders"`

	Trybot       Trybot       `yaml:"trybot"`
	Maintnerd    Maintnerd    `yaml:"maintnerd"`
	Pubsubhelper Pubsubhelper `yaml:"pubsubhelper"`
	Gitmirror    Gitmirror    `yaml:"gitmirror"`
	Coordinator  Coordinator  `yaml:"coordinator"`
	Worker       Worker       `yaml:"worker"`
	Dashboard    Dashboard    `yaml:"dashboard"`
}

// Log configures logging.
type Log struct {
	Format string `yaml:"format"` // "text" or "json"
	Level  string `yaml:"level"`  // logrus level name
}

// GerritServer is one Gerrit server.
type GerritServer struct {
	// Name identifies the server in repos' "gerrit" fields.
	Name string `yaml:"name"`
	// URL is the server's base URL, e.g. https://go-review.googlesource.com.
	URL string `yaml:"url"`
	// User is the bot account's HTTP user name.
	User string `yaml:"user"`
	// Password is the bot account's HTTP password (a secret reference).
	Password Secret `yaml:"password"`
	// WebhookSecret is the shared secret the webhooks plugin sends as a
	// bearer token or basic-auth password (a secret reference).
	WebhookSecret Secret `yaml:"webhook_secret"`
}

// GitHubServer is one GitHub server.
type GitHubServer struct {
	// Name identifies the server in repos' "github" fields.
	Name string `yaml:"name"`
	// APIURL is the REST base URL (default https://api.github.com/).
	APIURL string `yaml:"api_url"`
	// Token is a personal or installation access token (a secret
	// reference). Either Token or the App fields are used.
	Token Secret `yaml:"token"`
	// AppID and AppKey configure GitHub App authentication; AppKey is
	// the PEM private key (a secret reference). GitHub installs an App
	// once per account, so each repository is reached with the
	// installation on its owner's account, found by asking GitHub.
	// InstallationID is optional: 0 or absent (the default) finds every
	// owner's; a configured one is only where each owner starts (it may
	// be any account's).
	AppID          int64  `yaml:"app_id"`
	InstallationID int64  `yaml:"installation_id"`
	AppKey         Secret `yaml:"app_key"`
	// WebhookSecret verifies X-Hub-Signature-256 (a secret reference).
	WebhookSecret Secret `yaml:"webhook_secret"`
}

// Repo is one repository tryd tracks. Exactly one of Gerrit and GitHub
// says where its reviews happen.
type Repo struct {
	// Name is the repository's name inside tryd (gitmirror path, builder
	// references), e.g. "go" or "github.com/owner/repo".
	Name string `yaml:"name"`
	// Gerrit names a GerritServer; Project is the Gerrit project.
	Gerrit  string `yaml:"gerrit"`
	Project string `yaml:"project"`
	// GitHub names a GitHubServer; Slug is "owner/repo".
	GitHub string `yaml:"github"`
	Slug   string `yaml:"slug"`
	// URL is the clone URL; derived from the server when empty.
	URL string `yaml:"url"`
	// Branches are watched for post-submit builds (default: the
	// repository's default branch).
	Branches []string `yaml:"branches"`
	// PushMirror, if set, receives heads and tags after each fetch.
	PushMirror *PushMirror `yaml:"push_mirror"`
}

// PushMirror is a remote that gitmirror pushes heads and tags to.
type PushMirror struct {
	URL string `yaml:"url"`
	// Credentials is an HTTPS token or SSH key (a secret reference).
	Credentials Secret `yaml:"credentials"`
	// KnownHosts is the path of an OpenSSH known_hosts file holding the
	// host key of an SSH push URL: the push then fails on any other
	// key. Without it an SSH push trusts the first key it sees.
	KnownHosts string `yaml:"known_hosts"`
}

// Builder is a named build configuration: where it runs and what it runs.
type Builder struct {
	Name string `yaml:"name"`
	// Labels are the worker labels a job of this builder requires, e.g.
	// {os: linux, arch: amd64}.
	Labels map[string]string `yaml:"labels"`
	// Repos limits the builder to these repos (default: all).
	Repos []string `yaml:"repos"`
	// Branches limits the builder to changes for these branches (default:
	// all).
	Branches []string `yaml:"branches"`
	// Planner names a built-in planner ("go") that plans the graph on a
	// worker. Steps are used when Planner is empty.
	Planner string `yaml:"planner"`
	// Steps are the commands of a plain graph, run in order.
	Steps []Step `yaml:"steps"`
	// TryBot says whether the builder is in the default try set (default
	// true); false makes it a SlowBot, run only when asked for.
	TryBot *bool `yaml:"trybot"`
	// PostSubmit says whether new commits on watched branches are built.
	PostSubmit bool `yaml:"post_submit"`
	// Periodic is a cron schedule ("0 */6 * * *") for periodic builds.
	Periodic string `yaml:"periodic"`
	// Timeout bounds each job of the builder (default 20m).
	Timeout Duration `yaml:"timeout"`
}

// InTrySet reports whether the builder runs on every try run.
func (b Builder) InTrySet() bool { return b.TryBot == nil || *b.TryBot }

// Step is one command of a plain builder graph.
type Step struct {
	Name string `yaml:"name"`
	// Run is the argv of the command; Shell, if set instead, runs with
	// sh -c.
	Run   []string          `yaml:"run"`
	Shell string            `yaml:"shell"`
	Env   map[string]string `yaml:"env"`
	Dir   string            `yaml:"dir"`
}

// Trybot configures triggers and reporting.
type Trybot struct {
	// URL is the trybot's base URL, from which the dashboard reads try
	// runs (its /api/runs, with APIToken), e.g. http://trybot:8085. The
	// trybot itself listens on its --listen flag (it has no listen key).
	// Not to be confused with PublicURL, the dashboard's external URL.
	URL string `yaml:"url"`
	// TriggerLabel is the Gerrit label whose +1 asks for a try run
	// (default Run-TryBot); ResultLabel is the label tryd votes (default
	// TryBot-Result).
	TriggerLabel string `yaml:"trigger_label"`
	ResultLabel  string `yaml:"result_label"`
	// GitHubLabel is the PR label that asks for a try run (default
	// run-trybot); Command is the comment command (default /trybot).
	GitHubLabel string `yaml:"github_label"`
	Command     string `yaml:"command"`
	// Aliases maps SlowBot aliases to builder names.
	Aliases map[string][]string `yaml:"aliases"`
	// PublicURL is the dashboard's external URL used in links.
	PublicURL string `yaml:"public_url"`
	// PreexistingVote is the vote for a run whose only failures also fail
	// at the base revision: -1, 0 or +1 (default 0).
	PreexistingVote int `yaml:"preexisting_vote"`
	// FlakyRetries is how often a failed job is retried at the same
	// revision to detect flakes (default 1).
	FlakyRetries *int `yaml:"flaky_retries"`
	// TryLabels are worker labels that every job of a try run (untrusted
	// code) requires on top of its builder's, e.g. {trust: try};
	// PostSubmitLabels those of post-submit, periodic and forced builds
	// (trusted code), e.g. {trust: postsubmit}. Distinct labels let
	// operators run separate worker pools, so that a change under test
	// cannot poison the caches post-submit builds use. Default: none.
	TryLabels        map[string]string `yaml:"try_labels"`
	PostSubmitLabels map[string]string `yaml:"postsubmit_labels"`
	// APIToken is the bearer token the try run API (/api/runs) requires
	// and its clients (dashboard) send (a secret reference): runs name
	// changes, repositories and failure text of private repositories.
	// The GitHub App webhook, /healthz and /metrics never require it.
	APIToken Secret `yaml:"api_token"`
	// PublicAPI serves the try run API without a token on a non-loopback
	// listen address; without it (or APIToken) the trybot refuses to
	// start there.
	PublicAPI bool `yaml:"public_api"`
}

// Endpoint is where a component listens and how others reach it.
type Endpoint struct {
	// Listen is the address to listen on, e.g. ":8080".
	Listen string `yaml:"listen"`
	// URL is the base URL other components use to reach it.
	URL string `yaml:"url"`
}

// Maintnerd configures the corpus server.
type Maintnerd struct {
	Endpoint `yaml:",inline"`
	// Log selects the log store: "disk" (default) or "gcs".
	Store string `yaml:"store"`
	// GCSBucket and GCSPrefix locate the log in GCS.
	GCSBucket string `yaml:"gcs_bucket"`
	GCSPrefix string `yaml:"gcs_prefix"`
	// GitHubReconcile and GerritReconcile are the periods of full passes
	// (defaults 15m and 5m).
	GitHubReconcile Duration `yaml:"github_reconcile"`
	GerritReconcile Duration `yaml:"gerrit_reconcile"`
	// APIToken is the bearer token the query API (/api/) requires and
	// its clients (dashboard, tryd corpus) send (a secret reference).
	// /logs, the mutation log, never requires one.
	APIToken Secret `yaml:"api_token"`
	// PublicAPI serves the query API without a token on a non-loopback
	// listen address; without it (or APIToken) maintnerd refuses to
	// start there.
	PublicAPI bool `yaml:"public_api"`
}

// Pubsubhelper configures webhook intake.
type Pubsubhelper struct {
	Endpoint `yaml:",inline"`
	// Retention bounds the event journal by age (default 7 days) and size
	// in bytes (default 1 GiB).
	RetentionAge   Duration `yaml:"retention_age"`
	RetentionBytes int64    `yaml:"retention_bytes"`
	// SubscriberToken is the bearer token pubsubhelper's subscriber
	// endpoints (/waitevent, /recent) require, and that maintnerd and
	// gitmirror send (a secret reference). pubsubhelper accepts every
	// non-empty line of it, so that a token can be rotated; clients send
	// the first. Off loopback pubsubhelper refuses to start without one.
	SubscriberToken Secret `yaml:"subscriber_token"`
}

// Gitmirror configures the mirrors.
type Gitmirror struct {
	Endpoint `yaml:",inline"`
	// Poll is the safety-net fetch period (default 5m).
	Poll Duration `yaml:"poll"`
	// TarballCacheBytes bounds the tarball cache (default 2 GiB).
	TarballCacheBytes int64 `yaml:"tarball_cache_bytes"`
	// Token is the token gitmirror's clients (trybot, postsubmit,
	// workers) send, and one that gitmirror accepts (a secret
	// reference).
	Token Secret `yaml:"token"`
	// Tokens are further tokens gitmirror accepts, one per line (a
	// secret reference; blank lines and lines starting with # are
	// ignored), so that a token can be rotated. With neither Token nor
	// Tokens, gitmirror serves anyone who can reach it.
	Tokens Secret `yaml:"tokens"`
}

// Coordinator configures the build coordinator.
type Coordinator struct {
	Endpoint `yaml:",inline"`
	// Database is "sqlite" (default, under the data dir) or "postgres".
	Database string `yaml:"database"`
	// PostgresDSN is the connection string (a secret reference).
	PostgresDSN Secret `yaml:"postgres_dsn"`
	// WorkerTokens is a file of "name token" lines (a secret reference);
	// ClientToken authenticates API clients (a secret reference).
	WorkerTokens Secret `yaml:"worker_tokens"`
	ClientToken  Secret `yaml:"client_token"`
	// Artifacts is "disk" (default) or "gcs"; GCSBucket holds them.
	Artifacts      string `yaml:"artifacts"`
	GCSBucket      string `yaml:"gcs_bucket"`
	ArtifactsBytes int64  `yaml:"artifacts_bytes"`
	// HeartbeatTimeout is when a silent worker loses its jobs (default
	// 15s); MaxAttempts bounds reruns after worker loss (default 3).
	HeartbeatTimeout Duration `yaml:"heartbeat_timeout"`
	MaxAttempts      int      `yaml:"max_attempts"`
}

// Worker configures a worker process.
type Worker struct {
	// Coordinator is the coordinator's URL.
	Coordinator string `yaml:"coordinator"`
	// Token authenticates the worker (a secret reference).
	Token Secret `yaml:"token"`
	// Slots is how many jobs run at once (default: number of CPUs).
	Slots int `yaml:"slots"`
	// Labels are announced to the coordinator (os and arch are added).
	Labels map[string]string `yaml:"labels"`
}

// Dashboard configures the web UI.
type Dashboard struct {
	Endpoint `yaml:",inline"`
	// AdminToken allows force builds (a secret reference).
	AdminToken Secret `yaml:"admin_token"`
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a tryd.yaml document; name is used in error
// messages. An empty document yields the zero Config.
func Parse(name string, data []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %s: %s", name, cleanYAMLError(err))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %s: %s", name, cleanYAMLError(err))
	}
	v := &validator{name: name, root: &root}
	v.validate(&cfg)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return &cfg, nil
}

// cleanYAMLError turns yaml.v3's "yaml: unmarshal errors:\n  line 3: field
// x not found in type config.Config" into one line per problem, with the
// Go type names replaced by plain words.
func cleanYAMLError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if m := unknownFieldRE.FindStringSubmatch(l); m != nil {
			l = fmt.Sprintf("%s: unknown key %q", m[1], m[2])
		}
		lines[i] = l
	}
	return strings.Join(lines, "; ")
}

var unknownFieldRE = regexp.MustCompile(`^(line \d+): field (\S+) not found in type \S+$`)

// Duration is a time.Duration written as "90s", "15m" or "2h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 90s, 15m, 2h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Or returns d, or def when d is zero.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Secret is a reference to a secret: "file:/path/to/file" or "env:NAME".
// Literal secrets are refused so that tryd.yaml can be shared and logged.
type Secret struct {
	kind string // "file" or "env"
	ref  string
}

// FileSecret returns a Secret read from path.
func FileSecret(path string) Secret { return Secret{kind: "file", ref: path} }

// EnvSecret returns a Secret read from the environment variable name.
func EnvSecret(name string) Secret { return Secret{kind: "env", ref: name} }

// UnmarshalYAML parses "file:..." or "env:...".
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	kind, ref, ok := strings.Cut(n.Value, ":")
	if !ok || (kind != "file" && kind != "env") || ref == "" {
		return fmt.Errorf("line %d: a secret must be a reference, \"file:/path\" or \"env:NAME\", not a literal value", n.Line)
	}
	*s = Secret{kind: kind, ref: ref}
	return nil
}

// IsSet reports whether the secret was configured.
func (s Secret) IsSet() bool { return s.kind != "" }

// String describes the reference, never the secret itself.
func (s Secret) String() string {
	if !s.IsSet() {
		return "(unset)"
	}
	return s.kind + ":" + s.ref
}

// Value reads the secret. Trailing newlines and spaces are trimmed so that
// files written by editors work.
func (s Secret) Value() (string, error) {
	switch s.kind {
	case "":
		return "", errors.New("config: secret not set")
	case "env":
		v, ok := os.LookupEnv(s.ref)
		if !ok || v == "" {
			return "", fmt.Errorf("config: secret env:%s is not set", s.ref)
		}
		return strings.TrimSpace(v), nil
	default:
		b, err := os.ReadFile(s.ref)
		if err != nil {
			return "", fmt.Errorf("config: read secret: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("config: secret file %s is empty", s.ref)
		}
		return v, nil
	}
}

// Ref returns the reference: kind "file" with a path, or "env" with a
// variable name ("", "" when unset). It is for handing the reference,
// never the secret, to a program that reads the secret itself.
func (s Secret) Ref() (kind, ref string) { return s.kind, s.ref }

// Lines reads the secret as a list of values, one per line, trimmed;
// blank lines and lines starting with # are left out. A file of tokens
// (gitmirror.tokens) is read this way.
func (s Secret) Lines() ([]string, error) {
	v, err := s.Value()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(v, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

type validator struct {
	name string
	root *yaml.Node
	errs []error
}

// errorf records a problem at the key named by path (strings for mapping
// keys, ints for sequence indexes), with that key's line.
func (v *validator) errorf(path []any, format string, args ...any) {
	line := lineOf(v.root, path)
	where := pathString(path)
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		v.errs = append(v.errs, fmt.Errorf("config: %s: line %d: %s: %s", v.name, line, where, msg))
		return
	}
	v.errs = append(v.errs, fmt.Errorf("config: %s: %s: %s", v.name, where, msg))
}

func pathString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, p)
		}
	}
	return b.String()
}

// lineOf finds the line of the node at path, or of its nearest existing
// ancestor.
func lineOf(n *yaml.Node, path []any) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return line
			}
			n = n.Content[p]
			line = n.Line
		}
	}
	return line
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	repoRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)
	slugRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$`)
	labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
)

func (v *validator) validate(c *Config) {
	switch c.Log.Format {
	case "", "text", "json":
	default:
		v.errorf([]any{"log", "format"}, "unknown format %q (want text or json)", c.Log.Format)
	}
	gerrit := map[string]bool{}
	for i, s := range c.Gerrit {
		p := []any{"gerrit", i}
		v.checkName(append(p, "name"), s.Name, gerrit, "gerrit server")
		v.checkURL(append(p, "url"), s.URL, true)
	}
	github := map[string]bool{}
	for i, s := range c.GitHub {
		p := []any{"github", i}
		v.checkName(append(p, "name"), s.Name, github, "github server")
		v.checkURL(append(p, "api_url"), s.APIURL, false)
		if s.Token.IsSet() && s.AppKey.IsSet() {
			v.errorf(p, "set either token or app_key, not both")
		}
		if s.AppKey.IsSet() && s.AppID <= 0 {
			v.errorf(p, "app_key needs app_id (the GitHub App's ID)")
		}
		if s.AppID < 0 || s.InstallationID < 0 {
			v.errorf(p, "app_id and installation_id must not be negative")
		}
		if !s.AppKey.IsSet() && s.InstallationID != 0 {
			v.errorf(append(p, "installation_id"), "needs app_key (installation_id belongs to a GitHub App)")
		}
	}
	repos := map[string]bool{}
	for i, r := range c.Repos {
		p := []any{"repos", i}
		if r.Name == "" {
			v.errorf(append(p, "name"), "missing")
		} else if !repoRE.MatchString(r.Name) || strings.Contains(r.Name, "..") {
			v.errorf(append(p, "name"), "bad repository name %q (letters, digits, . _ - and / between parts)", r.Name)
		} else if repos[r.Name] {
			v.errorf(append(p, "name"), "duplicate repository %q", r.Name)
		}
		repos[r.Name] = true
		switch {
		case r.Gerrit != "" && r.GitHub != "":
			v.errorf(p, "set gerrit or github, not both")
		case r.Gerrit != "":
			if !gerrit[r.Gerrit] {
				v.errorf(append(p, "gerrit"), "unknown gerrit server %q", r.Gerrit)
			}
			if r.Project == "" {
				v.errorf(append(p, "project"), "missing (the Gerrit project)")
			}
		case r.GitHub != "":
			if !github[r.GitHub] {
				v.errorf(append(p, "github"), "unknown github server %q", r.GitHub)
			}
			if !slugRE.MatchString(r.Slug) {
				v.errorf(append(p, "slug"), "want owner/repo, got %q", r.Slug)
			}
		case r.URL == "":
			v.errorf(p, "needs gerrit, github or url")
		}
		if r.URL != "" {
			v.checkURL(append(p, "url"), r.URL, true)
		}
		if r.PushMirror != nil && r.PushMirror.URL == "" {
			v.errorf(append(p, "push_mirror", "url"), "missing")
		}
		if r.PushMirror != nil && strings.ContainsAny(r.PushMirror.KnownHosts, "\x00\n\r") {
			v.errorf(append(p, "push_mirror", "known_hosts"), "bad file path %q", r.PushMirror.KnownHosts)
		}
	}
	builders := map[string]bool{}
	for i, b := range c.Builders {
		p := []any{"builders", i}
		v.checkName(append(p, "name"), b.Name, builders, "builder")
		for k, val := range b.Labels {
			if !labelRE.MatchString(k) || strings.ContainsAny(val, "\n=") {
				v.errorf(append(p, "labels", k), "bad label %q=%q", k, val)
			}
		}
		for j, r := range b.Repos {
			if !repos[r] {
				v.errorf(append(p, "repos", j), "unknown repository %q", r)
			}
		}
		switch {
		case b.Planner != "" && len(b.Steps) > 0:
			v.errorf(p, "set planner or steps, not both")
		case b.Planner != "" && b.Planner != "go":
			v.errorf(append(p, "planner"), "unknown planner %q (known: go)", b.Planner)
		case b.Planner == "" && len(b.Steps) == 0:
			v.errorf(p, "needs planner or steps")
		}
		for j, s := range b.Steps {
			sp := append(append([]any{}, p...), "steps", j)
			if (len(s.Run) == 0) == (s.Shell == "") {
				v.errorf(sp, "set exactly one of run and shell")
			}
		}
	}
	for alias, names := range c.Trybot.Aliases {
		if builders[alias] {
			v.errorf([]any{"trybot", "aliases", alias}, "alias %q is also a builder name", alias)
		}
		for j, n := range names {
			if !builders[n] {
				v.errorf([]any{"trybot", "aliases", alias, j}, "unknown builder %q", n)
			}
		}
	}
	if pv := c.Trybot.PreexistingVote; pv < -1 || pv > 1 {
		v.errorf([]any{"trybot", "preexisting_vote"}, "must be -1, 0 or 1, got %d", pv)
	}
	for _, tl := range []struct {
		key    string
		labels map[string]string
	}{{"try_labels", c.Trybot.TryLabels}, {"postsubmit_labels", c.Trybot.PostSubmitLabels}} {
		for k, val := range tl.labels {
			if !labelRE.MatchString(k) || strings.ContainsAny(val, "\n=") {
				v.errorf([]any{"trybot", tl.key, k}, "bad label %q=%q", k, val)
			}
			for i, b := range c.Builders {
				if bv, ok := b.Labels[k]; ok && bv != val {
					v.errorf([]any{"builders", i, "labels", k}, "label %s=%s conflicts with trybot.%s (%s=%s)", k, bv, tl.key, k, val)
				}
			}
		}
	}
	if len(c.Trybot.TryLabels) > 0 && len(c.Trybot.PostSubmitLabels) > 0 && sameLabels(c.Trybot.TryLabels, c.Trybot.PostSubmitLabels) {
		v.errorf([]any{"trybot", "postsubmit_labels"}, "no label differs from try_labels: set one label to different values (e.g. trust: try and trust: postsubmit) so that no worker runs both")
	}
	if c.Trybot.PublicURL != "" {
		v.checkURL([]any{"trybot", "public_url"}, c.Trybot.PublicURL, true)
	}
	switch c.Maintnerd.Store {
	case "", "disk":
	case "gcs":
		if c.Maintnerd.GCSBucket == "" {
			v.errorf([]any{"maintnerd", "gcs_bucket"}, "required when store is gcs")
		}
	default:
		v.errorf([]any{"maintnerd", "store"}, "unknown store %q (want disk or gcs)", c.Maintnerd.Store)
	}
	switch c.Coordinator.Database {
	case "", "sqlite":
	case "postgres":
		if !c.Coordinator.PostgresDSN.IsSet() {
			v.errorf([]any{"coordinator", "postgres_dsn"}, "required when database is postgres")
		}
	default:
		v.errorf([]any{"coordinator", "database"}, "unknown database %q (want sqlite or postgres)", c.Coordinator.Database)
	}
	switch c.Coordinator.Artifacts {
	case "", "disk":
	case "gcs":
		if c.Coordinator.GCSBucket == "" {
			v.errorf([]any{"coordinator", "gcs_bucket"}, "required when artifacts is gcs")
		}
	default:
		v.errorf([]any{"coordinator", "artifacts"}, "unknown artifact store %q (want disk or gcs)", c.Coordinator.Artifacts)
	}
	if c.Coordinator.MaxAttempts < 0 {
		v.errorf([]any{"coordinator", "max_attempts"}, "must not be negative")
	}
	if c.Worker.Slots < 0 {
		v.errorf([]any{"worker", "slots"}, "must not be negative")
	}
	for k := range c.Worker.Labels {
		if !labelRE.MatchString(k) {
			v.errorf([]any{"worker", "labels", k}, "bad label name %q", k)
		}
	}
	for _, e := range []struct {
		key string
		ep  Endpoint
	}{{"maintnerd", c.Maintnerd.Endpoint}, {"pubsubhelper", c.Pubsubhelper.Endpoint}, {"gitmirror", c.Gitmirror.Endpoint}, {"coordinator", c.Coordinator.Endpoint}, {"dashboard", c.Dashboard.Endpoint}} {
		if e.ep.URL != "" {
			v.checkURL([]any{e.key, "url"}, e.ep.URL, true)
		}
	}
	if c.Trybot.URL != "" {
		v.checkURL([]any{"trybot", "url"}, c.Trybot.URL, true)
	}
	if c.Worker.Coordinator != "" {
		v.checkURL([]any{"worker", "coordinator"}, c.Worker.Coordinator, true)
	}
}

// sameLabels reports whether one worker could run jobs requiring a and
// jobs requiring b: no key is set to different values in them.
func sameLabels(a, b map[string]string) bool {
	for k, va := range a {
		if vb, ok := b[k]; ok && vb != va {
			return false
		}
	}
	return true
}

func (v *validator) checkName(path []any, name string, seen map[string]bool, what string) {
	switch {
	case name == "":
		v.errorf(path, "missing")
	case !nameRE.MatchString(name):
		v.errorf(path, "bad %s name %q (letters, digits, . _ -)", what, name)
	case seen[name]:
		v.errorf(path, "duplicate %s %q", what, name)
	}
	seen[name] = true
}

func (v *validator) checkURL(path []any, u string, required bool) {
	if u == "" {
		if required {
			v.errorf(path, "missing")
		}
		return
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "ssh://") && !strings.HasPrefix(u, "git@") && !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "/") {
		v.errorf(path, "bad URL %q (want http:// or https://)", u)
	}
}
