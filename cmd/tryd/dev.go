package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// tryd dev runs every component in this process by calling the same run
// functions as the subcommands ("tryd maintnerd", "tryd trybot", ...),
// each with its own flags, listening on its own loopback port and talking
// to the others over HTTP. One process and many machines therefore run
// exactly the same code, configured the same way; dev only chooses the
// ports, generates the tokens and passes the URLs around.
//
// Files under <data-dir>/dev:
//
//	ports.json            the port of each component, reused by later runs
//	                      so that URLs (and the corpus's Gerrit names,
//	                      which contain the server's host:port) stay put
//	worker-tokens         "name token" lines for the coordinator (0600)
//	worker-token          the embedded worker's token (0600)
//	client-token          the coordinator's client token (0600)
//	admin-token           the dashboard's and postsubmit's admin token (0600)
//	gitmirror-token       the token gitmirror requires of the trybot,
//	                      postsubmit and the worker (0600), unless the
//	                      config sets gitmirror.token or gitmirror.tokens
//	maintnerd-api-token   the token maintnerd's query API requires of the
//	                      dashboard (0600), unless the config sets
//	                      maintnerd.api_token or maintnerd.public_api
//	trybot-api-token      the token the trybot's try run API requires of
//	                      the dashboard (0600), unless the config sets
//	                      trybot.api_token or trybot.public_api
//	pubsubhelper-token    the token pubsubhelper's subscriber endpoints
//	                      require of maintnerd and gitmirror (0600),
//	                      unless the config sets pubsubhelper.subscriber_token
//	tryd.yaml             demo mode only: the generated configuration
//	gerrit/, github/ ...  demo mode only: the simulators' state (dev_demo.go)

