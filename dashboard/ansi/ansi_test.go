package ansi

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// render runs input through a Renderer in chunks of the given size (0:
// one write) and returns the operations, with adjacent texts of one
// class merged so that chunking does not matter.
func render(input string, chunk int) []Op {
	var o Ops
	r := New(&o)
	b := []byte(input)
	if chunk <= 0 {
		chunk = len(b) + 1
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		r.Write(b[:n])
		r.FlushText()
		b = b[n:]
	}
	r.Flush()
	var out []Op
	for _, op := range o.List {
		if k := len(out) - 1; k >= 0 && !op.NL && !out[k].NL && out[k].C == op.C {
			out[k].T += op.T
			continue
		}
		out = append(out, op)
	}
	return out
}

func TestRender(t *testing.T) {
	nl := Op{NL: true}
	tests := []struct {
		name string
		in   string
		want []Op
	}{
		{"plain", "hello\nworld", []Op{{T: "hello"}, nl, {T: "world"}}},
		{"red then reset", "\x1b[31mred\x1b[0m plain\n", []Op{{T: "red", C: "f1"}, {T: " plain"}, nl}},
		{"bold bright bg", "\x1b[1;92;44mx\x1b[m", []Op{{T: "x", C: "f10 g4 b"}}},
		{"256 palette", "\x1b[38;5;9ma\x1b[38;5;200mb\x1b[38;2;1;2;3mc", []Op{{T: "a", C: "f9"}, {T: "bc"}}},
		{"style carries over lines", "\x1b[4mab\ncd\x1b[24me", []Op{{T: "ab", C: "u"}, nl, {T: "cd", C: "u"}, {T: "e"}}},
		{"cursor moves dropped", "a\x1b[2K\x1b[1Ab\x1b[?25lc", []Op{{T: "abc"}}},
		{"osc hyperlink dropped", "\x1b]8;;javascript:alert(1)\x07click\x1b]8;;\x1b\\ me", []Op{{T: "click me"}}},
		{"osc title", "\x1b]0;<script>\x07ok", []Op{{T: "ok"}}},
		{"controls dropped", "a\rb\x08c\x00d\u0085e", []Op{{T: "abcde"}}},
		{"tab kept", "a\tb", []Op{{T: "a\tb"}}},
		{"invalid utf8", "a\xffb\xc3", []Op{{T: "a\uFFFDb\uFFFD"}}},
		{"utf8 kept", "héllo ✓", []Op{{T: "héllo ✓"}}},
		{"html is text", "<script>alert(1)</script>", []Op{{T: "<script>alert(1)</script>"}}},
		{"unterminated csi at end dropped", "a\x1b[31", []Op{{T: "a"}}},
		{"malformed csi", "a\x1b[3\nb", []Op{{T: "a"}, nl, {T: "b"}}},
		{"charset escape", "\x1b(Bx", []Op{{T: "x"}}},
		{"private sgr ignored", "\x1b[31m\x1b[?1mz", []Op{{T: "z", C: "f1"}}},
		{"empty lines", "\n\n", []Op{nl, nl}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3, 7} {
				got := render(tc.in, chunk)
				if !equalOps(got, tc.want) {
					t.Errorf("chunk %d: got %+v, want %+v", chunk, got, tc.want)
				}
			}
		})
	}
}

func equalOps(a, b []Op) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOverlongSequenceIsBounded(t *testing.T) {
	var o Ops
	r := New(&o)
	r.Write([]byte("x\x1b]"))
	for i := 0; i < 1000; i++ {
		r.Write(bytes.Repeat([]byte("A"), 100))
		if len(r.pending) > MaxPending+100 {
			t.Fatalf("pending grew to %d", len(r.pending))
		}
	}
	r.Write([]byte("\nvisible\n"))
	r.Flush()
	var text strings.Builder
	for _, op := range o.List {
		text.WriteString(op.T)
	}
	if !strings.Contains(text.String(), "visible") {
		t.Errorf("text after an over-long sequence lost: %q", text.String())
	}
}

func TestConsumed(t *testing.T) {
	var o Ops
	r := New(&o)
	r.Write([]byte("ab\x1b[3"))
	if got := r.Consumed(); got != 2 {
		t.Errorf("Consumed = %d, want 2 (the sequence is held back)", got)
	}
	r.Write([]byte("1mc\xe2\x9c"))
	if got := r.Consumed(); got != 8 {
		t.Errorf("Consumed = %d, want 8", got)
	}
	r.Write([]byte("\x93"))
	if got := r.Consumed(); got != 11 {
		t.Errorf("Consumed = %d, want 11", got)
	}
}

func TestHTML(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	h := &HTML{W: w}
	r := New(h)
	r.Write([]byte("<b>&\"\n\x1b[31m'red'\x1b[0m\nlast"))
	r.Flush()
	w.Flush()
	want := `<a class="n" id="L1" href="#L1">1</a>&lt;b&gt;&amp;&#34;` + "\n" +
		`<a class="n" id="L2" href="#L2">2</a><span class="f1">&#39;red&#39;</span>` + "\n" +
		`<a class="n" id="L3" href="#L3">3</a>last`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if !h.Open || h.Line != 3 {
		t.Errorf("Open=%v Line=%d, want an open line 3", h.Open, h.Line)
	}
}

// FuzzRender checks that whatever the input, the text handed to sinks
// is valid UTF-8 without control characters (so no escape sequence
// survives), classes come from the fixed set, and chunking does not
// change the result.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\x1b[31mx\x1b[0m", "\x1b]8;;javascript:x\x07y", "\xff\xfe", "\x1b[38;5;", "\x1b[1;2;3;4;22;23;24;39;49;100m", "\x1bP\x1b\\", "é\u0085"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, in string, chunk int) {
		if chunk < 1 || chunk > 64 {
			chunk = 1 + (chunk&63+64)%64
		}
		whole := render(in, 0)
		for _, op := range whole {
			if !utf8.ValidString(op.T) {
				t.Fatalf("invalid UTF-8 %q", op.T)
			}
			for _, c := range op.T {
				if c < 0x20 && c != '\t' || c == 0x7f || c >= 0x80 && c < 0xa0 {
					t.Fatalf("control %U in %q", c, op.T)
				}
			}
			for _, cl := range strings.Fields(op.C) {
				if !validClass(cl) {
					t.Fatalf("class %q", cl)
				}
			}
		}
		if got := render(in, chunk); !equalOps(got, whole) && len(in) < MaxPending {
			t.Fatalf("chunk %d: %+v != %+v", chunk, got, whole)
		}
	})
}

func validClass(c string) bool {
	switch c {
	case "b", "d", "i", "u":
		return true
	}
	if len(c) < 2 || (c[0] != 'f' && c[0] != 'g') {
		return false
	}
	for _, d := range c[1:] {
		if d < '0' || d > '9' {
			return false
		}
	}
	return len(c) <= 3
}
