// Package sshstream is pubsubhelper's second Gerrit source, for servers
// without the webhooks plugin: it runs `gerrit stream-events` over SSH
// (golang.org/x/crypto/ssh, public-key authentication, host key checked
// against a known_hosts file) and journals each event line exactly as a
// webhook delivery would be journaled.
//
// Wire format: stream-events writes one JSON object per line, the same
// event objects the webhooks plugin POSTs (with "project" as a string and
// "changeKey" as {"id": …}); package webhook parses both. A line that is
// not an event is logged and skipped: the stream goes on.
//
// The stream has no replay: events that happen while the connection is
// down are lost to this source (Run reconnects with backoff). Subscribers
// treat events as nudges and reconcile periodically, so a gap delays but
// does not corrupt.
package sshstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"

	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/webhook"
)

// Command is what Run executes on the server.
const Command = "gerrit stream-events"

// Options configures Run.
type Options struct {
	// Addr is the Gerrit SSH address, e.g. "review.example.com:29418".
	Addr string
	// User is the account's SSH user name.
	User string
	// Signer is the account's private key.
	Signer ssh.Signer
	// HostKeyCallback checks the server's host key (e.g. from
	// golang.org/x/crypto/ssh/knownhosts). Required: there is no
	// insecure default.
	HostKeyCallback ssh.HostKeyCallback
	// Server names the Gerrit server on the journaled events.
	Server string
	// Journal receives the events.
	Journal *journal.Journal
	// MaxLine bounds one event line (default 4 MiB); a longer line is
	// skipped.
	MaxLine int
	// MinBackoff and MaxBackoff bound the wait before reconnecting
	// (defaults 1s and 1m; it doubles after each failure, with jitter, and
	// starts over after a connection that delivered events).
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds connecting and the SSH handshake (default 30s).
	DialTimeout time.Duration
	// Log receives connection and skipped-line messages; nil discards.
	Log logrus.FieldLogger
}

func (o *Options) validate() error {
	switch {
	case o.Addr == "":
		return errors.New("sshstream: Options.Addr is empty")
	case o.User == "":
		return errors.New("sshstream: Options.User is empty")
	case o.Signer == nil:
		return errors.New("sshstream: Options.Signer is nil")
	case o.HostKeyCallback == nil:
		return errors.New("sshstream: Options.HostKeyCallback is nil (use knownhosts)")
	case o.Journal == nil:
		return errors.New("sshstream: Options.Journal is nil")
	}
	if o.MaxLine == 0 {
		o.MaxLine = 4 << 20
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	return nil
}

// Run follows the event stream until ctx is done, reconnecting after
// failures; it returns ctx's error, or an error in opts.
func Run(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	log := opts.Log.WithField("gerrit_ssh", opts.Addr)
	backoff := opts.MinBackoff
	for {
		n, err := stream(ctx, &opts)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n > 0 {
			backoff = opts.MinBackoff
		}
		d := backoff/2 + rand.N(backoff/2+1)
		log.WithError(err).WithField("events", n).WithField("retry_in", d.Round(time.Millisecond)).Warn("gerrit stream-events ended; reconnecting")
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, opts.MaxBackoff)
	}
}

// stream runs one connection and returns how many events it journaled.
func stream(ctx context.Context, o *Options) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", o.Addr)
	if err != nil {
		return 0, fmt.Errorf("sshstream: dial %s: %w", o.Addr, err)
	}
	conn.SetDeadline(time.Now().Add(o.DialTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(conn, o.Addr, &ssh.ClientConfig{
		User:            o.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(o.Signer)},
		HostKeyCallback: o.HostKeyCallback,
		Timeout:         o.DialTimeout,
	})
	if err != nil {
		conn.Close()
		return 0, fmt.Errorf("sshstream: handshake with %s: %w", o.Addr, err)
	}
	conn.SetDeadline(time.Time{})
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	// Closing the client unblocks the reader when ctx ends.
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()

	sess, err := client.NewSession()
	if err != nil {
		return 0, fmt.Errorf("sshstream: %s: session: %w", o.Addr, err)
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("sshstream: %s: %w", o.Addr, err)
	}
	if err := sess.Start(Command); err != nil {
		return 0, fmt.Errorf("sshstream: %s: start %q: %w", o.Addr, Command, err)
	}
	o.Log.WithField("gerrit_ssh", o.Addr).Info("following gerrit stream-events")
	n := 0
	r := bufio.NewReaderSize(out, 64<<10)
	for {
		line, err := readLine(r, o.MaxLine)
		if len(bytes.TrimSpace(line)) > 0 {
			if jerr := journalLine(ctx, o, line); jerr != nil {
				if errors.Is(jerr, webhook.ErrMalformed) {
					o.Log.WithError(jerr).Warn("sshstream: skipping a line that is not a Gerrit event")
				} else {
					return n, jerr
				}
			} else {
				n++
			}
		}
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				o.Log.WithField("max", o.MaxLine).Warn("sshstream: skipping an over-long line")
				continue
			}
			return n, fmt.Errorf("sshstream: %s: read: %w", o.Addr, err)
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line of at most max bytes; a longer line is consumed
// and reported as errLineTooLong.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return nil, err
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

// journalLine parses one event and journals it, deduplicated by its
// bytes as the webhook endpoint does.
func journalLine(ctx context.Context, o *Options, line []byte) error {
	line = bytes.TrimSpace(line)
	ev, err := webhook.ParseGerrit(line)
	if err != nil {
		return err
	}
	ev.Server = o.Server
	sum := sha256.Sum256(line)
	if _, _, err := o.Journal.Append(ctx, ev, line, "gerrit:"+o.Server+":"+hex.EncodeToString(sum[:])); err != nil {
		return fmt.Errorf("sshstream: journal: %w", err)
	}
	return nil
}