func runDev(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("dev", "[flags]", `Dev runs every component in one process (pubsubhelper, maintnerd,
gitmirror, coordinator, one worker, trybot, postsubmit, dashboard), each on its own
127.0.0.1 port and talking to the others over HTTP, with embedded defaults
under the data directory: a disk mutation log, SQLite, the gitmirror cache,
one worker with one slot per CPU, tokens generated into <data-dir>/dev.

With no review server configured (no gerrit: or github: in tryd.yaml) it
runs a demo: a Gerrit simulator and a GitHub simulator serving a small Go
module, a change (and a pull request) that passes and one that fails,
voted Run-TryBot+1 (labelled run-trybot) automatically, webhooks flowing to
pubsubhelper. It prints the URLs to watch and each TryBot-Result as it is
posted. A second run reuses the data directory.

With a tryd.yaml naming real Gerrit or GitHub servers, repos and builders,
it runs tryd for real on this machine; the listen: addresses of the config
are used where set (pubsubhelper's must be reachable by the webhooks).

Ctrl-C stops every component, in dependency order.`)
	host := fs.String("host", "127.0.0.1", "address components listen on when the config sets no listen: address")
	noGitHub := fs.Bool("demo-no-github", false, "demo mode: run only the Gerrit half of the demo")
	trybotListen := fs.String("trybot-listen", "", "address the trybot listens on (default: a loopback port); set it when a GitHub App's webhook must reach /github-app-webhook")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	stderr := &syncWriter{w: a.stderr}
	a.stderr = stderr
	a.log.SetOutput(stderr)
	devDir, err := a.subdir("dev")
	if err != nil {
		return err
	}
	d := &dev{a: a, dir: devDir, host: *host, stderr: stderr, trybotListen: *trybotListen}
	d.logArgs = devLogArgs(cf, a)
	if lvl, err := logrus.ParseLevel(d.logArgs[1]); err == nil {
		a.log.SetLevel(lvl) // the simulators log with dev's logger
	}
	if err := d.loadPorts(); err != nil {
		return err
	}

	// Every address is chosen first: the demo's configuration and
	// simulators need the components' URLs before they start.
	for _, name := range d.components() {
		if _, err := d.addr(name); err != nil {
			return err
		}
	}
	demoMode := len(a.cfg.Gerrit) == 0 && len(a.cfg.GitHub) == 0
	var dm *demo
	if demoMode {
		fmt.Fprintf(a.stdout, "tryd dev: no review server configured: running the demo (data in %s)\n", a.dataDir)
		dm, err = startDemo(ctx, d, !*noGitHub)
		if err != nil {
			return fmt.Errorf("dev: demo: %w", err)
		}
		defer dm.Close()
		d.configPath = dm.configPath
	} else {
		d.configPath = cf.config
		if d.configPath == "" {
			d.configPath = "tryd.yaml"
		}
		if abs, err := filepath.Abs(d.configPath); err == nil {
			d.configPath = abs
		}
		if len(a.cfg.Repos) == 0 {
			return errors.New("dev: the config names review servers but no repos")
		}
		if len(a.cfg.Builders) == 0 {
			a.log.Warn("dev: no builders configured: try runs will have nothing to build")
		}
	}

	if err := d.writeTokens(); err != nil {
		return err
	}
	if err := d.start(ctx, dm); err != nil {
		d.stop()
		if ctx.Err() != nil { // Ctrl-C during startup is a clean stop
			fmt.Fprintln(a.stdout, "tryd dev: stopped")
			return nil
		}
		return err
	}
	if err := d.savePorts(); err != nil {
		a.log.WithError(err).Warn("dev: cannot save the ports for the next run")
	}
	d.printURLs(dm)
	if dm != nil {
		if err := dm.seed(ctx, d); err != nil {
			d.stop()
			if ctx.Err() != nil {
				fmt.Fprintln(a.stdout, "tryd dev: stopped")
				return nil
			}
			return fmt.Errorf("dev: demo: %w", err)
		}
		dm.watch(ctx, d)
	}

	// Run until interrupted or until a component stops on its own.
	var failed *devProc
	select {
	case <-ctx.Done():
		// A second Ctrl-C kills the process the default way, for when
		// a component hangs while stopping.
		signal.Reset(os.Interrupt)
		fmt.Fprintln(a.stdout, "tryd dev: stopping (Ctrl-C again to force)")
	case failed = <-d.exited:
	}
	if dm != nil {
		dm.stopWatch()
	}
	errs := d.stop()
	if failed != nil {
		if failed.err == nil {
			failed.err = errors.New("stopped unexpectedly")
		}
		return fmt.Errorf("dev: %s: %w", failed.name, failed.err)
	}
	fmt.Fprintln(a.stdout, "tryd dev: stopped")
	return errors.Join(errs...)
}

// dev is a running tryd dev: its components in start order.
type dev struct {
	a          *app
	dir        string // <data-dir>/dev
	host       string
	stderr     io.Writer
	logArgs    []string
	configPath string
	// trybotListen is --trybot-listen: the trybot has no listen: key in
	// the config.
	trybotListen string

	ports  map[string]string // component → host:port, persisted
	listen map[string]string // component → listen address this run
	urls   map[string]string // component → base URL

	procs  []*devProc
	exited chan *devProc
}

// devProc is one component running in a goroutine.
type devProc struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid after done is closed
}

// devLogArgs passes the log settings given to dev on to every component.
// Components log at warn unless told otherwise, so that the URLs and the
// demo's progress stay readable.
func devLogArgs(cf *commonFlags, a *app) []string {
	format, level := cf.logFormat, cf.logLevel
	if format == "" {
		format = a.cfg.Log.Format
	}
	if level == "" {
		level = a.cfg.Log.Level
	}
	if level == "" {
		level = "warn"
	}
	out := []string{"--log-level", level}
	if format != "" {
		out = append(out, "--log-format", format)
	}
	return out
}

// syncWriter serializes writes of the components' loggers, which share
// dev's stderr.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// devComponentNames lists the components in dependency order: each may need
// the ones before it. Shutdown goes the other way.
var devComponentNames = []string{"pubsubhelper", "maintnerd", "gitmirror", "coordinator", "worker", "trybot", "postsubmit", "dashboard"}

