package mutlog

import (
	"context"
	"sync"
	"testing"
)

// BenchmarkForEachDir reads a 64 MiB log directory (500-byte records),
// the corpus loader's path; MB/s extrapolates to a 1 GiB log.
func BenchmarkForEachDir(b *testing.B) {
	dir := b.TempDir()
	st, _ := NewDiskStore(dir)
	l, err := Open(context.Background(), Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 500)
	batch := make([][]byte, 1024)
	for i := range batch {
		batch[i] = p
	}
	for l.Size() < 64<<20 {
		if _, err := l.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	size := l.Size()
	l.Close()
	b.SetBytes(size)
	for b.Loop() {
		if err := ForEachDir(dir, DirOptions{}, func(Position, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel measures durable appends from 64 goroutines
// sharing commits.
func BenchmarkAppendParallel(b *testing.B) {
	st, _ := NewDiskStore(b.TempDir())
	l, err := Open(context.Background(), Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	p := make([]byte, 500)
	b.SetBytes(int64(len(p)))
	var wg sync.WaitGroup
	n := b.N
	per := (n + 63) / 64
	for w := 0; w < 64 && n > 0; w++ {
		k := min(per, n)
		n -= k
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range k {
				if _, err := l.Append(context.Background(), p); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
