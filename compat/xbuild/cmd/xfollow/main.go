// Command xfollow follows a maintner /logs URL with golang.org/x/build's
// own maintner client and writes what x/build's Corpus holds as JSON, so
// that tests outside this module (internal/e2e, which must not depend on
// x/build's maintner package) can check that an unchanged x/build client
// follows a tryd maintnerd, across the server's restarts.
//
// Usage:
//
//	xfollow -logs http://127.0.0.1:8081/logs -out snapshot.json [-tail] [-cache dir] [-v]
//	xfollow -logs URL -once
//
// It loads the log with maintner.NewNetworkMutationSource and
// Corpus.Initialize, then calls Corpus.Update in a loop; after every
// successful sync it replaces -out (written to a temporary file and
// renamed, so a reader never sees half a snapshot). A failed sync (the
// server is down, restarting) is logged and retried every -retry with a
// fresh Corpus if Initialize itself failed; x/build's ErrSplit (the
// server's history diverged from what was read) ends the program with
// exit status 1, since x/build cannot recover from it either. With -tail
// it also runs maintner.TailNetworkMutationSource and records which Gerrit
// changes and GitHub issues the mutations appended after its start
// touched. With -once it prints one snapshot on standard output and
// exits. SIGINT or SIGTERM end it with status 0.
//
// The snapshot (type Snapshot) lists, per Gerrit project, every change
// with its status, branch, current patch set and commit, Change-Id,
// subject, the votes of x/build's GerritMeta.LabelVotes (label → voter
// email → value) and its messages; per GitHub repository, its labels and
// every issue and pull request with state, labels and comments.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	xmaintner "golang.org/x/build/maintner"
)

// Snapshot is what xfollow writes: the x/build corpus's view of the log.
type Snapshot struct {
	// Syncs counts successful Initialize and Update calls; SyncErrors
	// the failed ones it retried (e.g. while the server restarted).
	Syncs      int `json:"syncs"`
	SyncErrors int `json:"sync_errors"`
	// LastError is the most recent sync error ("" if none yet).
	LastError string `json:"last_error,omitempty"`
	// NetRetries counts the failed fetches x/build's network source
	// retried by itself (its "did not succeed" log lines): a server
	// restart shows here when it was short enough not to fail a sync.
	NetRetries int `json:"net_retries"`
	// Check is the error of x/build's Corpus.Check ("" when it passes).
	Check  string          `json:"check,omitempty"`
	Gerrit []GerritProject `json:"gerrit"`
	GitHub []GitHubRepo    `json:"github"`
	// Tail is set with -tail.
	Tail *Tail `json:"tail,omitempty"`
}

// GerritProject is one Gerrit project of the corpus.
type GerritProject struct {
	Server  string     `json:"server"`
	Project string     `json:"project"`
	CLs     []GerritCL `json:"cls"`
}

// GerritCL is one change as x/build sees it.
type GerritCL struct {
	Number   int32  `json:"number"`
	Status   string `json:"status"`
	Branch   string `json:"branch"`
	Version  int32  `json:"version"` // current patch set
	Commit   string `json:"commit"`  // its commit
	ChangeID string `json:"change_id"`
	Subject  string `json:"subject"`
	// Votes is GerritMeta.LabelVotes of the newest meta commit: label →
	// voter email ("<account>@<server id>") → value.
	Votes    map[string]map[string]int8 `json:"votes"`
	Messages []GerritMessage            `json:"messages"`
}

// GerritMessage is one change message.
type GerritMessage struct {
	Version int32  `json:"version"`
	Author  string `json:"author"` // the meta commit author's email
	Message string `json:"message"`
}

// GitHubRepo is one GitHub repository of the corpus.
type GitHubRepo struct {
	Owner  string        `json:"owner"`
	Repo   string        `json:"repo"`
	Labels []string      `json:"labels"`
	Issues []GitHubIssue `json:"issues"`
}

