// Package ansi turns terminal output (job logs) into styled text safely:
// SGR escape sequences (colours, bold, faint, italic, underline) become
// style classes; every other escape sequence (cursor movement, OSC
// titles and hyperlinks, anything unknown) and every control character
// but tab and newline is dropped; invalid UTF-8 becomes U+FFFD.
//
// A Renderer is streaming: it accepts a log in chunks of any size, keeps
// back only the bytes of an escape sequence or rune cut by a chunk
// boundary (at most MaxPending), and hands text to a Sink as it goes, so
// a log of any length is rendered in constant memory. The Sink chooses
// the output format (HTML for the log page, JSON operations for live
// updates) and does the escaping; class names come from the fixed set
// documented on Style.Class, never from log content.
package ansi

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sink receives rendered output. Text gets plain text (no newline, no
// control character but tab, valid UTF-8; it still needs HTML escaping)
// and the class of the style it shows in ("" for the default style);
// EndLine ends the current line.
type Sink interface {
	Text(s, class string)
	EndLine()
}

// Style is the graphic state set by SGR sequences.
type Style struct {
	// FG and BG are palette indexes 0–15, or -1 for the default colour.
	FG, BG                         int8
	Bold, Faint, Italic, Underline bool
}

var defaultStyle = Style{FG: -1, BG: -1}

// Class returns the style as space-separated CSS class names from a
// fixed set: "fN" (foreground palette colour N, 0–15), "gN" (background
// N), "b" (bold), "d" (faint), "i" (italic), "u" (underline). The default
// style is "".
func (s Style) Class() string {
	var parts []string
	if s.FG >= 0 {
		parts = append(parts, "f"+strconv.Itoa(int(s.FG)))
	}
	if s.BG >= 0 {
		parts = append(parts, "g"+strconv.Itoa(int(s.BG)))
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{s.Bold, "b"}, {s.Faint, "d"}, {s.Italic, "i"}, {s.Underline, "u"}} {
		if f.on {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, " ")
}

// MaxPending bounds an unterminated escape sequence: one longer than
// this is abandoned (its bytes dropped up to a plausible end) so that
// hostile input cannot make the renderer buffer without limit.
const MaxPending = 256

// Renderer converts a stream of terminal output for a Sink. Use New.
type Renderer struct {
	sink     Sink
	style    Style
	class    string
	pending  []byte // an incomplete escape sequence or rune
	skipping bool   // dropping the rest of an over-long sequence
	text     []byte // text in the current style, not yet given to the sink
	total    int64  // bytes written
}

// New returns a Renderer writing to sink, starting in the default style.
func New(sink Sink) *Renderer {
	return &Renderer{sink: sink, style: defaultStyle}
}

// Consumed returns how many input bytes have been rendered: the bytes
// written minus those held back as an incomplete sequence. A reader that
// resumes the same log elsewhere starts at this offset.
func (r *Renderer) Consumed() int64 { return r.total - int64(len(r.pending)) }

// Write renders p. It never fails.
func (r *Renderer) Write(p []byte) (int, error) {
	r.total += int64(len(p))
	if len(r.pending) > 0 {
		buf := append(r.pending, p...)
		r.pending = nil
		r.render(buf)
		return len(p), nil
	}
	r.render(p)
	return len(p), nil
}

// Flush ends the stream: a held-back incomplete rune becomes U+FFFD, an
// incomplete escape sequence is dropped, and buffered text goes to the
// sink.
func (r *Renderer) Flush() {
	if len(r.pending) > 0 {
		if r.pending[0] != 0x1b {
			r.text = append(r.text, "\uFFFD"...)
		}
		r.pending = nil
	}
	r.FlushText()
}

// FlushText gives buffered text to the sink without ending the stream
// (for live updates between chunks).
func (r *Renderer) FlushText() {
	if len(r.text) > 0 {
		r.sink.Text(string(r.text), r.class)
		r.text = r.text[:0]
	}
}

func (r *Renderer) setStyle(s Style) {
	if s == r.style {
		return
	}
	r.FlushText()
	r.style = s
	r.class = s.Class()
}

// render processes buf, keeping an incomplete trailing sequence in
// pending.
func (r *Renderer) render(buf []byte) {
	i, start := 0, 0 // start: beginning of the plain run being collected
	run := func() {
		if i > start {
			r.text = append(r.text, buf[start:i]...)
		}
	}
	for i < len(buf) {
		c := buf[i]
		if r.skipping {
			if c == '\n' {
				r.skipping = false
				start = i
				continue
			}
			if c == 0x07 || (c >= 0x40 && c <= 0x7e) {
				r.skipping = false
			}
			i++
			start = i
			continue
		}
		switch {
		case c == '\t' || (c >= 0x20 && c < 0x7f):
			i++
		case c == '\n':
			run()
			r.FlushText()
			r.sink.EndLine()
			i++
			start = i
		case c == 0x1b:
			run()
			n, ok := r.escape(buf[i:])
			if !ok {
				if len(buf)-i > MaxPending {
					r.skipping = true
					i++
					start = i
					continue
				}
				r.pending = append([]byte(nil), buf[i:]...)
				return
			}
			i += n
			start = i
		case c < 0x20 || c == 0x7f:
			// Other C0 controls (\r, backspace, bell) are dropped.
			run()
			i++
			start = i
		default:
			if !utf8.FullRune(buf[i:]) {
				run()
				r.pending = append([]byte(nil), buf[i:]...)
				return
			}
			ru, size := utf8.DecodeRune(buf[i:])
			if ru == utf8.RuneError && size <= 1 {
				run()
				r.text = append(r.text, "\uFFFD"...)
				i += size
				start = i
				continue
			}
			if ru >= 0x80 && ru < 0xa0 {
				// C1 controls (e.g. the 8-bit CSI) are dropped.
				run()
				i += size
				start = i
				continue
			}
			i += size
		}
	}
	run()
}

// escape handles the escape sequence at the start of b (b[0] is ESC) and
// returns its length, or ok=false if b ends before the sequence does. A
// malformed sequence is dropped up to (not including) the offending byte.
func (r *Renderer) escape(b []byte) (n int, ok bool) {
	if len(b) < 2 {
		return 0, false
	}
	switch c := b[1]; {
	case c == '[': // CSI: parameters, intermediates, one final byte
		j := 2
		for j < len(b) && b[j] >= 0x30 && b[j] <= 0x3f {
			j++
		}
		params := b[2:j]
		k := j
		for k < len(b) && b[k] >= 0x20 && b[k] <= 0x2f {
			k++
		}
		if k >= len(b) {
			return 0, false
		}
		f := b[k]
		if f < 0x40 || f > 0x7e {
			return k, true
		}
		if f == 'm' && k == j {
			r.sgr(params)
		}
		return k + 1, true
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		// OSC, DCS, SOS, PM, APC: a string up to BEL or ESC \. Their
		// content (window titles, hyperlinks) is dropped.
		for j := 2; j < len(b); j++ {
			switch b[j] {
			case 0x07:
				return j + 1, true
			case '\n':
				return j, true
			case 0x1b:
				if j+1 >= len(b) {
					return 0, false
				}
				if b[j+1] == '\\' {
					return j + 2, true
				}
				return j, true
			}
		}
		return 0, false
	case c >= 0x20 && c <= 0x2f: // nF: intermediates, then a final byte
		j := 2
		for j < len(b) && b[j] >= 0x20 && b[j] <= 0x2f {
			j++
		}
		if j >= len(b) {
			return 0, false
		}
		if b[j] < 0x30 || b[j] > 0x7e {
			return j, true
		}
		return j + 1, true
	case c < 0x20 || c == 0x7f:
		return 1, true
	}
	return 2, true
}

// sgr applies Select Graphic Rendition parameters ("1;31", "38;5;9").
func (r *Renderer) sgr(params []byte) {
	s := r.style
	nums, ok := parseParams(params)
	if !ok {
		return
	}
	if len(nums) == 0 {
		nums = []int{0}
	}
	for i := 0; i < len(nums); i++ {
		switch n := nums[i]; {
		case n == 0:
			s = defaultStyle
		case n == 1:
			s.Bold = true
		case n == 2:
			s.Faint = true
		case n == 3:
			s.Italic = true
		case n == 4:
			s.Underline = true
		case n == 22:
			s.Bold, s.Faint = false, false
		case n == 23:
			s.Italic = false
		case n == 24:
			s.Underline = false
		case n >= 30 && n <= 37:
			s.FG = int8(n - 30)
		case n >= 90 && n <= 97:
			s.FG = int8(n - 90 + 8)
		case n == 39:
			s.FG = -1
		case n >= 40 && n <= 47:
			s.BG = int8(n - 40)
		case n >= 100 && n <= 107:
			s.BG = int8(n - 100 + 8)
		case n == 49:
			s.BG = -1
		case n == 38 || n == 48:
			// Extended colour: 5;N (256 colours; only the 16-colour
			// palette is shown) or 2;R;G;B (shown in the default colour).
			col := int8(-1)
			if i+1 < len(nums) && nums[i+1] == 5 && i+2 < len(nums) {
				if v := nums[i+2]; v < 16 {
					col = int8(v)
				}
				i += 2
			} else if i+1 < len(nums) && nums[i+1] == 2 {
				i += min(4, len(nums)-1-i)
			}
			if n == 38 {
				s.FG = col
			} else {
				s.BG = col
			}
		}
	}
	r.setStyle(s)
}

// parseParams splits "1;31" (or with ':' sub-parameters) into numbers;
// empty fields are 0 and huge ones are capped. ok is false for private
// parameters ('?', '<', ...), which are no SGR this package knows.
func parseParams(b []byte) (nums []int, ok bool) {
	if len(b) == 0 {
		return nil, true
	}
	var out []int
	v := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if v < 100000 {
				v = v*10 + int(c-'0')
			}
		case c == ';' || c == ':':
			out = append(out, v)
			v = 0
			if len(out) > 64 {
				return out, true
			}
		default:
			return nil, false
		}
	}
	return append(out, v), true
}
