package webhook

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
)

func BenchmarkParseGitHub(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(testenv.Fixture(b, "github/webhooks"), "pull_request", "opened.payload.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseGitHub("pull_request", body); err != nil {
			b.Fatal(err)
		}
	}
}
