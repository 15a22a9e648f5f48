package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/logging"
)

// newTestDev returns a dev on a fresh data directory, as runDev sets it
// up before starting anything.
func newTestDev(t *testing.T, dataDir string, cfg *config.Config) *dev {
	t.Helper()
	log, err := logging.New(logging.Options{Output: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, cfg: cfg, dataDir: dataDir, log: log}
	dir, err := a.subdir("dev")
	if err != nil {
		t.Fatal(err)
	}
	d := &dev{a: a, dir: dir, host: "127.0.0.1", stderr: a.stderr}
	if err := d.loadPorts(); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDevPortsPersist checks that a second run listens where the first
// did (so URLs and the corpus's Gerrit names stay put), that a taken port
// is replaced, and that the config's listen address wins.
func TestDevPortsPersist(t *testing.T) {
	data := t.TempDir()
	d := newTestDev(t, data, &config.Config{})
	first := map[string]string{}
	for _, name := range []string{"maintnerd", "trybot", "gerritsim"} {
		a, err := d.addr(name)
		if err != nil {
			t.Fatal(err)
		}
		first[name] = a
		if d.urls[name] != "http://"+a {
			t.Errorf("%s: url %q for address %q", name, d.urls[name], a)
		}
	}
	if err := d.savePorts(); err != nil {
		t.Fatal(err)
	}

	// Occupy trybot's port: the next run must pick another.
	ln, err := net.Listen("tcp", first["trybot"])
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := &config.Config{Coordinator: config.Coordinator{Endpoint: config.Endpoint{Listen: ":18484"}}}
	d2 := newTestDev(t, data, cfg)
	for _, tc := range []struct {
		name string
		want func(got string) bool
	}{
		{"maintnerd", func(got string) bool { return got == first["maintnerd"] }},
		{"gerritsim", func(got string) bool { return got == first["gerritsim"] }},
		{"trybot", func(got string) bool { return got != first["trybot"] && got != "" }},
		{"coordinator", func(got string) bool { return got == ":18484" }},
	} {
		got, err := d2.addr(tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !tc.want(got) {
			t.Errorf("%s: second run listens on %q (first run: %q)", tc.name, got, first[tc.name])
		}
	}
	if got := d2.urls["coordinator"]; got != "http://127.0.0.1:18484" {
		t.Errorf("coordinator url for listen :18484 = %q", got)
	}

	// A damaged ports.json is ignored, not fatal.
	os.WriteFile(d.portsFile(), []byte("{not json"), 0o644)
	if d3 := newTestDev(t, data, &config.Config{}); len(d3.ports) != 0 {
		t.Errorf("bad ports.json loaded as %v", d3.ports)
	}
}

// TestDevTokens checks that the tokens are created once, readable only by
// the owner, and that the coordinator's token file matches the worker's.
func TestDevTokens(t *testing.T) {
	d := newTestDev(t, t.TempDir(), &config.Config{})
	if err := d.writeTokens(); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		t.Helper()
		p := filepath.Join(d.dir, name)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %o, want 600", name, perm)
		}
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}
	wt, ct := read("worker-token"), read("client-token")
	if len(wt) < 32 || len(ct) < 32 || wt == ct {
		t.Errorf("weak or equal tokens: %q %q", wt, ct)
	}
	if got := read("worker-tokens"); got != "dev-worker "+wt {
		t.Errorf("worker-tokens = %q, want the worker's token", got)
	}
	tt := read("trybot-api-token")
	if len(tt) < 32 || tt == ct {
		t.Errorf("weak or reused trybot API token: %q", tt)
	}
	if err := d.writeTokens(); err != nil {
		t.Fatal(err)
	}
	if read("worker-token") != wt || read("client-token") != ct || read("trybot-api-token") != tt {
		t.Error("a second run changed the tokens")
	}
	// A configured trybot.api_token (or a public API) is the config's
	// business: dev generates none.
	for _, tc := range []config.Trybot{{APIToken: config.FileSecret("/etc/tryd/trybot-api-token")}, {PublicAPI: true}} {
		d := newTestDev(t, t.TempDir(), &config.Config{Trybot: tc})
		if f := d.trybotTokenFile(); f != "" {
			t.Errorf("with %+v: dev generates %s", tc, f)
		}
	}
}

// TestDemoConfigParses checks that the demo's generated tryd.yaml is a
// valid configuration naming the simulator, the sample repository, a
// builder for this machine and every component's URL.
func TestDemoConfigParses(t *testing.T) {
	d := newTestDev(t, t.TempDir(), &config.Config{})
	for _, name := range devComponentNames {
		if _, err := d.addr(name); err != nil {
			t.Fatal(err)
		}
	}
	sim, err := gerritsim.New(gerritsim.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sim.SetURL("http://127.0.0.1:1234/")
	dm := &demo{dir: d.dir, gerrit: sim}
	text := dm.config(d)
	cfg, err := config.Parse("demo.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(cfg.Gerrit) != 1 || cfg.Gerrit[0].URL != "http://127.0.0.1:1234/" || cfg.Gerrit[0].User != demoBotUser {
		t.Errorf("gerrit = %+v", cfg.Gerrit)
	}
	if got := cfg.Gerrit[0].Password.String(); got != "file:"+filepath.Join(d.dir, "gerrit-bot-password") {
		t.Errorf("bot password reference = %q", got)
	}
	if len(cfg.Repos) != 1 || cfg.Repos[0].Project != demoProject {
		t.Errorf("repos = %+v", cfg.Repos)
	}
	if len(cfg.Builders) != 1 || cfg.Builders[0].Planner != "go" || cfg.Builders[0].Labels["os"] == "" {
		t.Errorf("builders = %+v", cfg.Builders)
	}
	if cfg.Maintnerd.URL != d.urls["maintnerd"] || cfg.Coordinator.URL != d.urls["coordinator"] || cfg.Trybot.PublicURL == "" {
		t.Errorf("component URLs not in the config:\n%s", text)
	}
}

func TestDemoFirstLine(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"gerrit header", "Patch Set 1: TryBot-Result+1\n\nTryBots are happy. (try run #1)\nmore", "TryBots are happy. (try run #1)"},
		{"no header", "Just this\nand that", "Just this"},
		{"header only", "Patch Set 2: TryBot-Result-1", "Patch Set 2: TryBot-Result-1"},
		{"empty", "", ""},
	} {
		if got := firstLine(tc.in); got != tc.want {
			t.Errorf("%s: firstLine = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzDevPortsFile feeds ports.json arbitrary bytes: loading never fails
// or panics, and keeps only entries that are host:port addresses.
func FuzzDevPortsFile(f *testing.F) {
	f.Add([]byte(`{"maintnerd": "127.0.0.1:8081", "trybot": "127.0.0.1:0"}`))
	f.Add([]byte(`{"x": "not an address", "y": ":"}`))
	f.Add([]byte(`{"x": 3}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newTestDev(t, t.TempDir(), &config.Config{})
		if err := os.WriteFile(d.portsFile(), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.loadPorts(); err != nil {
			t.Fatalf("loadPorts: %v", err)
		}
		for name, a := range d.ports {
			if _, _, err := net.SplitHostPort(a); err != nil {
				t.Errorf("kept %s=%q: %v", name, a, err)
			}
		}
	})
}
