// Package reclog owns the record framing of tryd's mutation log, identical
// to golang.org/x/build/maintner/reclog so that x/build's tools read tryd's
// segments unchanged.
//
// Wire format: a segment is a concatenation of records, each
//
//	REC@<hex offset>+<hex length>=<length bytes of payload>
//
// where <hex offset> is the position of the record's 'R' within its segment
// (segments start at offset 0) and <hex length> is the payload length, both
// as one or more hexadecimal digits (written in lower case; upper case is
// accepted when reading). There is no footer and no checksum per record;
// integrity of whole segments is checked with SHA-224 by the log and its
// followers.
//
// Reading is allocation-free beyond the caller's buffers: Scan walks a byte
// slice (a whole segment held in memory) and hands out sub-slices of it, and
// Reader does the same over an io.Reader with one growing buffer, so a
// gigabyte of log is parsed in well under a second. Malformed or truncated
// input yields an *Error naming the segment and the offset of the bad
// record.
package reclog

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// MaxHeaderLen is the longest header this package reads or writes:
// "REC@" + 16 hex digits + "+" + 16 hex digits + "=". x/build rejects
// headers longer than 40 bytes; 38 stays within that.
const MaxHeaderLen = 4 + 16 + 1 + 16 + 1

// MaxPayload bounds the payload length Reader accepts, so a corrupt header
// cannot make it allocate gigabytes. Segments are at most 16 MiB, so no
// valid record comes near it.
const MaxPayload = 1 << 30

var (
	// ErrCorrupt is matched (errors.Is) by every *Error about malformed
	// input.
	ErrCorrupt = errors.New("reclog: corrupt record")
	// ErrTruncated is matched (errors.Is) by an *Error whose record
	// ends before its declared length: a torn tail or a partial
	// download.
	ErrTruncated = errors.New("reclog: truncated record")
)

// Error describes bad input: which segment, at which offset, and why.
// It matches ErrCorrupt, and also ErrTruncated when Truncated is set.
type Error struct {
	// Segment names the segment (a file name or number) as given by the
	// caller; it may be empty.
	Segment string
	// Offset is the segment offset where the bad record starts.
	Offset int64
	// Truncated reports that the input ended inside the record rather
	// than containing a malformed header.
	Truncated bool
	// Reason says what is wrong.
	Reason string
}

