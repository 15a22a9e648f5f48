package sshstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// fakeGerrit is an SSH server on 127.0.0.1:0 that answers "gerrit
// stream-events" with the lines of each connection's script, then either
// closes the connection or keeps it open.
type fakeGerrit struct {
	addr    string
	hostKey ssh.PublicKey
	mu      sync.Mutex
	scripts [][]string // one per connection, in order
	conns   int
	execs   []string
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startFakeGerrit(t *testing.T, clientKey ssh.PublicKey, scripts ...[]string) *fakeGerrit {
	t.Helper()
	host := newSigner(t)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), clientKey.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGerrit{addr: ln.Addr().String(), hostKey: host.PublicKey(), scripts: scripts}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			var script []string
			keepOpen := false
			if g.conns < len(g.scripts) {
				script = g.scripts[g.conns]
				keepOpen = g.conns == len(g.scripts)-1
			}
			g.conns++
			g.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.serve(t, c, cfg, script, keepOpen)
			}()
		}
	}()
	return g
}

func (g *fakeGerrit) serve(t *testing.T, c net.Conn, cfg *ssh.ServerConfig, script []string, keepOpen bool) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		for req := range creqs {
			if req.Type != "exec" {
				req.Reply(false, nil)
				continue
			}
			var p struct{ Command string }
			ssh.Unmarshal(req.Payload, &p)
			g.mu.Lock()
			g.execs = append(g.execs, p.Command)
			g.mu.Unlock()
			req.Reply(p.Command == Command, nil)
			if p.Command != Command {
				continue
			}
			for _, l := range script {
				ch.Write([]byte(l + "\n"))
			}
			if keepOpen {
				// Like Gerrit: the stream stays open until the client goes.
				waitClosed(creqs)
			}
			ch.Close()
			return
		}
	}
}

// waitClosed blocks until the channel's requests end (the client closed it).
func waitClosed(reqs <-chan *ssh.Request) {
	for r := range reqs {
		r.Reply(false, nil)
	}
}

// compactFixtures returns the SSH stream-events fixtures as single lines.
func compactFixtures(t *testing.T) []string {
	t.Helper()
	dir := testenv.Fixture(t, "gerrit/events/ssh-stream")
	names, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.String())
	}
	return out
}

func knownHostsFor(t *testing.T, g *fakeGerrit) ssh.HostKeyCallback {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(f, []byte(knownhosts.Line([]string{knownhosts.Normalize(g.addr)}, g.hostKey)+"\n"), 0o600)
	cb, err := knownhosts.New(f)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

// TestStreamEvents follows a fake Gerrit whose first connection sends the
// recorded stream-events lines (plus a line that is not an event) and
// drops, and whose second connection sends one more event and stays
// open: every event is journaled once, the junk is skipped, and Run
// reconnects.
func TestStreamEvents(t *testing.T) {
	lines := compactFixtures(t)
	extra := `{"type":"patchset-created","project":"late","change":{"number":99},"patchSet":{"number":1,"revision":"abc"}}`
	client := newSigner(t)
	g := startFakeGerrit(t, client.PublicKey(),
		append(append([]string{}, lines[:2]...), append([]string{"this is not json", ""}, lines[2:]...)...),
		[]string{lines[0], extra}, // lines[0] again: a duplicate, recorded once
	)
	j, err := journal.Open(journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Addr: g.addr, User: "tryd", Signer: client, HostKeyCallback: knownHostsFor(t, g),
			Server: "review", Journal: j, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	}()
	want := len(lines) + 1
	deadline := time.Now().Add(20 * time.Second)
	for j.Stats().Events < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a late duplicate would show now
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	evs := j.Recent(pubsubtypes.Cursor{}, pubsubtypes.Filter{}, 100)
	if len(evs) != want {
		t.Fatalf("journaled %d events, want %d", len(evs), want)
	}
	if evs[0].Gerrit.Project != "late" || evs[0].Gerrit.ChangeNumber != 99 || evs[0].Server != "review" || evs[0].Source != "gerrit" {
		t.Errorf("newest event %+v %+v", evs[0], evs[0].Gerrit)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns < 2 {
		t.Errorf("%d connections, want a reconnect", g.conns)
	}
	for _, c := range g.execs {
		if c != Command {
			t.Errorf("ran %q", c)
		}
	}
}

func TestRejectsUnknownHostKey(t *testing.T) {
	client := newSigner(t)
	g := startFakeGerrit(t, client.PublicKey(), []string{`{"type":"ref-updated"}`})
	other := startFakeGerrit(t, client.PublicKey())
	j, _ := journal.Open(journal.Options{})
	defer j.Close()
	o := Options{Addr: g.addr, User: "tryd", Signer: client, HostKeyCallback: knownHostsFor(t, other), Journal: j}
	o.validate()
	n, err := stream(context.Background(), &o)
	if err == nil || n != 0 || !strings.Contains(err.Error(), "handshake") {
		t.Errorf("stream with a mismatched host key: %d events, %v", n, err)
	}
}

func TestOptionsRequired(t *testing.T) {
	j, _ := journal.Open(journal.Options{})
	defer j.Close()
	s := newSigner(t)
	cb := ssh.FixedHostKey(s.PublicKey())
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"addr", Options{User: "u", Signer: s, HostKeyCallback: cb, Journal: j}},
		{"user", Options{Addr: "x:1", Signer: s, HostKeyCallback: cb, Journal: j}},
		{"signer", Options{Addr: "x:1", User: "u", HostKeyCallback: cb, Journal: j}},
		{"host key check", Options{Addr: "x:1", User: "u", Signer: s, Journal: j}},
		{"journal", Options{Addr: "x:1", User: "u", Signer: s, HostKeyCallback: cb}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Run(context.Background(), tc.o); err == nil {
				t.Error("Run accepted incomplete options")
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 200) + "\nafter\nlast"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		l, err := readLine(r, 64)
		if errors.Is(err, errLineTooLong) {
			got = append(got, "<too long>")
			continue
		}
		if len(l) > 0 {
			got = append(got, strings.TrimSpace(string(l)))
		}
		if err != nil {
			break
		}
	}
	if want := []string{"short", "<too long>", "after", "last"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", got, want)
	}
}

// FuzzReadLine splits arbitrary streams into lines: no panics, no line
// over the limit, and every byte is either in a line or in a skipped one.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("a\nbb\n"), 4)
	f.Add([]byte(strings.Repeat("x", 100)+"\ny"), 8)
	f.Add([]byte("\n\n\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 1 || max > 1<<16 {
			return
		}
		r := bufio.NewReaderSize(bytes.NewReader(in), 16)
		total := 0
		for i := 0; i <= len(in)+1; i++ {
			l, err := readLine(r, max)
			if len(l) > max {
				t.Fatalf("line of %d bytes over the limit %d", len(l), max)
			}
			total += len(l)
			if err != nil && !errors.Is(err, errLineTooLong) {
				break
			}
		}
		if total > len(in) {
			t.Fatalf("read %d bytes from %d", total, len(in))
		}
	})
}
