// Package deploy holds deployment examples (Kubernetes manifests, a
// systemd unit, README.md on sizing); its test checks that the tryd.yaml
// embedded in the manifests is a valid tryd configuration and uses the
// scale-out settings the manifests rely on.
package deploy

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tryd-ci/tryd/internal/config"
)

func TestConfigMapIsValidConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("kubernetes", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Data["tryd.yaml"] == "" {
		t.Fatalf("config.yaml: kind %q, no tryd.yaml", cm.Kind)
	}
	cfg, err := config.Parse("tryd.yaml", []byte(cm.Data["tryd.yaml"]))
	if err != nil {
		t.Fatalf("embedded tryd.yaml: %v", err)
	}
	c := cfg.Coordinator
	if c.Database != "postgres" || !c.PostgresDSN.IsSet() || c.Artifacts != "gcs" || c.GCSBucket == "" {
		t.Errorf("coordinator config = %+v; the manifests need postgres and gcs", c)
	}
}

// TestManifestsParse checks that every manifest is well-formed YAML
// with a kind on every document.
func TestManifestsParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if len(files) < 7 {
		t.Fatalf("only %d manifests", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			dec := yaml.NewDecoder(fh)
			for n := 0; ; n++ {
				var doc struct {
					APIVersion string `yaml:"apiVersion"`
					Kind       string `yaml:"kind"`
				}
				if err := dec.Decode(&doc); err != nil {
					if errors.Is(err, io.EOF) {
						return
					}
					t.Fatalf("document %d: %v", n, err)
				}
				if doc.Kind == "" || doc.APIVersion == "" {
					t.Errorf("document %d has no kind or apiVersion", n)
				}
			}
		})
	}
}
