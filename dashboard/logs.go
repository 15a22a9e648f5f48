package dashboard

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/dashboard/ansi"
)

// attemptRE bounds attempt IDs from URLs before they reach the
// coordinator (which checks its own, stricter, form).
var attemptRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func attemptID(r *http.Request) (string, error) {
	id := r.PathValue("attempt")
	if !attemptRE.MatchString(id) {
		return "", fmt.Errorf("%w: attempt %q", errNotFound, truncate(id, 40))
	}
	return id, nil
}

// logView describes the log page around the log text, which is streamed
// between its top and bottom halves.
type logView struct {
	Attempt string
	// Build, Job and Att are known when the link names the build
	// (?build=N), as the build page's links do.
	Build *api.Build
	Job   *api.JobStatus
	Att   *api.Attempt
	// Filled in after the log is streamed: the byte offset where live
	// updates continue, the last line number, and whether the last line
	// is still open (no newline yet).
	Offset int64
	Line   int
	Open   bool
}

// logChunk is how much log is read per step; the server holds about this
// much of a log at a time however long it is.
const logChunk = 32 << 10

// serveLog streams a job attempt's log as HTML: each line numbered and
// linkable (#L12), ANSI colours as classes, everything escaped. The log
// is read from the coordinator and written out chunk by chunk, so a log
// of any size is served in constant memory. The page ends with the
// offset it stopped at; its script follows the live log from there over
// server-sent events (/logs/{attempt}/events) until the attempt ends.
func (s *Server) serveLog(w http.ResponseWriter, r *http.Request) error {
	id, err := attemptID(r)
	if err != nil {
		return err
	}
	v := &logView{Attempt: id}
	if bs := r.URL.Query().Get("build"); bs != "" {
		bid, err := strconv.ParseInt(bs, 10, 64)
		if err != nil || bid <= 0 {
			return badRequest("bad build %q", truncate(bs, 40))
		}
		b, err := s.opts.Coordinator.Build(r.Context(), bid)
		if err != nil {
			return err
		}
		v.Build = b
		for i := range b.Jobs {
			for k := range b.Jobs[i].Attempts {
				if b.Jobs[i].Attempts[k].ID == id {
					v.Job, v.Att = &b.Jobs[i], &b.Jobs[i].Attempts[k]
				}
			}
		}
	}
	if wantJSON(r) {
		// The JSON view describes the log; the text is at /raw.
		writeJSON(w, http.StatusOK, map[string]any{"attempt": id, "raw": "/logs/" + id + "/raw", "events": "/logs/" + id + "/events", "build": v.Build, "job": v.Job, "attempt_status": v.Att})
		return nil
	}
	rc, err := s.opts.Coordinator.AttemptLog(r.Context(), id, 0, false)
	if err != nil {
		return err
	}
	defer rc.Close()
	t := s.tmpl["log"]
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	bw := bufio.NewWriterSize(w, logChunk)
	d := newPageData(r, "Log "+id, v)
	if err := t.ExecuteTemplate(bw, "logtop", d); err != nil {
		return fmt.Errorf("dashboard: render log: %w", err)
	}
	h := &ansi.HTML{W: bw}
	ren := ansi.New(h)
	buf := make([]byte, logChunk)
	var rerr error
	for h.Err == nil {
		n, err := rc.Read(buf)
		ren.Write(buf[:n])
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
	}
	ren.FlushText()
	if h.Err != nil {
		return nil // the reader went away
	}
	v.Offset, v.Line, v.Open = ren.Consumed(), h.Line, h.Open
	if rerr != nil {
		s.log.WithError(rerr).WithField("attempt", id).Warn("dashboard: log read failed midway")
		fmt.Fprintf(bw, "\n<strong class=\"err\">log read failed: %s</strong>\n", html.EscapeString(rerr.Error()))
	}
	if err := t.ExecuteTemplate(bw, "logbottom", d); err != nil {
		return fmt.Errorf("dashboard: render log: %w", err)
	}
	bw.Flush()
	return nil
}

