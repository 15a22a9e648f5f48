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

// BenchmarkRunTrueCached is BenchmarkRunTrue with a PathCache, as the
// worker runs commands.
func BenchmarkRunTrueCached(b *testing.B) {
	dir := b.TempDir()
	c := NewPathCache(0, nil)
	for i := 0; i < b.N; i++ {
		if err := Run(context.Background(), Spec{Argv: []string{"true", "x"}, Dir: dir, Paths: c}); err != nil {
			b.Fatal(err)
		}
	}
}
