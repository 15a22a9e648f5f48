// The deployment examples under deploy/ are checked here, beside the
// replica tests they document: the manifests parse, and the tryd.yaml in
// the ConfigMap is a valid configuration using the scale-out settings.

package replicatest

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
)

func TestConfigMapIsValidConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "kubernetes", "config.yaml"))
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
	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "deploy", "kubernetes", "*.yaml"))
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
