package pubsubhelper

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestAppendAck: the hand-written acknowledgement is byte for byte what
// encoding/json writes.
func TestAppendAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    ack
	}{
		{"first", ack{Seq: 1, JournalID: "0123456789abcdef0123456789abcdef"}},
		{"duplicate", ack{Seq: 9223372036854775807, JournalID: "ffffffffffffffffffffffffffffffff", Duplicate: true}},
		{"zero", ack{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			json.NewEncoder(&want).Encode(tc.a)
			if got := appendAck(nil, tc.a); !bytes.Equal(got, want.Bytes()) {
				t.Errorf("appendAck = %q, want %q", got, want.Bytes())
			}
		})
	}
}
