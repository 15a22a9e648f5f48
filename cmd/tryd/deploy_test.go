package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// manifest is one Kubernetes document of deploy/kubernetes, decoded as
// far as these checks need.
type manifest struct {
	file       string
	APIVersion string                `yaml:"apiVersion"`
	Kind       string                `yaml:"kind"`
	Meta       struct{ Name string } `yaml:"metadata"`
	Data       map[string]string     `yaml:"data"`
	Spec       struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	Containers []struct {
		Name         string   `yaml:"name"`
		Command      []string `yaml:"command"`
		Args         []string `yaml:"args"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var m manifest
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			m.file = filepath.Base(f)
			out = append(out, m)
		}
	}
	return out
}

// secretRefs returns every secret reference in cfg by its YAML path.
func secretRefs(cfg *config.Config) map[string]config.Secret {
	out := map[string]config.Secret{}
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		if v.Type() == reflect.TypeOf(config.Secret{}) {
			if s := v.Interface().(config.Secret); s.IsSet() {
				out[path] = s
			}
			return
		}
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(path, v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				if !f.IsExported() {
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				p := path
				if name != "" {
					p = strings.TrimPrefix(path+"."+name, ".")
				}
				walk(p, v.Field(i))
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(path+"["+strconv.Itoa(i)+"]", v.Index(i))
			}
		}
	}
	walk("", reflect.ValueOf(cfg).Elem())
	return out
}

// TestDeployExamples checks the examples under deploy/ against the code
// they configure: every manifest document is well-formed with a kind and
// an apiVersion; the tryd.yaml of the ConfigMap loads with the real
// config loader, with the shared database and artifact store (postgres,
// gcs) that the coordinator's replicas need; every server that listens
// off loopback is configured to require its tokens; every secret file it names is created by
// secrets.example.yaml's command and mounted into the pods that read it;
// and the command line of every container, and of the systemd unit,
// parses with the real flags of its subcommand.
func TestDeployExamples(t *testing.T) {
	ms := loadManifests(t)
	var cfg *config.Config
	for _, m := range ms {
		if m.Kind == "ConfigMap" && m.Data["tryd.yaml"] != "" {
			c, err := config.Parse(m.file, []byte(m.Data["tryd.yaml"]))
			if err != nil {
				t.Fatalf("the tryd.yaml of %s does not load: %v", m.file, err)
			}
			cfg = c
		}
	}
	if cfg == nil {
		t.Fatal("no ConfigMap with tryd.yaml")
	}

	t.Run("documents have kind and apiVersion", func(t *testing.T) {
		for _, m := range ms {
			if m.Kind == "" || m.APIVersion == "" {
				t.Errorf("%s: a document (name %q) has no kind or apiVersion", m.file, m.Meta.Name)
			}
		}
	})
	t.Run("coordinator replicas share postgres and gcs", func(t *testing.T) {
		// The manifests run the coordinator as replicas (see
		// coordinator/replicatest): its state and artifacts must not be
		// local to one pod.
		c := cfg.Coordinator
		if c.Database != "postgres" || !c.PostgresDSN.IsSet() || c.Artifacts != "gcs" || c.GCSBucket == "" {
			t.Errorf("coordinator config: database %q (dsn set: %v), artifacts %q, bucket %q; the manifests need postgres and gcs",
				c.Database, c.PostgresDSN.IsSet(), c.Artifacts, c.GCSBucket)
		}
	})

	t.Run("servers off loopback require tokens", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			listen string
			ok     bool
		}{
			{"maintnerd query API (maintnerd.api_token or public_api)", cfg.Maintnerd.Listen, cfg.Maintnerd.APIToken.IsSet() || cfg.Maintnerd.PublicAPI},
			{"gitmirror (gitmirror.token or tokens)", cfg.Gitmirror.Listen, cfg.Gitmirror.Token.IsSet() || cfg.Gitmirror.Tokens.IsSet()},
			{"coordinator workers (coordinator.worker_tokens)", cfg.Coordinator.Listen, cfg.Coordinator.WorkerTokens.IsSet()},
			{"coordinator clients (coordinator.client_token)", cfg.Coordinator.Listen, cfg.Coordinator.ClientToken.IsSet()},
			// The trybot's address is a flag (it has no listen: key).
			{"trybot try run API (trybot.api_token or public_api)", flagValue(t, ms, "trybot", "--listen"), cfg.Trybot.APIToken.IsSet() || cfg.Trybot.PublicAPI},
		} {
			if tc.listen != "" && !loopbackListen(tc.listen) && !tc.ok {
				t.Errorf("%s listens on %s without a token", tc.name, tc.listen)
			}
		}
		for _, g := range cfg.Gerrit {
			if !g.WebhookSecret.IsSet() {
				t.Errorf("gerrit %s: no webhook_secret", g.Name)
			}
		}
		for _, g := range cfg.GitHub {
			if !g.WebhookSecret.IsSet() {
				t.Errorf("github %s: no webhook_secret", g.Name)
			}
		}
	})

	// The secret files the command of secrets.example.yaml creates.
	created := map[string]bool{}
	ex, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "kubernetes", "secrets.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`--from-file=([A-Za-z0-9._-]+)`).FindAllSubmatch(ex, -1) {
		created[string(m[1])] = true
	}
	refs := secretRefs(cfg)
	t.Run("secrets are created", func(t *testing.T) {
		for key, s := range refs {
			kind, ref := s.Ref()
			if kind != "file" {
				continue
			}
			if dir, name := filepath.Split(ref); dir == "/etc/tryd/secrets/" && !created[name] {
				t.Errorf("%s: file %s is not created by secrets.example.yaml (--from-file=%s)", key, ref, name)
			}
		}
	})

	// Which secrets each component must be able to read (those of
	// authentication between components; review server credentials are
	// read by maintnerd, gitmirror and trybot from the same Secret).
	needs := map[string][]string{
		"maintnerd":    {"maintnerd.api_token", "pubsubhelper.subscriber_token"},
		"gitmirror":    {"gitmirror.token", "pubsubhelper.subscriber_token"},
		"pubsubhelper": {"pubsubhelper.subscriber_token"},
		"coordinator":  {"coordinator.worker_tokens", "coordinator.client_token"},
		"worker":       {"gitmirror.token"},
		"trybot":       {"coordinator.client_token", "gitmirror.token", "trybot.api_token"},
		"postsubmit":   {"coordinator.client_token", "gitmirror.token"},
		"dashboard":    {"coordinator.client_token", "maintnerd.api_token", "trybot.api_token", "dashboard.admin_token"},
	}
	seen := map[string]bool{}
	for _, m := range ms {
		for _, c := range m.Spec.Template.Spec.Containers {
			argv := containerArgv(t, c.Command, c.Args)
			if len(argv) == 0 {
				continue
			}
			seen[argv[0]] = true
			t.Run(m.file+"/"+c.Name+"/flags", func(t *testing.T) {
				checkFlags(t, argv)
			})
			t.Run(m.file+"/"+c.Name+"/secrets mounted", func(t *testing.T) {
				for _, key := range needs[argv[0]] {
					s, ok := refs[key]
					if !ok {
						continue
					}
					kind, ref := s.Ref()
					if kind != "file" {
						continue
					}
					if !podMounts(m.Spec.Template.Spec, c.VolumeMounts, ref) {
						t.Errorf("%s reads %s (%s), which is not mounted", argv[0], key, ref)
					}
				}
			})
		}
	}
	for name := range needs {
		if !seen[name] {
			t.Errorf("no manifest runs tryd %s", name)
		}
	}
	t.Run("a worker pool per trust domain", func(t *testing.T) {
		var pools []map[string]string
		for _, m := range ms {
			for _, c := range m.Spec.Template.Spec.Containers {
				argv := containerArgv(t, c.Command, c.Args)
				if len(argv) == 0 || argv[0] != "worker" {
					continue
				}
				labels := maps.Clone(cfg.Worker.Labels)
				if labels == nil {
					labels = map[string]string{}
				}
				for _, a := range argv {
					if kv, ok := strings.CutPrefix(a, "--label="); ok {
						k, v, _ := strings.Cut(kv, "=")
						labels[k] = v
					}
				}
				pools = append(pools, labels)
			}
		}
		for name, want := range map[string]map[string]string{"trybot.try_labels": cfg.Trybot.TryLabels, "trybot.postsubmit_labels": cfg.Trybot.PostSubmitLabels} {
			found := false
			for _, p := range pools {
				ok := true
				for k, v := range want {
					ok = ok && p[k] == v
				}
				found = found || ok
			}
			if !found {
				t.Errorf("no worker pool has %s %v (pools: %v)", name, want, pools)
			}
		}
	})

	t.Run("systemd unit flags", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "systemd", "tryd-worker.service"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^ExecStart=\S+ (.*)$`).FindSubmatch(data)
		if m == nil {
			t.Fatal("no ExecStart")
		}
		checkFlags(t, strings.Fields(string(m[1])))
	})
}

