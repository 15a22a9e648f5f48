package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/pubsubhelper"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/sshstream"
)

func runPubsubhelper(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("pubsubhelper", "[flags]", `Pubsubhelper receives GitHub webhooks (POST /github-webhook) and Gerrit
webhooks-plugin deliveries (POST /gerrit-webhook), journals each event before
acknowledging it, and serves subscribers at /waitevent and /recent.

Secrets come from tryd.yaml (github[].webhook_secret, gerrit[].webhook_secret)
and from --github-secret / --gerrit-secret, each a reference "file:/path" or
"env:NAME". A secret file may hold several secrets, one per line, to rotate
one without losing deliveries. Gerrit's webhooks plugin must send its secret
as "Authorization: Bearer SECRET" or as a basic-auth password (see
"go doc github.com/tryd-ci/tryd/pubsubhelper"). For a Gerrit server without
the plugin, --gerrit-ssh follows "gerrit stream-events" over SSH instead.

Subscribers (/waitevent, /recent) must send a token, "Authorization: Bearer
TOKEN", from pubsubhelper.subscriber_token or --subscriber-token (maintnerd
and gitmirror send pubsubhelper.subscriber_token). On a loopback address,
without any token, they are served without one (but get no raw payloads);
on any other address pubsubhelper refuses to start without a token.`)
	listen := fs.String("listen", "", "address to serve HTTP on (default: pubsubhelper.listen from the config, else 127.0.0.1:8082; set listen: \":8082\" to serve every interface)")
	journalDir := fs.String("journal-dir", "", "directory of the event journal (default: <data-dir>/pubsubhelper)")
	noJournal := fs.Bool("no-journal", false, "keep events in memory only, without durability (benchmark baseline, experiments)")
	retentionAge := fs.Duration("retention-age", 0, "delete journaled events older than this (default: pubsubhelper.retention_age, else 168h)")
	retentionBytes := fs.Int64("retention-bytes", 0, "delete the oldest events while the journal is larger (default: pubsubhelper.retention_bytes, else 1 GiB)")
	longPoll := fs.Duration("long-poll-timeout", 0, "how long /waitevent waits by default (default 30s)")
	maxBody := fs.Int64("max-body-bytes", 0, "largest webhook body accepted (default 25 MiB)")
	sshAddr := fs.String("gerrit-ssh", "", "also follow \"gerrit stream-events\" over SSH at host:port (for servers without the webhooks plugin)")
	sshUser := fs.String("gerrit-ssh-user", "", "SSH user name for --gerrit-ssh")
	sshKey := fs.String("gerrit-ssh-key", "", "private key file for --gerrit-ssh")
	sshKnownHosts := fs.String("gerrit-ssh-known-hosts", "", "known_hosts file that must list the server's host key (default ~/.ssh/known_hosts)")
	sshServer := fs.String("gerrit-ssh-server", "gerrit", "server name recorded on events from --gerrit-ssh")
	var ghFlags, gerritFlags, subFlags secretRefFlags
	fs.Var(&ghFlags, "github-secret", "GitHub webhook secret reference, file:/path or env:NAME (repeatable; added to the config's)")
	fs.Var(&subFlags, "subscriber-token", "token subscribers must send (Authorization: Bearer) to /waitevent and /recent, file:/path or env:NAME (repeatable; added to pubsubhelper.subscriber_token's); required off loopback")
	fs.Var(&gerritFlags, "gerrit-secret", "Gerrit webhook shared secret reference, file:/path or env:NAME (repeatable; added to the config's)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	pc := a.cfg.Pubsubhelper
	if *listen == "" {
		*listen = pc.Listen
	}
	if *listen == "" {
		*listen = "127.0.0.1:8082"
	}
	if *retentionAge == 0 {
		*retentionAge = pc.RetentionAge.Or(0)
	}
	if *retentionBytes == 0 {
		*retentionBytes = pc.RetentionBytes
	}

	var ghSecrets, gerritSecrets, subTokens []pubsubhelper.Secret
	for _, s := range a.cfg.GitHub {
		if s.WebhookSecret.IsSet() {
			v, err := secretValues(s.Name, s.WebhookSecret)
			if err != nil {
				return fmt.Errorf("github %s webhook_secret: %w", s.Name, err)
			}
			ghSecrets = append(ghSecrets, v...)
		}
	}
	for _, s := range a.cfg.Gerrit {
		if s.WebhookSecret.IsSet() {
			v, err := secretValues(s.Name, s.WebhookSecret)
			if err != nil {
				return fmt.Errorf("gerrit %s webhook_secret: %w", s.Name, err)
			}
			gerritSecrets = append(gerritSecrets, v...)
		}
	}
	if pc.SubscriberToken.IsSet() {
		v, err := secretValues("subscriber", pc.SubscriberToken)
		if err != nil {
			return fmt.Errorf("pubsubhelper subscriber_token: %w", err)
		}
		subTokens = append(subTokens, v...)
	}
	for _, f := range []struct {
		refs   []string
		server string
		out    *[]pubsubhelper.Secret
	}{{ghFlags, "github", &ghSecrets}, {gerritFlags, "gerrit", &gerritSecrets}, {subFlags, "subscriber", &subTokens}} {
		for _, ref := range f.refs {
			sec, err := parseSecretRef(ref)
			if err != nil {
				fmt.Fprintf(a.stderr, "tryd pubsubhelper: %s secret flag: %v\n", f.server, err)
				return errUsage
			}
			v, err := secretValues(f.server, sec)
			if err != nil {
				return fmt.Errorf("%s secret flag: %w", f.server, err)
			}
			*f.out = append(*f.out, v...)
		}
	}
	log := logging.For(a.log, "pubsubhelper")
	if len(ghSecrets) == 0 {
		log.Warn("no GitHub webhook secret configured: /github-webhook answers 404")
	}
	if len(gerritSecrets) == 0 {
		log.Warn("no Gerrit webhook secret configured: /gerrit-webhook answers 404")
	}
	// Subscribers see every event (repositories, branches, who did
	// what): off loopback only with a token.
	openSubscribers := false
	if len(subTokens) == 0 {
		if !loopbackListen(*listen) {
			return fmt.Errorf("pubsubhelper: /waitevent and /recent would be open to anyone on %s: set pubsubhelper.subscriber_token (or --subscriber-token), which maintnerd and gitmirror send", *listen)
		}
		openSubscribers = true
		log.WithField("listen", *listen).Warn("no subscriber token configured: /waitevent and /recent are open to local processes (no raw payloads)")
	}

	reg := httpserver.NewRegistry()
	jopts := journal.Options{RetentionAge: *retentionAge, RetentionBytes: *retentionBytes, Log: log, Registry: reg}
	if !*noJournal {
		dir := *journalDir
		if dir == "" {
			var err error
			if dir, err = a.subdir("pubsubhelper"); err != nil {
				return err
			}
		}
		jopts.Dir = dir
	} else {
		log.Warn("--no-journal: events are kept in memory only and lost on exit")
	}
	j, err := journal.Open(jopts)
	if err != nil {
		return err
	}
	defer j.Close()
	st := j.Stats()
	log.WithField("journal", jopts.Dir).WithField("events", st.Events).WithField("last_seq", st.LastSeq).Info("journal open")
	srv, err := pubsubhelper.New(pubsubhelper.Options{
		Journal:          j,
		GitHubSecrets:    ghSecrets,
		GerritSecrets:    gerritSecrets,
		SubscriberTokens: subTokens,
		OpenSubscribers:  openSubscribers,
		MaxBodyBytes:     *maxBody,
		LongPollTimeout:  *longPoll,
		Log:              log,
		Registry:         reg,
	})
	if err != nil {
		return err
	}
	hs, err := httpserver.New(httpserver.Options{Addr: *listen, Handler: srv.Handler(), Component: "pubsubhelper", Log: a.log, Registry: reg, Health: srv.Health})
	if err != nil {
		return err
	}
	if *sshAddr != "" {
		opts, err := sshStreamOptions(*sshAddr, *sshUser, *sshKey, *sshKnownHosts, *sshServer)
		if err != nil {
			return fmt.Errorf("--gerrit-ssh: %w", err)
		}
		opts.Journal, opts.Log = j, log
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { sshstream.Run(sctx, opts); close(done) }()
		// Stop the stream before the journal closes.
		defer func() { cancel(); <-done }()
	}
	// Serve returns after in-flight deliveries finished; the deferred
	// Close then flushes the journal.
	return hs.Serve(ctx)
}

// sshStreamOptions reads the key and known_hosts files for --gerrit-ssh.
func sshStreamOptions(addr, user, keyFile, knownHostsFile, server string) (sshstream.Options, error) {
	if user == "" || keyFile == "" {
		return sshstream.Options{}, fmt.Errorf("needs --gerrit-ssh-user and --gerrit-ssh-key")
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return sshstream.Options{}, err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return sshstream.Options{}, fmt.Errorf("parse %s: %w", keyFile, err)
	}
	if knownHostsFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return sshstream.Options{}, err
		}
		knownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	hostKeys, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return sshstream.Options{}, fmt.Errorf("known hosts: %w", err)
	}
	return sshstream.Options{Addr: addr, User: user, Signer: signer, HostKeyCallback: hostKeys, Server: server}, nil
}

