package worker

import (
	"context"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/worker/artifact"
)

// BenchmarkExecuteTrue measures the worker's own cost of a trivial job
// (directories, process, output archive), without the coordinator.
func BenchmarkExecuteTrue(b *testing.B) {
	cl, _ := api.NewClient("http://127.0.0.1:1", "x", nil)
	w, err := New(Options{Client: cl, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	w.markUploaded(artifact.EmptyDigest)
	a := api.Assignment{AttemptID: "a", Job: graph.Job{Commands: []graph.Command{{Argv: []string{"true", "x"}}}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		logs := newLogStream(func(context.Context, int64, []byte) (int64, error) { return 0, nil }, 0, 1<<16, 100e6, nil)
		var cleanup []func()
		if _, _, err := w.execute(context.Background(), a, logs, &cleanup); err != nil {
			b.Fatal(err)
		}
		for _, f := range cleanup {
			f()
		}
		logs.Close(context.Background(), 10*time.Second)
	}
}
