package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
)

// leader is a tryd log served on a fixed address, which can be stopped
// and started again on the same address and directory, as a maintnerd
// restart does.
type leader struct {
	t    *testing.T
	dir  string
	addr string

	log    *mutlog.Log
	corpus *maintner.Corpus
	srv    *http.Server
	done   chan struct{}
}

func startLeader(t *testing.T) *leader {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &leader{t: t, dir: t.TempDir(), addr: ln.Addr().String()}
	l.start(ln)
	t.Cleanup(l.stop)
	return l
}

func (l *leader) url() string { return "http://" + l.addr + "/logs" }

func (l *leader) start(ln net.Listener) {
	l.t.Helper()
	if ln == nil {
		var err error
		// The port was ours a moment ago; retry briefly in case the
		// kernel has not released it yet.
		for i := 0; ; i++ {
			if ln, err = net.Listen("tcp", l.addr); err == nil || i == 50 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			l.t.Fatal(err)
		}
	}
	st, err := mutlog.NewDiskStore(l.dir)
	if err != nil {
		l.t.Fatal(err)
	}
	if l.log, err = mutlog.Open(context.Background(), mutlog.Options{Store: st}); err != nil {
		l.t.Fatal(err)
	}
	if l.corpus, err = maintner.New(maintner.Options{Appender: l.log}); err != nil {
		l.t.Fatal(err)
	}
	h, err := logsync.NewHandler(logsync.HandlerOptions{Source: l.log, Path: "/logs", PollTimeout: 5 * time.Second})
	if err != nil {
		l.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/logs", h)
	mux.Handle("/logs/", h)
	l.srv = &http.Server{Handler: mux}
	l.done = make(chan struct{})
	go func() { l.srv.Serve(ln); close(l.done) }()
}

// stop closes the server at once, dropping long polls in flight, and the
// log.
func (l *leader) stop() {
	if l.srv == nil {
		return
	}
	l.srv.Close()
	<-l.done
	l.log.Close()
	l.srv = nil
}

func (l *leader) append(ms ...*maintner.Mutation) {
	l.t.Helper()
	if err := l.corpus.LogBatch(context.Background(), ms...); err != nil {
		l.t.Fatal(err)
	}
}

// syncBuf is xfollow's standard error.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startXfollow runs xfollow -tail against url until the test ends.
func startXfollow(t *testing.T, url string) (out string, stderr *syncBuf) {
	t.Helper()
	out = filepath.Join(t.TempDir(), "snapshot.json")
	stderr = &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-logs", url, "-out", out, "-tail", "-retry", "100ms", "-cache", t.TempDir()}, os.Stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("xfollow: %v\n%s", err, stderr)
		}
	})
	return out, stderr
}