// pubsubhelperToken returns the subscriber token a client of
// pubsubhelper (maintnerd, gitmirror) sends: the secret of ref (a
// --pubsubhelper-token flag, file:/path or env:NAME) when given, else
// pubsubhelper.subscriber_token; the first non-empty line of either,
// since the server accepts every line (rotation); "" when neither is set.
func pubsubhelperToken(ref string, cfg *config.Config) (string, error) {
	sec := cfg.Pubsubhelper.SubscriberToken
	if ref != "" {
		var err error
		if sec, err = parseSecretRef(ref); err != nil {
			return "", fmt.Errorf("--pubsubhelper-token: %w", err)
		}
	}
	if !sec.IsSet() {
		return "", nil
	}
	v, err := secretValues("subscriber", sec)
	if err != nil {
		return "", fmt.Errorf("pubsubhelper subscriber token: %w", err)
	}
	if len(v) == 0 {
		return "", fmt.Errorf("pubsubhelper subscriber token %s is empty", sec)
	}
	return string(v[0].Value), nil
}

// bearerTransport adds "Authorization: Bearer token" to every request.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

// secretRefFlags collects repeated secret-reference flags.
type secretRefFlags []string

func (f *secretRefFlags) String() string     { return strings.Join(*f, " ") }
func (f *secretRefFlags) Set(s string) error { *f = append(*f, s); return nil }

// parseSecretRef parses a secret reference given on the command line.
func parseSecretRef(ref string) (config.Secret, error) {
	kind, v, ok := strings.Cut(ref, ":")
	switch {
	case ok && kind == "file" && v != "":
		return config.FileSecret(v), nil
	case ok && kind == "env" && v != "":
		return config.EnvSecret(v), nil
	}
	return config.Secret{}, fmt.Errorf("want a reference file:/path or env:NAME, not a literal secret")
}

// secretValues reads a secret; each non-empty line is one accepted
// secret, so that a file can hold the old and the new during rotation.
func secretValues(server string, s config.Secret) ([]pubsubhelper.Secret, error) {
	v, err := s.Value()
	if err != nil {
		return nil, err
	}
	var out []pubsubhelper.Secret
	for _, line := range strings.Split(v, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, pubsubhelper.Secret{Server: server, Value: []byte(line)})
		}
	}
	return out, nil
}
