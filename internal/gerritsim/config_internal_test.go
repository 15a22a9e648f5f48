package gerritsim

import "testing"

func TestProjectConfigRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		desc   string
		labels []Label
	}{
		{"defaults", "a project", DefaultLabels()},
		{"custom", "", []Label{{Name: "Custom", Min: -3, Max: 3, Function: NoBlock, Values: map[int]string{-3: "bad", 0: "", 3: "good"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			desc, labels, err := parseProjectConfig(projectConfig(tc.desc, tc.labels))
			if err != nil {
				t.Fatal(err)
			}
			if desc != tc.desc || len(labels) != len(tc.labels) {
				t.Fatalf("got %q %+v", desc, labels)
			}
			for i, l := range labels {
				want := tc.labels[i]
				if l.Name != want.Name || l.Min != want.Min || l.Max != want.Max || l.fn() != want.fn() || l.CopyCondition != want.CopyCondition {
					t.Fatalf("label %d = %+v, want %+v", i, l, want)
				}
				for v := want.Min; v <= want.Max; v++ {
					if l.Values[v] != want.Values[v] {
						t.Fatalf("label %s value %d = %q, want %q", l.Name, v, l.Values[v], want.Values[v])
					}
				}
			}
		})
	}
}

func FuzzParseProjectConfig(f *testing.F) {
	f.Add(projectConfig("d", DefaultLabels()))
	f.Add("[label \"X\"]\n\tvalue = +1\n\tvalue = -1 nope\n")
	f.Fuzz(func(t *testing.T, cfg string) {
		_, labels, err := parseProjectConfig(cfg)
		if err != nil {
			return
		}
		for _, l := range labels {
			if l.Min > l.Max {
				t.Fatalf("label %+v has an empty range", l)
			}
		}
		// What parses must survive a write and a re-read.
		_, again, err := parseProjectConfig(projectConfig("", labels))
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if len(again) != len(labels) {
			t.Fatalf("re-read %d labels, want %d", len(again), len(labels))
		}
	})
}