func (e *Error) Error() string {
	seg := e.Segment
	if seg == "" {
		seg = "?"
	}
	return fmt.Sprintf("reclog: segment %s at offset %d (%#x): %s", seg, e.Offset, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) and errors.Is(err, ErrTruncated) work.
func (e *Error) Is(target error) bool {
	return target == ErrCorrupt || (e.Truncated && target == ErrTruncated)
}

// HeaderLen returns the length of the header of a record at offset off with
// an n-byte payload.
func HeaderLen(off int64, n int) int {
	return 4 + hexLen(uint64(off)) + 1 + hexLen(uint64(n)) + 1
}

// RecordLen returns the framed size of a record at offset off with an
// n-byte payload.
func RecordLen(off int64, n int) int64 { return int64(HeaderLen(off, n)) + int64(n) }

func hexLen(v uint64) int {
	n := 1
	for v >= 16 {
		v >>= 4
		n++
	}
	return n
}

// AppendRecord appends the framed record for payload at segment offset off
// to dst and returns the extended slice.
func AppendRecord(dst []byte, off int64, payload []byte) []byte {
	dst = append(dst, "REC@"...)
	dst = strconv.AppendUint(dst, uint64(off), 16)
	dst = append(dst, '+')
	dst = strconv.AppendUint(dst, uint64(len(payload)), 16)
	dst = append(dst, '=')
	return append(dst, payload...)
}

// WriteRecord writes the framed record for payload at offset off to w in
// one Write call, like x/build's reclog.WriteRecord.
func WriteRecord(w io.Writer, off int64, payload []byte) error {
	_, err := w.Write(AppendRecord(make([]byte, 0, HeaderLen(off, len(payload))+len(payload)), off, payload))
	return err
}

// parseHeader parses a header at the start of b, expected at segment
// offset off. It returns the header length and payload length. need > 0
// means b ends before the header does (at least need more bytes would be
// required to decide); reason != "" means the header is malformed.
func parseHeader(b []byte, off int64) (hdrLen int, n int64, truncated bool, reason string) {
	const prefix = "REC@"
	for i := 0; i < len(prefix); i++ {
		if i >= len(b) {
			return 0, 0, true, "input ends inside the record header"
		}
		if b[i] != prefix[i] {
			return 0, 0, false, fmt.Sprintf("malformed header: want %q, found %q", prefix, clip(b, len(prefix)))
		}
	}
	i := len(prefix)
	hdrOff, i, trunc, reason := parseHex(b, i, '+')
	if reason != "" || trunc {
		return 0, 0, trunc, "offset: " + orTrunc(reason, trunc)
	}
	if hdrOff != uint64(off) {
		return 0, 0, false, fmt.Sprintf("malformed header %q: offset %#x does not match the record's position %#x", clip(b, i), hdrOff, off)
	}
	size, i, trunc, reason := parseHex(b, i, '=')
	if reason != "" || trunc {
		return 0, 0, trunc, "length: " + orTrunc(reason, trunc)
	}
	if size > MaxPayload {
		return 0, 0, false, fmt.Sprintf("record length %#x exceeds the limit %#x", size, MaxPayload)
	}
	return i, int64(size), false, ""
}

func orTrunc(reason string, trunc bool) string {
	if trunc {
		return "input ends inside the record header"
	}
	return reason
}

// parseHex reads 1 to 16 hex digits of b from i, followed by term. It
// returns the value and the index after term.
func parseHex(b []byte, i int, term byte) (v uint64, next int, truncated bool, reason string) {
	start := i
	for ; i < len(b); i++ {
		c := b[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case c == term:
			if i == start {
				return 0, 0, false, fmt.Sprintf("no hex digits before %q", term)
			}
			return v, i + 1, false, ""
		default:
			return 0, 0, false, fmt.Sprintf("unexpected byte %q in header (want hex digit or %q)", c, term)
		}
		if i-start >= 16 {
			return 0, 0, false, "more than 16 hex digits in header"
		}
		v = v<<4 | uint64(d)
	}
	return 0, 0, true, ""
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Func is called for each record: off is the segment offset of the
// record's header and payload the record's bytes. payload aliases the
// input buffer and is valid only until the function returns (or, for Scan,
// as long as the caller keeps the buffer unchanged). Returning an error
// stops iteration and is returned as is.
type Func func(off int64, payload []byte) error

// Scan calls fn for each record in data, which holds segment bytes
// starting at segment offset start (0 for a whole segment). name labels
// errors. It returns the offset just past the last complete, well-formed
// record; on bad input err is an *Error and end is where the bad record
// starts, so a caller can cut a torn tail at end.
func Scan(name string, data []byte, start int64, fn Func) (end int64, err error) {
	off := start
	pos := 0
	for pos < len(data) {
		hdrLen, n, trunc, reason := parseHeader(data[pos:], off)
		if reason != "" || trunc {
			return off, &Error{Segment: name, Offset: off, Truncated: trunc, Reason: reason}
		}
		if int64(len(data)-pos-hdrLen) < n {
			return off, &Error{Segment: name, Offset: off, Truncated: true,
				Reason: fmt.Sprintf("record declares %d payload bytes but only %d remain", n, len(data)-pos-hdrLen)}
		}
		payload := data[pos+hdrLen : pos+hdrLen+int(n) : pos+hdrLen+int(n)]
		if fn != nil {
			if err := fn(off, payload); err != nil {
				return off, err
			}
		}
		adv := hdrLen + int(n)
		pos += adv
		off += int64(adv)
	}
	return off, nil
}

// Reader reads records from an io.Reader through one reusable buffer.
type Reader struct {
	r    io.Reader
	name string
	buf  []byte // buf[lo:hi] holds unread input
	lo   int
	hi   int
	off  int64 // segment offset of buf[lo]
	eof  bool
	err  error
}

// NewReader returns a Reader of the records in r, whose first byte is at
// segment offset start. name labels errors.
func NewReader(r io.Reader, name string, start int64) *Reader {
	return &Reader{r: r, name: name, off: start, buf: make([]byte, 256<<10)}
}

// Offset returns the segment offset just past the last record returned.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next record's offset and payload. The payload is valid
// until the next call. At a clean end of input it returns io.EOF; on bad
// input an *Error; read errors are wrapped.
func (r *Reader) Next() (off int64, payload []byte, err error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	for {
		hdrLen, n, trunc, reason := parseHeader(r.buf[r.lo:r.hi], r.off)
		if reason != "" && !trunc {
			r.err = &Error{Segment: r.name, Offset: r.off, Reason: reason}
			return 0, nil, r.err
		}
		if !trunc && int64(r.hi-r.lo-hdrLen) >= n {
			off = r.off
			payload = r.buf[r.lo+hdrLen : r.lo+hdrLen+int(n) : r.lo+hdrLen+int(n)]
			adv := hdrLen + int(n)
			r.lo += adv
			r.off += int64(adv)
			return off, payload, nil
		}
		if r.eof {
			if r.lo == r.hi {
				r.err = io.EOF
				return 0, nil, io.EOF
			}
			reason := "input ends inside the record header"
			if !trunc {
				reason = fmt.Sprintf("record declares %d payload bytes but only %d remain", n, r.hi-r.lo-hdrLen)
			}
			r.err = &Error{Segment: r.name, Offset: r.off, Truncated: true, Reason: reason}
			return 0, nil, r.err
		}
		need := MaxHeaderLen
		if !trunc {
			need = hdrLen + int(n)
		}
		if err := r.fill(need); err != nil {
			r.err = fmt.Errorf("reclog: segment %s: read at offset %d: %w", r.name, r.off+int64(r.hi-r.lo), err)
			return 0, nil, r.err
		}
	}
}

// fill reads more input, making room for at least need unread bytes.
func (r *Reader) fill(need int) error {
	if r.lo > 0 && (r.lo == r.hi || len(r.buf)-r.lo < need) {
		copy(r.buf, r.buf[r.lo:r.hi])
		r.hi -= r.lo
		r.lo = 0
	}
	if need > len(r.buf) {
		nb := make([]byte, max(need, 2*len(r.buf)))
		copy(nb, r.buf[r.lo:r.hi])
		r.hi -= r.lo
		r.lo = 0
		r.buf = nb
	}
	n, err := io.ReadAtLeast(r.r, r.buf[r.hi:], 1)
	r.hi += n
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		r.eof = true
		return nil
	}
	return err
}

// ForEach calls fn for every record of r (starting at segment offset
// start) until the end of input. It stops at the first error.
func ForEach(r io.Reader, name string, start int64, fn Func) error {
	rr := NewReader(r, name, start)
	for {
		off, p, err := rr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(off, p); err != nil {
			return err
		}
	}
}