// containerArgv returns the tryd argument list of a container: its args
// (the image's entrypoint is tryd), or the tryd command inside a
// "/bin/sh -c" script, with $POD_NAME expanded.
func containerArgv(t *testing.T, command, args []string) []string {
	if len(command) == 0 {
		return args
	}
	if len(command) == 2 && command[1] == "-c" && len(args) == 1 {
		script := strings.NewReplacer(`"`, "", "'", "", "$POD_NAME", "worker-0").Replace(args[0])
		f := strings.Fields(script)
		if i := slices.Index(f, "tryd"); i >= 0 {
			return f[i+1:]
		}
	}
	t.Errorf("cannot read the tryd command of %q %q", command, args)
	return nil
}

// checkFlags parses argv with the real flags of its subcommand: with
// --help appended, a known command line prints help (exit 0) and an
// unknown flag or command exits 2.
func checkFlags(t *testing.T, argv []string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append(slices.Clone(argv), "--help"), &out, &errb)
	if code != 0 || strings.Contains(errb.String(), "not defined") {
		t.Errorf("tryd %s: exit %d\n%s", strings.Join(argv, " "), code, errb.String())
	}
}

// podMounts reports whether file is mounted into the container: a mount
// whose path holds it (subPath mounts: exactly), from a volume that, if
// it is a Secret with items, has the file's name among them.
func podMounts(pod podSpec, mounts []struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
}, file string) bool {
	for _, vm := range mounts {
		var rel string
		switch {
		case vm.SubPath != "":
			if vm.MountPath != file {
				continue
			}
		case strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/"):
			rel = strings.TrimPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		default:
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil || len(v.Secret.Items) == 0 || rel == "" {
				return true
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return true
				}
			}
		}
	}
	return false
}

// flagValue returns the value of flag (written --flag=value) on the
// command line of the container running "tryd command", or "".
func flagValue(t *testing.T, ms []manifest, command, flag string) string {
	for _, m := range ms {
		for _, c := range m.Spec.Template.Spec.Containers {
			argv := containerArgv(t, c.Command, c.Args)
			if len(argv) == 0 || argv[0] != command {
				continue
			}
			for _, a := range argv[1:] {
				if v, ok := strings.CutPrefix(a, flag+"="); ok {
					return v
				}
			}
		}
	}
	return ""
}
