package pubsubhelper

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
)

// BenchmarkGitHubDelivery measures the handler's cost per signed delivery
// (no network), with the durable journal and with the in-memory one.
func BenchmarkGitHubDelivery(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(testenv.Fixture(b, "github/webhooks"), "issue_comment", "created.payload.json"))
	if err != nil {
		b.Fatal(err)
	}
	sig := sign(testGitHubSecret, body)
	for _, mode := range []string{"durable", "memory"} {
		b.Run(mode, func(b *testing.B) {
			dir := ""
			if mode == "durable" {
				dir = b.TempDir()
			}
			j, err := journal.Open(journal.Options{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			s, err := New(Options{Journal: j, GitHubSecrets: []Secret{{Server: "github", Value: []byte(testGitHubSecret)}}, OpenSubscribers: true})
			if err != nil {
				b.Fatal(err)
			}
			h := s.Handler()
			var n atomic.Int64
			b.SetBytes(int64(len(body)))
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("POST", "/github-webhook", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("X-GitHub-Event", "issue_comment")
					req.Header.Set("X-GitHub-Delivery", fmt.Sprint("b-", n.Add(1)))
					req.Header.Set("X-Hub-Signature-256", sig)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