// components returns the names of the components dev runs, in start
// order.
func (d *dev) components() []string {
	var out []string
	for _, name := range devComponentNames {
		if name == "dashboard" && !dashboardBuilt() {
			continue
		}
		out = append(out, name)
	}
	return out
}

// listenOf returns the listen address the config sets for a component.
func (d *dev) listenOf(name string) string {
	c := d.a.cfg
	switch name {
	case "pubsubhelper":
		return c.Pubsubhelper.Listen
	case "maintnerd":
		return c.Maintnerd.Listen
	case "gitmirror":
		return c.Gitmirror.Listen
	case "coordinator":
		return c.Coordinator.Listen
	case "dashboard":
		return c.Dashboard.Listen
	case "trybot":
		return d.trybotListen
	}
	return ""
}

func (d *dev) portsFile() string { return filepath.Join(d.dir, "ports.json") }

func (d *dev) loadPorts() error {
	d.ports = map[string]string{}
	d.urls = map[string]string{}
	d.listen = map[string]string{}
	b, err := os.ReadFile(d.portsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := json.Unmarshal(b, &d.ports); err != nil {
		d.a.log.WithError(err).Warn("dev: ignoring a bad ports.json")
		d.ports = map[string]string{}
	}
	for k, v := range d.ports {
		if _, _, err := net.SplitHostPort(v); err != nil {
			delete(d.ports, k)
		}
	}
	return nil
}

func (d *dev) savePorts() error {
	b, err := json.MarshalIndent(d.ports, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d.portsFile(), append(b, '\n'), 0o644)
}

// addr returns the address component name listens on: the config's
// listen address, else the port it had in the last run if it is still
// free, else a free port. The choice is recorded in d.ports and the URL
// other components use in d.urls.
func (d *dev) addr(name string) (string, error) {
	if l, ok := d.listen[name]; ok {
		return l, nil
	}
	l, err := d.pickAddr(name)
	if err != nil {
		return "", err
	}
	d.listen[name] = l
	return l, nil
}

func (d *dev) pickAddr(name string) (string, error) {
	if l := d.listenOf(name); l != "" {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			return "", fmt.Errorf("dev: %s.listen %q: %w", name, l, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		d.urls[name] = "http://" + net.JoinHostPort(host, port)
		return l, nil
	}
	if prev := d.ports[name]; prev != "" {
		if ln, err := net.Listen("tcp", prev); err == nil {
			ln.Close()
			d.urls[name] = "http://" + prev
			return prev, nil
		}
		d.a.log.WithField("addr", prev).Warnf("dev: %s's address of the last run is taken; using another", name)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(d.host, "0"))
	if err != nil {
		return "", fmt.Errorf("dev: pick a port for %s: %w", name, err)
	}
	a := ln.Addr().String()
	ln.Close()
	d.ports[name] = a
	d.urls[name] = "http://" + a
	return a, nil
}

// writeTokens creates (once) the worker and client tokens, readable by
// the owner only.
func (d *dev) writeTokens() error {
	wt, ct := filepath.Join(d.dir, "worker-token"), filepath.Join(d.dir, "client-token")
	if _, err := os.Stat(wt); err != nil {
		if err := writeFileAtomic(wt, []byte(randomToken()+"\n"), 0o600); err != nil {
			return fmt.Errorf("dev: worker token: %w", err)
		}
	}
	if _, err := os.Stat(ct); err != nil {
		if err := writeFileAtomic(ct, []byte(randomToken()+"\n"), 0o600); err != nil {
			return fmt.Errorf("dev: client token: %w", err)
		}
	}
	if !d.a.cfg.Dashboard.AdminToken.IsSet() {
		if _, err := readOrCreateSecret(filepath.Join(d.dir, "admin-token")); err != nil {
			return fmt.Errorf("dev: admin token: %w", err)
		}
	}
	if d.gitmirrorTokenFile() != "" {
		if _, err := readOrCreateSecret(d.gitmirrorTokenFile()); err != nil {
			return fmt.Errorf("dev: gitmirror token: %w", err)
		}
	}
	if d.maintnerdTokenFile() != "" {
		if _, err := readOrCreateSecret(d.maintnerdTokenFile()); err != nil {
			return fmt.Errorf("dev: maintnerd api token: %w", err)
		}
	}
	if d.trybotTokenFile() != "" {
		if _, err := readOrCreateSecret(d.trybotTokenFile()); err != nil {
			return fmt.Errorf("dev: trybot api token: %w", err)
		}
	}
	if d.pubsubhelperTokenFile() != "" {
		if _, err := readOrCreateSecret(d.pubsubhelperTokenFile()); err != nil {
			return fmt.Errorf("dev: pubsubhelper subscriber token: %w", err)
		}
	}
	tok, err := os.ReadFile(wt)
	if err != nil {
		return fmt.Errorf("dev: worker token: %w", err)
	}
	// The coordinator's token file is rewritten every run from the
	// worker's, so that they cannot disagree.
	line := "dev-worker " + strings.TrimSpace(string(tok)) + "\n"
	if err := writeFileAtomic(filepath.Join(d.dir, "worker-tokens"), []byte(line), 0o600); err != nil {
		return fmt.Errorf("dev: worker tokens: %w", err)
	}
	return nil
}

// gitmirrorTokenFile is the token gitmirror requires, generated into
// <data-dir>/dev, or "" when the config sets gitmirror's tokens itself
// (its components then read them from there).
func (d *dev) gitmirrorTokenFile() string {
	if gc := d.a.cfg.Gitmirror; gc.Token.IsSet() || gc.Tokens.IsSet() {
		return ""
	}
	return filepath.Join(d.dir, "gitmirror-token")
}

// gitmirrorArgs gives a component flag the generated gitmirror token.
func (d *dev) gitmirrorArgs(flag string) []string {
	if f := d.gitmirrorTokenFile(); f != "" {
		return []string{flag, f}
	}
	return nil
}

// maintnerdTokenFile is the token maintnerd's query API requires,
// generated into <data-dir>/dev, or "" when the config sets
// maintnerd.api_token (its components then read it from there) or makes
// the API public.
func (d *dev) maintnerdTokenFile() string {
	if mc := d.a.cfg.Maintnerd; mc.APIToken.IsSet() || mc.PublicAPI {
		return ""
	}
	return filepath.Join(d.dir, "maintnerd-api-token")
}

// trybotTokenFile is the token the trybot's try run API requires,
// generated into <data-dir>/dev, or "" when the config sets
// trybot.api_token (the dashboard then reads it from there) or makes the
// API public. dev uses one even on loopback: --trybot-listen may put the
// trybot where a GitHub App's webhook reaches it.
func (d *dev) trybotTokenFile() string {
	if tc := d.a.cfg.Trybot; tc.APIToken.IsSet() || tc.PublicAPI {
		return ""
	}
	return filepath.Join(d.dir, "trybot-api-token")
}

// pubsubhelperTokenFile is the subscriber token pubsubhelper requires,
// generated into <data-dir>/dev, or "" when the config sets
// pubsubhelper.subscriber_token (its components then read it from
// there). dev always uses one: its pubsubhelper may listen where the
// review server's webhooks reach it.
func (d *dev) pubsubhelperTokenFile() string {
	if d.a.cfg.Pubsubhelper.SubscriberToken.IsSet() {
		return ""
	}
	return filepath.Join(d.dir, "pubsubhelper-token")
}

// pubsubhelperArgs gives a component flag the generated subscriber
// token, as a secret reference.
func (d *dev) pubsubhelperArgs(flag string) []string {
	if f := d.pubsubhelperTokenFile(); f != "" {
		return []string{flag, "file:" + f}
	}
	return nil
}

// maintnerdArgs gives a component flag the generated query API token.
func (d *dev) maintnerdArgs(flag string) []string {
	return fileFlag(flag, d.maintnerdTokenFile())
}

// fileFlag is flag with a generated token file, or nothing when there is
// none (file is "": the config names the secret).
func fileFlag(flag, file string) []string {
	if file == "" {
		return nil
	}
	return []string{flag, file}
}

// adminArgs gives the dashboard and postsubmit the admin token that
// allows force builds: dashboard.admin_token from the config, else one
// generated into <data-dir>/dev/admin-token.
func (d *dev) adminArgs() []string {
	if d.a.cfg.Dashboard.AdminToken.IsSet() {
		return nil
	}
	return []string{"--admin-token-file", filepath.Join(d.dir, "admin-token")}
}

// start starts every component in dependency order, each after the one
// before answers /healthz.
func (d *dev) start(ctx context.Context, dm *demo) error {
	d.exited = make(chan *devProc, len(devComponentNames))
	common := append([]string{"--config", d.configPath, "--data-dir", d.a.dataDir}, d.logArgs...)
	for _, name := range d.components() {
		addr, err := d.addr(name)
		if err != nil {
			return err
		}
		args := append(append([]string{}, common...), "--listen", addr)
		var run func(context.Context, *app, []string) error
		switch name {
		case "pubsubhelper":
			run = runPubsubhelper
			args = append(args, d.pubsubhelperArgs("--subscriber-token")...)
		case "maintnerd":
			run = runMaintnerd
			args = append(args, "--pubsubhelper", d.urls["pubsubhelper"])
			args = append(args, d.pubsubhelperArgs("--pubsubhelper-token")...)
			args = append(args, d.maintnerdArgs("--api-token-file")...)
		case "gitmirror":
			run = runGitmirror
			args = append(args, "--pubsubhelper", d.urls["pubsubhelper"])
			args = append(args, d.pubsubhelperArgs("--pubsubhelper-token")...)
			args = append(args, d.gitmirrorArgs("--tokens-file")...)
		case "coordinator":
			run = runCoordinator
			args = append(args, "--worker-tokens", filepath.Join(d.dir, "worker-tokens"),
				"--client-token-file", filepath.Join(d.dir, "client-token"))
		case "worker":
			run = runWorker
			args = append(args, "--coordinator", d.urls["coordinator"], "--token-file", filepath.Join(d.dir, "worker-token"), "--name", "dev-worker",
				"--gitmirror", d.urls["gitmirror"])
			args = append(args, d.gitmirrorArgs("--gitmirror-token-file")...)
		case "trybot":
			run = runTrybot
			args = append(args, "--maintnerd", d.urls["maintnerd"], "--coordinator", d.urls["coordinator"],
				"--coordinator-token-file", filepath.Join(d.dir, "client-token"), "--gitmirror", d.urls["gitmirror"])
			args = append(args, d.gitmirrorArgs("--gitmirror-token-file")...)
			args = append(args, fileFlag("--api-token-file", d.trybotTokenFile())...)
		case "postsubmit":
			run = runPostsubmit
			args = append(args, "--maintnerd", d.urls["maintnerd"], "--coordinator", d.urls["coordinator"],
				"--coordinator-token-file", filepath.Join(d.dir, "client-token"), "--gitmirror", d.urls["gitmirror"])
			args = append(args, d.gitmirrorArgs("--gitmirror-token-file")...)
			args = append(args, d.adminArgs()...)
		case "dashboard":
			run = runDashboard
			args = append(args, dashboardArgs(d)...)
			args = append(args, d.maintnerdArgs("--maintnerd-token-file")...)
			args = append(args, fileFlag("--trybot-token-file", d.trybotTokenFile())...)
			args = append(args, d.adminArgs()...)
		}
		p := d.spawn(name, run, args)
		if err := d.waitHealthy(ctx, p, d.urls[name]); err != nil {
			return err
		}
		if dm != nil && name == "pubsubhelper" {
			// Webhooks go to pubsubhelper from now on.
			if err := dm.hookUp(ctx, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// spawn runs one component in a goroutine with its own app, so that it
// parses its own flags exactly as its subcommand does.
func (d *dev) spawn(name string, run func(context.Context, *app, []string) error, args []string) *devProc {
	ctx, cancel := context.WithCancel(context.Background())
	p := &devProc{name: name, cancel: cancel, done: make(chan struct{})}
	sub := &app{stdout: d.stderr, stderr: d.stderr}
	go func() {
		p.err = run(ctx, sub, args)
		close(p.done)
		if ctx.Err() == nil {
			d.exited <- p
		}
	}()
	d.procs = append(d.procs, p)
	return p
}

// waitHealthy waits until url/healthz answers 200, the component exits
// or ctx ends.
func (d *dev) waitHealthy(ctx context.Context, p *devProc, url string) error {
	deadline := time.Now().Add(2 * time.Minute)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			if p.err == nil {
				p.err = errors.New("exited during startup")
			}
			return fmt.Errorf("dev: %s: %w", p.name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("dev: interrupted while %s was starting", p.name)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dev: %s not healthy at %s after 2m", p.name, url)
		}
	}
}

// stop stops the components in reverse start order, each fully before
// the next, and returns their errors.
func (d *dev) stop() []error {
	var errs []error
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		p.cancel()
		select {
		case <-p.done:
		case <-time.After(45 * time.Second):
			errs = append(errs, fmt.Errorf("dev: %s did not stop within 45s", p.name))
			continue
		}
		if p.err != nil && !errors.Is(p.err, context.Canceled) {
			errs = append(errs, fmt.Errorf("dev: %s: %w", p.name, p.err))
		}
	}
	d.procs = nil
	return errs
}

// printURLs tells the user where to look.
func (d *dev) printURLs(dm *demo) {
	w := d.a.stdout
	fmt.Fprintf(w, "\ntryd dev is running (Ctrl-C stops it):\n\n")
	if u, ok := d.urls["dashboard"]; ok {
		fmt.Fprintf(w, "  dashboard        %s/\n", u)
		if !d.a.cfg.Dashboard.AdminToken.IsSet() {
			fmt.Fprintf(w, "                   (to force builds, sign in at %s/login with the token in %s)\n", u, filepath.Join(d.dir, "admin-token"))
		}
	}
	fmt.Fprintf(w, "  try runs (JSON)  %s/api/runs\n", d.urls["trybot"])
	if f := d.trybotTokenFile(); f != "" {
		fmt.Fprintf(w, "                   (send the token in %s as \"Authorization: Bearer TOKEN\")\n", f)
	}
	fmt.Fprintf(w, "  corpus API       %s/api/stats  (log: %s/logs)\n", d.urls["maintnerd"], d.urls["maintnerd"])
	if f := d.maintnerdTokenFile(); f != "" {
		fmt.Fprintf(w, "                   (send the token in %s as \"Authorization: Bearer TOKEN\", or: tryd corpus ls --server %s --token-file %s repos)\n", f, d.urls["maintnerd"], f)
	}
	fmt.Fprintf(w, "  pubsubhelper     %s/recent  (webhooks: /gerrit-webhook, /github-webhook)\n", d.urls["pubsubhelper"])
	fmt.Fprintf(w, "  gitmirror        %s/debug\n", d.urls["gitmirror"])
	if f := d.gitmirrorTokenFile(); f != "" {
		fmt.Fprintf(w, "                   (send the token in %s as \"Authorization: Bearer TOKEN\")\n", f)
	}
	fmt.Fprintf(w, "  coordinator      %s/\n", d.urls["coordinator"])
	if dm != nil {
		dm.printURLs(w)
	}
	fmt.Fprintln(w)
}

func randomToken() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported systems
	}
	return hex.EncodeToString(b)
}

// writeFileAtomic writes a file through a temporary file and a rename,
// so that a crash never leaves half a token or config behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
