package trybot

import "testing"

func TestWebBase(t *testing.T) {
	for api, want := range map[string]string{
		"":                                   "https://github.com/",
		"https://api.github.com/":            "https://github.com/",
		"https://ghe.example.com/api/v3/":    "https://ghe.example.com/",
		"http://127.0.0.1:4000/api/v3":       "http://127.0.0.1:4000/",
		"https://ghe.example.com/custom/api": "https://ghe.example.com/custom/api/",
	} {
		if got := webBase(api); got != want {
			t.Errorf("webBase(%q) = %q, want %q", api, got, want)
		}
	}
}
