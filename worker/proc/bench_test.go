package proc

import (
	"context"
	"testing"
)

// BenchmarkRunTrue measures starting and reaping a trivial command.
func BenchmarkRunTrue(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < b.N; i++ {
		if err := Run(context.Background(), Spec{Argv: []string{"true", "x"}, Dir: dir}); err != nil {
			b.Fatal(err)
		}
	}
}
