package githubsim

import (
	"encoding/json"
	"testing"
)

func jsonField(t testing.TB, body []byte, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	s, _ := m[key].(string)
	return s
}
