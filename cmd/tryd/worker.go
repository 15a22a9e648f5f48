package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/worker"
)

// kvFlags collects repeated "key=value" flags.
type kvFlags map[string]string

func (f kvFlags) String() string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k+"="+f[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// Set accepts "k=v" or several separated by commas (so that the
// TRYD_LABEL environment variable can carry more than one).
func (f kvFlags) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", kv)
		}
		f[k] = v
	}
	return nil
}

// listFlags collects repeated string flags.
type listFlags []string

func (f *listFlags) String() string     { return strings.Join(*f, " ") }
func (f *listFlags) Set(s string) error { *f = append(*f, s); return nil }

func runWorker(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("worker", "--coordinator URL --token-file F [flags]", `Worker dials a coordinator (it may sit behind NAT), authenticates with its
token, announces its labels (os and arch are added) and slots, and runs the
jobs it is given, each in its own process group, streaming logs and
uploading outputs. It reconnects with backoff when the coordinator is
unreachable. On SIGTERM it stops taking work, lets running jobs finish for
--drain, gives back the rest and exits.`)
	coordURL := fs.String("coordinator", "", "coordinator base URL (default: worker.coordinator from the config)")
	tokenFile := fs.String("token-file", "", "file holding this worker's token (default: worker.token from the config)")
	slots := fs.Int("slots", 0, "jobs run at once (default: worker.slots from the config, else the number of CPUs)")
	labels := kvFlags{}
	fs.Var(labels, "label", "worker label key=value (repeatable; added to worker.labels from the config)")
	name := fs.String("name", "", "worker name to register (default: the token's name)")
	dir := fs.String("dir", "", "working directory for jobs, clones and the artifact cache (default: <data-dir>/worker)")
	cacheMB := fs.Int64("cache-mb", 10240, "size bound of the local artifact cache in MiB")
	drain := fs.Duration("drain", 0, "on shutdown, how long running jobs may finish before they are given back (default 10s)")
	listen := fs.String("listen", "", "address to serve /healthz and /metrics on (default: none)")
	gmURL := fs.String("gitmirror", "", "gitmirror URL whose repositories get the gitmirror token (default: gitmirror.url from the config)")
	gmTokenFile := fs.String("gitmirror-token-file", "", "file holding the token gitmirror requires (default: gitmirror.token from the config)")
	var env listFlags
	fs.Var(&env, "env", "KEY=VALUE added to every job's base environment (repeatable)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	wc := a.cfg.Worker
	if *coordURL == "" {
		*coordURL = wc.Coordinator
	}
	if *coordURL == "" {
		fmt.Fprintln(a.stderr, "tryd worker: --coordinator (or worker.coordinator in the config) is required")
		return errUsage
	}
	secret := wc.Token
	if *tokenFile != "" {
		secret = config.FileSecret(*tokenFile)
	}
	if !secret.IsSet() {
		fmt.Fprintln(a.stderr, "tryd worker: --token-file (or worker.token in the config) is required")
		return errUsage
	}
	token, err := secret.Value()
	if err != nil {
		return fmt.Errorf("worker token: %w", err)
	}
	if *slots == 0 {
		*slots = wc.Slots
	}
	all := map[string]string{}
	for k, v := range wc.Labels {
		all[k] = v
	}
	for k, v := range labels {
		all[k] = v
	}
	if *dir == "" {
		if *dir, err = a.subdir("worker"); err != nil {
			return err
		}
	}
	if abs, err := filepath.Abs(*dir); err == nil {
		*dir = abs
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}
	client, err := api.NewClient(*coordURL, token, nil)
	if err != nil {
		return err
	}
	log := logging.For(a.log, "worker")
	reg := httpserver.NewRegistry()
	opts := worker.Options{
		Client: client, Dir: *dir, Name: *name, Labels: all, Slots: *slots,
		Version: versionString(), CacheBytes: *cacheMB << 20, DrainTimeout: *drain,
		Log: log, Registry: reg,
	}
	// Jobs find this very binary as "tryd" on their PATH (a Go
	// builder's planner job runs "tryd goplan").
	binDir, err := selfOnPath(*dir)
	if err != nil {
		return err
	}
	opts.BaseEnv = append(withPath(defaultBaseEnv(), binDir), env...)
	if opts.SourceCredentials, err = workerSourceCredentials(*gmURL, *gmTokenFile, a.cfg); err != nil {
		return err
	}
	w, err := worker.New(opts)
	if err != nil {
		return err
	}
	defer w.Close()
	if *listen != "" {
		srv, err := httpserver.New(httpserver.Options{Addr: *listen, Handler: http.NotFoundHandler(), Component: "worker", Log: a.log, Registry: reg})
		if err != nil {
			return err
		}
		if err := srv.Listen(); err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		go srv.Serve(sctx)
		log.WithField("url", srv.URL()).Info("serving /healthz and /metrics")
	}
	err = w.Run(ctx)
	if errors.Is(err, api.ErrUnauthorized) {
		return fmt.Errorf("the coordinator refused this worker's token: %w", err)
	}
	return err
}

// workerSourceCredentials gives the gitmirror token, when one is
// configured, to git fetches of the repositories under gitmirror's URL
// (and to nothing else).
func workerSourceCredentials(gmURL, tokenFile string, cfg *config.Config) ([]gitexec.Credential, error) {
	token, err := gitmirrorClientToken(tokenFile, cfg)
	if err != nil || token == "" {
		return nil, err
	}
	if gmURL == "" {
		gmURL = cfg.Gitmirror.URL
	}
	if gmURL == "" {
		return nil, errors.New("worker: a gitmirror token is configured but no gitmirror URL to send it to (--gitmirror or gitmirror.url)")
	}
	return []gitexec.Credential{{URLPrefix: strings.TrimSuffix(gmURL, "/") + "/", Token: token}}, nil
}

// defaultBaseEnv is the worker's default job environment (see
// worker.Options.BaseEnv), extended by --env.
func defaultBaseEnv() []string {
	var env []string
	// The Go caches' locations, when set, so that Go jobs share the
	// worker's warm caches (they live outside job directories).
	for _, k := range []string{"PATH", "HOME", "GOCACHE", "GOMODCACHE", "GOPATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// selfOnPath makes dir/bin/tryd a symlink to the running executable and
// returns dir/bin, which the worker puts first on its jobs' PATH.
func selfOnPath(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("worker: own executable: %w", err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("worker: %w", err)
	}
	link := filepath.Join(bin, "tryd")
	if cur, err := os.Readlink(link); err == nil && cur == exe {
		return bin, nil
	}
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(exe, tmp); err != nil {
		return "", fmt.Errorf("worker: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return "", fmt.Errorf("worker: %w", err)
	}
	return bin, nil
}

// withPath returns env with dir first on its PATH.
func withPath(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			e, found = "PATH="+dir+string(os.PathListSeparator)+v, true
		}
		out = append(out, e)
	}
	if !found {
		out = append(out, "PATH="+dir)
	}
	return out
}
