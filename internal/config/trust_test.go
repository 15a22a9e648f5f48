package config

import (
	"strings"
	"testing"
)

func TestTrustLabels(t *testing.T) {
	const builders = "builders:\n  - name: b\n    labels: {os: linux}\n    planner: go\n"
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"none", builders, ""},
		{"separate pools", builders + "trybot:\n  try_labels: {trust: try}\n  postsubmit_labels: {trust: postsubmit}\n", ""},
		{"only try", builders + "trybot:\n  try_labels: {trust: try}\n", ""},
		{"same labels", builders + "trybot:\n  try_labels: {trust: x}\n  postsubmit_labels: {trust: x}\n", "no label differs"},
		{"disjoint keys", builders + "trybot:\n  try_labels: {a: x}\n  postsubmit_labels: {b: y}\n", "no label differs"},
		{"bad label", builders + "trybot:\n  try_labels: {\"-x\": y}\n", "bad label"},
		{"conflicts with a builder", builders + "trybot:\n  try_labels: {os: windows}\n", "conflicts with trybot.try_labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("tryd.yaml", []byte(tc.yaml))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