// serveLogRaw serves the log as it is (text/plain, never sniffed as
// HTML); ?download=1 makes it an attachment.
func (s *Server) serveLogRaw(w http.ResponseWriter, r *http.Request) error {
	id, err := attemptID(r)
	if err != nil {
		return err
	}
	rc, err := s.opts.Coordinator.AttemptLog(r.Context(), id, 0, false)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.URL.Query().Get("download") == "1" {
		w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.log"`)
	}
	io.CopyBuffer(w, rc, make([]byte, logChunk))
	return nil
}

// logEvent is the data of a live log message.
type logEvent struct {
	Ops []ansi.Op `json:"ops"`
}

// serveLogEvents follows a log from ?offset= (or the Last-Event-ID of a
// reconnecting EventSource) as server-sent events: "message" events whose
// data is a logEvent and whose id is the byte offset reached, then one
// "end" event when the attempt has finished.
func (s *Server) serveLogEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := attemptID(r)
	if err != nil {
		return err
	}
	off := r.URL.Query().Get("offset")
	if le := r.Header.Get("Last-Event-ID"); le != "" {
		off = le
	}
	var offset int64
	if off != "" {
		if offset, err = strconv.ParseInt(off, 10, 64); err != nil || offset < 0 {
			return badRequest("bad offset %q", truncate(off, 40))
		}
	}
	rc, err := s.opts.Coordinator.AttemptLog(r.Context(), id, offset, true)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rctl := http.NewResponseController(w)
	var ops ansi.Ops
	ren := ansi.New(&ops)
	send := func() error {
		ren.FlushText()
		if len(ops.List) == 0 {
			return nil
		}
		data, _ := json.Marshal(logEvent{Ops: ops.List})
		ops.List = ops.List[:0]
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", offset+ren.Consumed(), data); err != nil {
			return err
		}
		return rctl.Flush()
	}
	// Read in a goroutine so that a quiet log still sends comments
	// every KeepAlive, which keeps proxies from closing the stream.
	type chunk struct {
		n   int
		err error
	}
	chunks, next, done := make(chan chunk), make(chan struct{}), make(chan struct{})
	defer close(done)
	buf := make([]byte, logChunk)
	go func() {
		for {
			n, err := rc.Read(buf)
			select {
			case chunks <- chunk{n, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
			select {
			case <-next: // buf is free again
			case <-done:
				return
			}
		}
	}()
	tick := time.NewTicker(s.opts.KeepAlive)
	defer tick.Stop()
	for ended := false; !ended; {
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			rctl.Flush()
			continue
		case c := <-chunks:
			ren.Write(buf[:c.n])
			if c.err != nil {
				if !errors.Is(c.err, io.EOF) {
					// A dropped coordinator stream: the browser
					// reconnects with the last id and continues.
					send()
					return nil
				}
				ended = true
				break
			}
			next <- struct{}{}
			if err := send(); err != nil {
				return nil // the browser went away
			}
		}
	}
	if r.Context().Err() != nil {
		return nil
	}
	ren.Flush()
	send()
	fmt.Fprintf(w, "event: end\ndata: {}\n\n")
	rctl.Flush()
	return nil
}

// textSink collects rendered text without styles.
type textSink struct{ b strings.Builder }

func (t *textSink) Text(s, _ string) { t.b.WriteString(s) }
func (t *textSink) EndLine()         { t.b.WriteByte('\n') }

// plainText removes escape sequences and control characters.
func plainText(s string) string {
	var t textSink
	r := ansi.New(&t)
	r.Write([]byte(s))
	r.Flush()
	return t.b.String()
}

func copyAtMost(w io.Writer, r io.Reader, n int64) (int64, error) {
	return io.Copy(w, io.LimitReader(r, n))
}
