package goplan

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name, in string
		steps    int
		wantErr  string
	}{
		{name: "good", in: "steps:\n  - name: gen\n    run: [go, generate, ./...]\n  - shell: go test ./...\n    env: {A: b}\n    dir: sub\n", steps: 2},
		{name: "unknown field", in: "steps:\n  - name: x\n    runn: [a]\n", wantErr: "runn"},
		{name: "no steps", in: "steps: []\n", wantErr: "1 to 100 steps"},
		{name: "both run and shell", in: "steps:\n  - run: [a]\n    shell: b\n", wantErr: "exactly one"},
		{name: "neither", in: "steps:\n  - name: a\n", wantErr: "exactly one"},
		{name: "duplicate", in: "steps:\n  - name: a\n    shell: x\n  - name: a\n    shell: y\n", wantErr: "twice"},
		{name: "escaping dir", in: "steps:\n  - shell: x\n    dir: ../up\n", wantErr: "relative"},
		{name: "braces in name", in: "steps:\n  - name: '{{x}}'\n    shell: x\n", wantErr: "bad name"},
		{name: "not yaml", in: "steps: [", wantErr: "bad .tryd.yaml"},
		{name: "too big", in: "steps:\n  - shell: '" + strings.Repeat("x", maxTemplateBytes) + "'\n", wantErr: "larger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := ParseTemplate(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrBadTemplate) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrBadTemplate mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := tpl.Graph(map[string]string{"os": "linux"}, 0)
			if len(g.Jobs) != tc.steps {
				t.Fatalf("%d jobs, want %d", len(g.Jobs), tc.steps)
			}
			if g.Jobs[1].Deps[0] != g.Jobs[0].Name || g.Jobs[1].Commands[0].Argv[0] != "sh" || g.Jobs[1].Commands[0].Env[0] != "A=b" {
				t.Errorf("second job %+v", g.Jobs[1])
			}
		})
	}
}

func FuzzParseTemplate(f *testing.F) {
	f.Add("steps:\n  - name: gen\n    run: [go, generate]\n")
	f.Add("steps:\n  - shell: x\n    dir: a/b\n    env: {K: v}\n")
	f.Fuzz(func(t *testing.T, in string) {
		tpl, err := ParseTemplate(strings.NewReader(in))
		if err != nil {
			return
		}
		g := tpl.Graph(nil, 0)
		if len(g.Jobs) == 0 {
			t.Fatal("accepted a template without jobs")
		}
	})
}
