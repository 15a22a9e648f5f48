package pgstate

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/state"
)

// TestTerminatedSessionsNotUsed: after the server ends every session of
// the store's pool (pg_terminate_backend), the next statements, reads
// and writes, each on a connection idle for less than the second after
// which pgxpool pings it anyway, succeed: the pool replaced the dead
// connections before use instead of failing one statement on each.
func TestTerminatedSessionsNotUsed(t *testing.T) {
	ctx := context.Background()
	srv := sharedPG.Server(t)
	dsn := srv.NewDatabase(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const conns = 4
	s, err := Open(ctx, Options{DSN: dsn, MaxConns: conns})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bid, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, cachedJobs(3))
	if err != nil {
		t.Fatal(err)
	}
	statements := []struct {
		name string
		run  func() error
	}{
		{"read build", func() error { _, err := s.Build(ctx, bid); return err }},
		{"read jobs", func() error { _, err := s.Jobs(ctx, bid); return err }},
		{"commit", func() error {
			return s.Commit(ctx, &state.Batch{Workers: []state.Worker{{Name: "w", TokenHash: "h", Slots: 1}}})
		}},
		{"create build", func() error {
			_, err := s.CreateBuild(ctx, &state.Build{Priority: api.PriorityTry, Graph: []byte("{}"), State: api.BuildRunning}, nil)
			return err
		}},
	}
	for round := range 3 {
		// Fill the pool: every connection open and idle.
		var held []interface{ Release() }
		for range conns {
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Release()
		}
		n, err := srv.TerminateBackends(ctx, cfg.Database)
		if err != nil || n < conns {
			t.Fatalf("round %d: TerminateBackends = %d, %v; want at least %d", round, n, err, conns)
		}
		// As many at once as the pool has connections, then one by
		// one: every statement finds a live connection.
		var wg sync.WaitGroup
		for _, st := range statements {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := st.run(); err != nil {
					t.Errorf("round %d: %s after the sessions ended: %v", round, st.name, err)
				}
			}()
		}
		wg.Wait()
		for _, st := range statements {
			if err := st.run(); err != nil {
				t.Errorf("round %d: %s: %v", round, st.name, err)
			}
		}
	}
}

// TestPeerClosed checks the socket check on a real TCP connection: alive
// while the peer is silent, also with a read of another goroutine in
// progress (it must not wait for it); gone once the peer sent something
// unasked or closed.
func TestPeerClosed(t *testing.T) {
	tests := []struct {
		name    string
		peer    func(t *testing.T, c net.Conn)
		reading bool // another goroutine reads the connection meanwhile
		want    bool
	}{
		{"silent peer", func(*testing.T, net.Conn) {}, false, false},
		{"silent peer, a read in progress", func(*testing.T, net.Conn) {}, true, false},
		{"peer sent a message", func(t *testing.T, c net.Conn) {
			if _, err := c.Write([]byte("E")); err != nil {
				t.Fatal(err)
			}
		}, false, true},
		{"peer closed", func(t *testing.T, c net.Conn) { c.Close() }, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			peer, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if tc.reading {
				done := make(chan struct{})
				go func() {
					defer close(done)
					c.Read(make([]byte, 1)) // until the cleanup closes c
				}()
				defer func() { c.Close(); <-done }()
				time.Sleep(10 * time.Millisecond) // let it block
			}
			tc.peer(t, peer)
			if !tc.want {
				// Alive, and stays so.
				for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
					if peerClosed(c) {
						t.Fatal("peerClosed = true for a live connection")
					}
				}
				return
			}
			// Gone, once the peer's bytes arrive.
			for end := time.Now().Add(5 * time.Second); !peerClosed(c); time.Sleep(time.Millisecond) {
				if time.Now().After(end) {
					t.Fatal("peerClosed = false, want true")
				}
			}
		})
	}
}
