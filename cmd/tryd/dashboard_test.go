package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestDashboardTrybotURL checks that the dashboard finds the trybot at
// trybot.url, as it finds the coordinator and maintnerd at their url
// keys, and reads try runs from a real trybot with trybot.api_token;
// --trybot overrides the key, and without either try runs are off.
func TestDashboardTrybotURL(t *testing.T) {
	const token = "trybot-api-token-0123456789"
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tbCfg := writeConfig("trybot.yaml", "trybot:\n  api_token: file:"+tokFile+"\n")
	trybotURL, _ := startCommand(t, "trybot", append(trybotArgs(t.TempDir()), "--config", tbCfg, "--listen", "127.0.0.1:0")...)

	// The coordinator need not answer: /try reads only the trybot.
	common := "coordinator:\n  url: http://127.0.0.1:1\n"
	for _, tc := range []struct {
		name string
		yaml string
		args []string
		want int
	}{
		{"trybot.url", common + "trybot:\n  url: " + trybotURL + "\n  api_token: file:" + tokFile + "\n", nil, http.StatusOK},
		{"--trybot over trybot.url", common + "trybot:\n  url: http://127.0.0.1:1\n  api_token: file:" + tokFile + "\n", []string{"--trybot", trybotURL}, http.StatusOK},
		// The token is what the trybot checks: trybot.url alone is
		// refused, and the dashboard says the trybot failed.
		{"trybot.url without the token", common + "trybot:\n  url: " + trybotURL + "\n", nil, http.StatusBadGateway},
		{"no trybot", common, nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(tc.name+".yaml", tc.yaml)
			base, _ := startCommand(t, "dashboard", append([]string{"--config", cfg, "--listen", "127.0.0.1:0"}, tc.args...)...)
			resp, err := http.Get(base + "/try?format=json")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET /try: %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusOK {
				return
			}
			var list struct {
				Runs []json.RawMessage `json:"runs"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Runs == nil {
				t.Errorf("GET /try: %+v, %v; want the trybot's (empty) list of runs", list, err)
			}
		})
	}
}
