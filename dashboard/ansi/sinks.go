package ansi

import (
	"bufio"
	"html"
	"strconv"
)

// HTML is a Sink that writes the log as HTML for a <pre> element: each
// line starts with a numbered anchor `<a class="n" id="L12" href="#L12">12</a>`
// (so lines can be linked), styled text is wrapped in
// `<span class="CLASS">`, and every character of the log is escaped.
// Lines end with "\n". Errors of the underlying writer are kept in Err
// and stop further output.
type HTML struct {
	W *bufio.Writer
	// Line is the number of the last line started; the first line
	// written is Line+1.
	Line int
	// Open is set while a line has been started and not ended.
	Open bool
	// Err is the first write error.
	Err error
}

func (h *HTML) startLine() {
	h.Line++
	h.Open = true
	n := strconv.Itoa(h.Line)
	h.write(`<a class="n" id="L` + n + `" href="#L` + n + `">` + n + `</a>`)
}

func (h *HTML) write(s string) {
	if h.Err == nil {
		_, h.Err = h.W.WriteString(s)
	}
}

// Text implements Sink.
func (h *HTML) Text(s, class string) {
	if !h.Open {
		h.startLine()
	}
	if class != "" {
		h.write(`<span class="` + class + `">`)
	}
	h.write(html.EscapeString(s))
	if class != "" {
		h.write(`</span>`)
	}
}

// EndLine implements Sink.
func (h *HTML) EndLine() {
	if !h.Open {
		h.startLine()
	}
	h.write("\n")
	h.Open = false
}

// Op is one operation of a live log update: a piece of text in a style
// class (T, C), or the end of the line (NL). It is the JSON sent to
// browsers, which add text with textContent (never as HTML).
type Op struct {
	T  string `json:"t,omitempty"`
	C  string `json:"c,omitempty"`
	NL bool   `json:"nl,omitempty"`
}

// Ops is a Sink that collects operations.
type Ops struct {
	List []Op
}

// Text implements Sink.
func (o *Ops) Text(s, class string) { o.List = append(o.List, Op{T: s, C: class}) }

// EndLine implements Sink.
func (o *Ops) EndLine() { o.List = append(o.List, Op{NL: true}) }
