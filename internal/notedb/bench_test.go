package notedb

import "testing"

// benchChain is the history of the examples of gerrit-notedb.md §5 as
// meta commits, oldest first: what deriving one change parses.
func benchChain(b *testing.B) []Commit {
	b.Helper()
	var chain []Commit
	for _, ex := range examples() {
		chain = append(chain, commitOf(ex.u, Format(ex.u)))
	}
	return chain
}

// BenchmarkParseCommit parses one meta commit (each op parses the whole
// example chain once and reports per-commit figures via ns/op / len).
func BenchmarkParseCommit(b *testing.B) {
	chain := benchChain(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range chain {
			if _, err := ParseCommit(c); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(chain)), "commits/op")
}

// BenchmarkParser is BenchmarkParseCommit with a reused Parser.
func BenchmarkParser(b *testing.B) {
	chain := benchChain(b)
	var p Parser
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range chain {
			if _, err := p.Parse(c); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(chain)), "commits/op")
}

// BenchmarkReplay derives a change from its meta history: parse every
// commit (with one Parser, as maintner does), apply it, then read the patch sets and every patch set's votes,
// as maintner does for each change.
func BenchmarkReplay(b *testing.B) {
	chain := benchChain(b)
	var p Parser
	b.ReportAllocs()
	for b.Loop() {
		c := NewChange()
		for _, mc := range chain {
			u, err := p.Parse(mc)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Apply(u); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
		for _, n := range c.PatchSetNumbers() {
			_ = c.Votes(n)
		}
	}
}