// waitSnapshot reads out until ok accepts a snapshot.
func waitSnapshot(t *testing.T, out string, stderr *syncBuf, what string, ok func(*Snapshot) bool) *Snapshot {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var s *Snapshot
	for {
		b, err := os.ReadFile(out)
		if err == nil {
			s = new(Snapshot)
			if err := json.Unmarshal(b, s); err != nil {
				t.Fatalf("snapshot %s: %v\n%s", out, err, b)
			}
			if ok(s) {
				return s
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("xfollow's snapshot never showed %s; last: %+v\nstderr:\n%s", what, s, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Snapshot) cl(n int32) *GerritCL {
	for _, p := range s.Gerrit {
		for i := range p.CLs {
			if p.CLs[i].Number == n {
				return &p.CLs[i]
			}
		}
	}
	return nil
}

func (s *Snapshot) issue(n int32) *GitHubIssue {
	for _, r := range s.GitHub {
		for i := range r.Issues {
			if r.Issues[i].Number == n {
				return &r.Issues[i]
			}
		}
	}
	return nil
}

// TestFollowAcrossRestart: xfollow loads the sample history, keeps up with
// appends, survives the server going away and coming back on the same
// address and log, and tails what was appended after it started.
func TestFollowAcrossRestart(t *testing.T) {
	l := startLeader(t)
	l.append(corpusgen.Sample(false)...)
	out, stderr := startXfollow(t, l.url())

	s := waitSnapshot(t, out, stderr, "the sample history", func(s *Snapshot) bool { return s.cl(1002) != nil && s.issue(2) != nil })
	if s.Check != "" {
		t.Errorf("x/build Corpus.Check: %s", s.Check)
	}
	if len(s.Gerrit) != 1 || s.Gerrit[0].Server+"/"+s.Gerrit[0].Project != corpusgen.SampleProject {
		t.Errorf("Gerrit projects %+v, want just %s", s.Gerrit, corpusgen.SampleProject)
	}
	// Sample's changes vote in the modern "Label: X=+1, <uuid>" form,
	// which x/build reads as 0 (see compat_test.go): the voters are
	// there, the values are not.
	reviewer := fmt.Sprintf("%d@%s", corpusgen.SampleReviewerAccount, corpusgen.ServerID)
	if v, ok := s.cl(1001).Votes["Run-TryBot"][reviewer]; !ok || v != 0 {
		t.Errorf("change 1001 Run-TryBot by %s: %d (present %v), want the known misparse 0", reviewer, v, ok)
	}

	// Appended while xfollow follows: a labelled issue with a comment.
	b := corpusgen.NewBuilder()
	b.Now = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	b.Issue(50, &maintpb.GithubIssueMutation{Id: 50, User: &maintpb.GithubUser{Id: 7, Login: "ann"}, Title: "live issue", Created: b.Ts()}, nil)
	b.Issue(50, &maintpb.GithubIssueMutation{Id: 50, Comment: []*maintpb.GithubIssueCommentMutation{{Id: 5001, User: &maintpb.GithubUser{Id: 7, Login: "ann"}, Body: "still here", Created: b.Ts()}}}, nil)
	l.append(b.Take()...)
	waitSnapshot(t, out, stderr, "issue 50's comment", func(s *Snapshot) bool {
		is := s.issue(50)
		return is != nil && len(is.Comments) == 1 && is.Comments[0].Body == "still here"
	})

	// The server goes away (as after kill -9: connections drop), stays
	// down a moment, and comes back with the same log, to which a change
	// with legacy votes (which x/build reads exactly) is then added.
	l.stop()
	time.Sleep(500 * time.Millisecond)
	l.start(nil)
	b.Legacy = true
	b.NewChange(1010, corpusgen.SampleOwnerAccount, "net: after restart")
	b.Vote(1010, corpusgen.SampleReviewerAccount, "Run-TryBot", 1, "")
	b.Vote(1010, corpusgen.BotAccount, "TryBot-Result", -1, "failed")
	l.append(b.Take()...)
	s = waitSnapshot(t, out, stderr, "change 1010 with its votes", func(s *Snapshot) bool {
		cl := s.cl(1010)
		return cl != nil && len(cl.Votes["TryBot-Result"]) == 1
	})
	cl := s.cl(1010)
	bot := fmt.Sprintf("%d@%s", corpusgen.BotAccount, corpusgen.ServerID)
	if cl.Status != "new" || cl.Subject != "net: after restart" || cl.Votes["Run-TryBot"][reviewer] != 1 || cl.Votes["TryBot-Result"][bot] != -1 {
		t.Errorf("change 1010 after the restart: %+v", cl)
	}
	if s.Check != "" {
		t.Errorf("x/build Corpus.Check after the restart: %s", s.Check)
	}
	if s.NetRetries+s.SyncErrors == 0 {
		t.Errorf("x/build reported no failed fetch while the server was down: %+v", s)
	}
	// The tail saw what was appended after the restart, and nothing from
	// before xfollow started. (Issue 50 may or may not be in it: the
	// tail gives no sign of when it has read the log's length, which may
	// have been after issue 50 was appended.)
	waitSnapshot(t, out, stderr, "the tail of change 1010", func(s *Snapshot) bool {
		return s.Tail != nil && slices.Contains(s.Tail.GerritCLs, 1010)
	})
	s = waitSnapshot(t, out, stderr, "any snapshot", func(*Snapshot) bool { return true })
	if slices.Contains(s.Tail.GerritCLs, 1001) || slices.Contains(s.Tail.GitHubIssues, 1) {
		t.Errorf("the tail delivered history from before xfollow started: %+v", s.Tail)
	}
}

// TestOnce prints one snapshot and exits.
func TestOnce(t *testing.T) {
	l := startLeader(t)
	l.append(corpusgen.Sample(false)...)
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-logs", l.url(), "-once"}, &stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if s.cl(1001) == nil || s.issue(1) == nil || s.Syncs != 1 {
		t.Errorf("snapshot lacks the sample history: %+v", s)
	}
}

// TestFlags: bad command lines are refused with a message.
func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no logs", []string{"-out", "x"}, "-logs is required"},
		{"no out", []string{"-logs", "http://127.0.0.1:1/logs"}, "-out is required"},
		{"bad retry", []string{"-logs", "http://127.0.0.1:1/logs", "-once", "-retry", "0s"}, "-retry must be positive"},
		{"extra args", []string{"-logs", "http://127.0.0.1:1/logs", "-once", "more"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stderr, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestChangeOfRef(t *testing.T) {
	for _, tc := range []struct {
		ref  string
		n    int32
		okay bool
	}{
		{"refs/changes/01/1001/meta", 1001, true},
		{"refs/changes/10/10/2", 10, true},
		{"refs/changes/10", 0, false},
		{"refs/changes/xx/abc/meta", 0, false},
		{"refs/changes/00/0/1", 0, false},
		{"refs/heads/main", 0, false},
	} {
		n, ok := changeOfRef(tc.ref)
		if n != tc.n || ok != tc.okay {
			t.Errorf("changeOfRef(%q) = %d, %v; want %d, %v", tc.ref, n, ok, tc.n, tc.okay)
		}
	}
}