// GitHubIssue is one issue or pull request.
type GitHubIssue struct {
	Number      int32           `json:"number"`
	Title       string          `json:"title"`
	User        string          `json:"user"`
	PullRequest bool            `json:"pull_request"`
	Closed      bool            `json:"closed"`
	Labels      []string        `json:"labels"`
	Comments    []GitHubComment `json:"comments"`
}

// GitHubComment is one issue comment.
type GitHubComment struct {
	User string `json:"user"`
	Body string `json:"body"`
}

// Tail is what TailNetworkMutationSource delivered after xfollow started.
type Tail struct {
	Mutations int `json:"mutations"`
	// Errors counts the errors it reported and went on after; Restarts
	// the times it returned and was started again.
	Errors   int `json:"errors"`
	Restarts int `json:"restarts"`
	// GerritCLs are the changes whose refs the tailed mutations moved
	// (from refs/changes/NN/CL/...), GitHubIssues the issue numbers of
	// the tailed GitHub issue mutations; both sorted.
	GerritCLs    []int32 `json:"gerrit_cls"`
	GitHubIssues []int32 `json:"github_issues"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xfollow:", err)
		os.Exit(1)
	}
}

type options struct {
	logs, out, cache string
	once, tail, v    bool
	retry            time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xfollow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.logs, "logs", "", "the /logs URL to follow (required)")
	fs.StringVar(&o.out, "out", "", "file the snapshot is written to after every sync (required without -once)")
	fs.StringVar(&o.cache, "cache", "", "directory for x/build's segment cache (default: a temporary directory, removed at exit)")
	fs.BoolVar(&o.once, "once", false, "load the log, print one snapshot on standard output and exit")
	fs.BoolVar(&o.tail, "tail", false, "also run TailNetworkMutationSource and report what it delivered")
	fs.BoolVar(&o.v, "v", false, "pass x/build's own log lines through to standard error")
	fs.DurationVar(&o.retry, "retry", time.Second, "pause before retrying a failed sync")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.logs == "":
		return errors.New("-logs is required")
	case o.out == "" && !o.once:
		return errors.New("-out is required (or -once)")
	case o.retry <= 0:
		return errors.New("-retry must be positive")
	}
	// x/build's maintner reports progress through the standard logger.
	log.SetFlags(0)
	log.SetPrefix("x/build maintner: ")
	f := &follower{o: o, stderr: stderr}
	var xlog io.Writer = io.Discard
	if o.v {
		xlog = stderr
	}
	log.SetOutput(io.MultiWriter(&retryCounter{f: f}, xlog))
	if o.cache == "" {
		dir, err := os.MkdirTemp("", "xfollow-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.cache = dir
	}
	if o.once {
		xc := new(xmaintner.Corpus)
		if err := xc.Initialize(ctx, xmaintner.NewNetworkMutationSource(o.logs, o.cache)); err != nil {
			return fmt.Errorf("initialize from %s: %w", o.logs, err)
		}
		f.syncs = 1
		return writeJSON(stdout, f.snapshot(xc))
	}
	if o.tail {
		f.tail, f.tailCLs, f.tailIss = &Tail{}, map[int32]bool{}, map[int32]bool{}
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan struct{})
		go func() { f.runTail(tctx); close(done) }()
		defer func() { cancel(); <-done }()
	}
	return f.follow(ctx)
}

// follower holds the state of one xfollow run.
type follower struct {
	o      options
	stderr io.Writer

	syncs, syncErrors int
	lastErr           string

	mu         sync.Mutex // guards netRetries, tail and the two sets, written by other goroutines
	netRetries int
	tail       *Tail
	tailCLs    map[int32]bool
	tailIss    map[int32]bool
}

// follow initializes a corpus (retrying until it succeeds) and updates it
// until ctx ends, writing a snapshot after each successful sync.
func (f *follower) follow(ctx context.Context) error {
	var xc *xmaintner.Corpus
	for xc == nil {
		c := new(xmaintner.Corpus)
		// Initialize may be called once per corpus: a failed one needs
		// a new corpus (the segment cache makes the retry cheap).
		err := c.Initialize(ctx, xmaintner.NewNetworkMutationSource(f.o.logs, f.o.cache))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			f.failed("initialize", err)
			if !sleep(ctx, f.o.retry) {
				return nil
			}
			continue
		}
		xc = c
	}
	for {
		f.syncs++
		if err := f.write(xc); err != nil {
			return err
		}
		for {
			err := xc.Update(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, xmaintner.ErrSplit) {
				f.failed("update", err)
				f.write(xc)
				return fmt.Errorf("update from %s: %w", f.o.logs, err)
			}
			if err == nil {
				break
			}
			f.failed("update", err)
			if !sleep(ctx, f.o.retry) {
				return nil
			}
		}
	}
}

func (f *follower) failed(what string, err error) {
	f.syncErrors++
	f.lastErr = fmt.Sprintf("%s: %v", what, err)
	fmt.Fprintf(f.stderr, "xfollow: %s from %s failed (retrying in %v): %v\n", what, f.o.logs, f.o.retry, err)
}

// write replaces the -out file with a snapshot of xc.
func (f *follower) write(xc *xmaintner.Corpus) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.o.out), ".xfollow-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeJSON(tmp, f.snapshot(xc)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.o.out)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryCounter counts x/build's log lines about a failed fetch it will
// retry ("... did not succeed on attempt N, will try again in ...").
type retryCounter struct{ f *follower }

func (r *retryCounter) Write(p []byte) (int, error) {
	if n := bytes.Count(p, []byte("did not succeed")); n > 0 {
		r.f.mu.Lock()
		r.f.netRetries += n
		r.f.mu.Unlock()
	}
	return len(p), nil
}

// runTail runs TailNetworkMutationSource until ctx ends, starting it again
// when it returns (it does on a network error while fetching a segment).
func (f *follower) runTail(ctx context.Context) {
	for first := true; ; first = false {
		if !first {
			f.mu.Lock()
			f.tail.Restarts++
			f.mu.Unlock()
		}
		err := xmaintner.TailNetworkMutationSource(ctx, f.o.logs, func(e xmaintner.MutationStreamEvent) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if e.Err != nil {
				f.tail.Errors++
				return nil
			}
			f.tail.Mutations++
			if m := e.Mutation.GetGithubIssue(); m != nil {
				f.tailIss[m.Number] = true
			}
			for _, r := range e.Mutation.GetGerrit().GetRefs() {
				if n, ok := changeOfRef(r.Ref); ok {
					f.tailCLs[n] = true
				}
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		fmt.Fprintf(f.stderr, "xfollow: tail of %s ended (starting again in %v): %v\n", f.o.logs, f.o.retry, err)
		if !sleep(ctx, f.o.retry) {
			return
		}
	}
}

// changeOfRef returns the change number of refs/changes/NN/CL/....
func changeOfRef(ref string) (int32, bool) {
	rest, ok := strings.CutPrefix(ref, "refs/changes/")
	if !ok {
		return 0, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 3 {
		return 0, false
	}
	n, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || n <= 0 {
		return 0, false
	}
	return int32(n), true
}

// snapshot reads xc. It runs between Updates, so nothing writes xc.
func (f *follower) snapshot(xc *xmaintner.Corpus) *Snapshot {
	s := &Snapshot{Syncs: f.syncs, SyncErrors: f.syncErrors, LastError: f.lastErr, Gerrit: []GerritProject{}, GitHub: []GitHubRepo{}}
	if err := xc.Check(); err != nil {
		s.Check = err.Error()
	}
	xc.Gerrit().ForeachProjectUnsorted(func(gp *xmaintner.GerritProject) error {
		p := GerritProject{Server: gp.Server(), Project: gp.Project(), CLs: []GerritCL{}}
		gp.ForeachCLUnsorted(func(cl *xmaintner.GerritCL) error {
			c := GerritCL{Number: cl.Number, Status: cl.Status, Branch: cl.Branch(), Version: cl.Version,
				ChangeID: cl.ChangeID(), Subject: cl.Subject(), Messages: []GerritMessage{}}
			if cl.Commit != nil {
				c.Commit = cl.Commit.Hash.String()
			}
			// cl.Meta is not the same object as the last of cl.Metas (an
			// x/build quirk), and LabelVotes wants one from Metas.
			if len(cl.Metas) > 0 {
				votes, err := cl.Metas[len(cl.Metas)-1].LabelVotes()
				if err != nil {
					fmt.Fprintf(f.stderr, "xfollow: LabelVotes of %s change %d: %v\n", gp.ServerSlashProject(), cl.Number, err)
				}
				c.Votes = votes
			}
			for _, m := range cl.Messages {
				author := ""
				if m.Author != nil {
					author = m.Author.Email()
				}
				c.Messages = append(c.Messages, GerritMessage{Version: m.Version, Author: author, Message: m.Message})
			}
			p.CLs = append(p.CLs, c)
			return nil
		})
		sort.Slice(p.CLs, func(i, j int) bool { return p.CLs[i].Number < p.CLs[j].Number })
		s.Gerrit = append(s.Gerrit, p)
		return nil
	})
	sort.Slice(s.Gerrit, func(i, j int) bool {
		return s.Gerrit[i].Server+"/"+s.Gerrit[i].Project < s.Gerrit[j].Server+"/"+s.Gerrit[j].Project
	})
	xc.GitHub().ForeachRepo(func(gr *xmaintner.GitHubRepo) error {
		id := gr.ID()
		r := GitHubRepo{Owner: id.Owner, Repo: id.Repo, Labels: []string{}, Issues: []GitHubIssue{}}
		gr.ForeachLabel(func(l *xmaintner.GitHubLabel) error {
			r.Labels = append(r.Labels, l.Name)
			return nil
		})
		sort.Strings(r.Labels)
		gr.ForeachIssue(func(is *xmaintner.GitHubIssue) error {
			v := GitHubIssue{Number: is.Number, Title: is.Title, PullRequest: is.PullRequest, Closed: is.Closed,
				Labels: []string{}, Comments: []GitHubComment{}}
			if is.User != nil {
				v.User = is.User.Login
			}
			for _, l := range is.Labels {
				v.Labels = append(v.Labels, l.Name)
			}
			sort.Strings(v.Labels)
			is.ForeachComment(func(cm *xmaintner.GitHubComment) error {
				c := GitHubComment{Body: cm.Body}
				if cm.User != nil {
					c.User = cm.User.Login
				}
				v.Comments = append(v.Comments, c)
				return nil
			})
			r.Issues = append(r.Issues, v)
			return nil
		})
		sort.Slice(r.Issues, func(i, j int) bool { return r.Issues[i].Number < r.Issues[j].Number })
		s.GitHub = append(s.GitHub, r)
		return nil
	})
	sort.Slice(s.GitHub, func(i, j int) bool {
		return s.GitHub[i].Owner+"/"+s.GitHub[i].Repo < s.GitHub[j].Owner+"/"+s.GitHub[j].Repo
	})
	f.mu.Lock()
	s.NetRetries = f.netRetries
	f.mu.Unlock()
	if f.tail != nil {
		f.mu.Lock()
		t := *f.tail
		t.GerritCLs, t.GitHubIssues = sortedKeys(f.tailCLs), sortedKeys(f.tailIss)
		f.mu.Unlock()
		s.Tail = &t
	}
	return s
}

func sortedKeys(m map[int32]bool) []int32 {
	out := []int32{}
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
