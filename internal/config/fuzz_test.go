package config

import (
	"strings"
	"testing"
)

// FuzzParse checks that no document makes Parse panic or hang, that it
// returns exactly one of a config and an error, and that a secret's
// reference never turns into a literal value.
func FuzzParse(f *testing.F) {
	// tryd.example.yaml is not a seed (TestExampleConfigLoads covers
	// it): mutating a document that large stalls the fuzzing engine.
	for _, s := range []string{
		"",
		"repos: [{name: a}]\n",
		"gerrit:\n  - name: g\n    url: https://r/\n    password: file:/x\n",
		"gerrit:\n  - name: g\n    password: hunter2\n",
		"coordinator: {heartbeat_timeout: -5s}\n",
		"builders: [{name: b, labels: {os: linux}}]\n",
		"a: &a [*a, *a]\n",
		"? [1, 2]\n: x\n",
		"--- \n...\n--- {}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", cfg != nil, err)
		}
		if err != nil {
			return
		}
		for _, g := range cfg.Gerrit {
			for _, s := range []Secret{g.Password, g.WebhookSecret} {
				if s.IsSet() && !strings.HasPrefix(s.String(), "file:") && !strings.HasPrefix(s.String(), "env:") {
					t.Fatalf("secret parsed as %q, not a reference", s.String())
				}
			}
		}
	})
}
