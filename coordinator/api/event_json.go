package api

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e's JSON encoding to b, byte for byte what
// encoding/json's Marshal gives (same field order, omitempty, escaping
// of HTML characters and invalid UTF-8, RFC 3339 time with nanoseconds),
// without reflection: the coordinator writes two or three events per job
// to every watcher of a build (FuzzEventAppendJSON holds it to Marshal).
func (e *Event) AppendJSON(b []byte) []byte {
	if y := e.Time.Year(); y < 0 || y > 9999 {
		// Marshal refuses these; let it say so the same way.
		out, err := json.Marshal(e)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, out...)
	}
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(e.Index), 10)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, `,"epoch":`, e.Epoch)
	b = appendField(b, `,"job_id":`, e.JobID)
	b = appendField(b, `,"job_name":`, e.JobName)
	b = appendField(b, `,"state":`, string(e.State))
	b = appendField(b, `,"attempt_id":`, e.AttemptID)
	b = appendField(b, `,"worker":`, e.Worker)
	if e.ExitCode != nil {
		b = append(b, `,"exit_code":`...)
		b = strconv.AppendInt(b, int64(*e.ExitCode), 10)
	}
	b = appendField(b, `,"error":`, e.Error)
	b = appendField(b, `,"data":`, e.Data)
	if e.Offset != 0 {
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, e.Offset, 10)
	}
	b = appendField(b, `,"build_state":`, string(e.BuildState))
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(e.Count), 10)
	}
	return append(b, '}')
}

// appendField appends an omitempty string field.
func appendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

// appendJSONString appends s quoted as encoding/json quotes it: the
// common case (printable ASCII without ", \, <, > or &) directly, any
// other through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
